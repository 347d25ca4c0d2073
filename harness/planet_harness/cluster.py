"""One test cluster: the control plane plus KServe, started and always stopped together."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from planet_harness.controlplane import ControlPlane
from planet_harness.kserve import KServe


@contextlib.contextmanager
def running(workdir: Path, *, say: bool = True) -> Iterator[ControlPlane]:
    """Start etcd, kube-apiserver, kube-controller-manager and KServe; stop them on exit, however it exits."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = ControlPlane(workdir)
    started = time.monotonic()
    try:
        cluster.start()
        control_plane = time.monotonic() - started
        KServe(cluster).install()
        if say:
            print(
                f"cluster up in {time.monotonic() - started:.1f} s (control plane {control_plane:.1f} s, "
                f"then KServe); kubeconfig {cluster.kubeconfig}",
                file=sys.stderr,
            )
        yield cluster
    finally:
        cluster.stop()

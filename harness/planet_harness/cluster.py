"""One test cluster: the control plane plus KServe, started and always stopped together.

:func:`running` is the whole cluster. :func:`running_without_kserve` is the control plane with the
PlanetPipeline CRD and KServe's CRDs but not KServe's controller, for tests where no kubelet runs pods
(the operator-logic tests, the scale benchmark): there a real KServe would never mark anything Ready
and would fight :class:`planet_harness.kserve_status.StatusWriter`, which stands in for its status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config

from planet_harness import components, kserve
from planet_harness.controlplane import ControlPlane, kubeconfig
from planet_harness.kserve import KServe

#: The committed PlanetPipeline CRD (``planet crds --write`` makes it).
PIPELINE_CRD = components.ROOT / "crds" / "planetpipelines.planetgen.io.yaml"
#: The operator's Helm chart: its ServiceAccount and RBAC are what the operator runs with.
CHART = components.ROOT / "charts" / "planetgen"


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


def install_crds(cluster: ControlPlane, *, pipeline_crd: Path = PIPELINE_CRD) -> None:
    """Apply the PlanetPipeline CRD and every CRD KServe's manager serves; wait until all are Established."""
    pipeline: list[dict[str, Any]] = [d for d in yaml.safe_load_all(pipeline_crd.read_text()) if d]
    cluster.apply([*pipeline, *kserve.crds()])
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@contextlib.contextmanager
def running_without_kserve(workdir: Path, *, say: bool = True) -> Iterator[ControlPlane]:
    """The control plane with the PlanetPipeline and KServe CRDs, and no KServe controller or webhooks."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = ControlPlane(workdir)
    started = time.monotonic()
    try:
        cluster.start()
        install_crds(cluster)
        if say:
            print(
                f"control plane with CRDs up in {time.monotonic() - started:.1f} s (no KServe controller); "
                f"kubeconfig {cluster.kubeconfig}",
                file=sys.stderr,
            )
        yield cluster
    finally:
        cluster.stop()


def api_client(cluster: ControlPlane, kubeconfig: Path | None = None) -> client.ApiClient:
    """A Kubernetes client for ``cluster``, as the admin unless ``kubeconfig`` names someone else."""
    made = config.new_client_from_config(str(kubeconfig or cluster.kubeconfig))  # type: ignore[no-untyped-call]
    return cast(client.ApiClient, made)


@dataclasses.dataclass(frozen=True)
class Identity:
    """Credentials of one ServiceAccount, and the user name the audit log records for it."""

    kubeconfig: Path
    user: str


def operator_identity(
    cluster: ControlPlane,
    *,
    release: str = "planetgen",
    namespace: str = "planetgen-system",
    chart: Path = CHART,
    seconds: int = 48 * 3600,
) -> Identity:
    """The chart's ServiceAccount and RBAC as a default (cluster-wide) install creates them, nothing else.

    Rendered by the real Helm and applied: the Deployment is left out, as no kubelet would run it; the
    operator runs as a local process with the returned kubeconfig (a TokenRequest token of that
    ServiceAccount), so its requests are its own in the audit log and the chart's RBAC is what it has.
    """
    assert cluster.ca is not None
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    rendered = cluster.helm(
        "template",
        release,
        str(chart),
        f"--namespace={namespace}",
        f"--kube-version={version}",
        "--set=replicas=1",
        "--show-only=templates/serviceaccount.yaml",
        "--show-only=templates/rbac.yaml",
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    accounts = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    assert len(accounts) == 1, accounts
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, *objects])
    token = cluster.token(namespace, accounts[0], seconds=seconds)
    path = kubeconfig(
        cluster.workdir / f"{release}-operator.kubeconfig",
        server=cluster.server,
        ca=cluster.ca.pair.cert,
        user=accounts[0],
        token=token,
    )
    return Identity(kubeconfig=path, user=f"system:serviceaccount:{namespace}:{accounts[0]}")

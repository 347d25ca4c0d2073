"""Helpers for the operator tests on the real API server: the operator as a subprocess, pipelines, polling.

The fixtures (``control_plane``, ``cluster``, ``operator``) are in this folder's conftest.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane

GROUP, VERSION, PLURAL = "planetgen.io", "v1alpha1", "planetpipelines"
_names = itertools.count()


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One test's share of the session's control plane: a namespace of its own and clients for it."""

    control_plane: ControlPlane
    #: The admin's client (what the test itself reads and writes with).
    api: client.ApiClient
    #: The admin's kubeconfig, its context's namespace ``namespace`` (kubectl planet defaults to it).
    kubeconfig: Path
    namespace: str
    #: The operator's own credentials: the chart's ServiceAccount and RBAC.
    operator_kubeconfig: Path
    #: The operator's user name in the audit log.
    operator_user: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)


class Operator:
    """``planet operator`` in a subprocess, so a test can kill -9 it and start it again.

    It watches ``namespace`` only: tests share one control plane, each in a namespace of its own.
    """

    def __init__(self, kubeconfig: Path, log: Path, namespace: str, *args: str) -> None:
        self.kubeconfig, self.log, self.namespace, self.args = kubeconfig, log, namespace, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable,
            "-m",
            "planet_operator.cli.main",
            "operator",
            "--standalone",
            f"--namespace={self.namespace}",
            "--resync",
            "2",
            "--no-namespace-label",
            "--analysis-window",
            "5",
            *self.args,
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def new_cluster(
    control_plane: ControlPlane, identity: harness.Identity, admin: client.ApiClient, folder: Path
) -> Cluster:
    """A fresh namespace on the shared control plane, and an admin kubeconfig whose context is in it."""
    namespace = f"t{next(_names)}-{os.getpid() % 10000}"
    control_plane.kubectl("create", "namespace", namespace)
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["contexts"][0]["context"]["namespace"] = namespace
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    return Cluster(
        control_plane=control_plane,
        api=admin,
        kubeconfig=kubeconfig,
        namespace=namespace,
        operator_kubeconfig=identity.kubeconfig,
        operator_user=identity.user,
    )


def operator_for(cluster: Cluster, log: Path, *args: str) -> Operator:
    """An operator (not started) for ``cluster``'s namespace, with the chart's ServiceAccount."""
    return Operator(cluster.operator_kubeconfig, log, cluster.namespace, *args)


def pipeline(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}},
        "engine": {"backend": "torch", "precision": "fp16"},
        "rollout": {"steps": []},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PlanetPipeline",
        "metadata": {"name": name},
        "spec": body,
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 40.0, log: Operator | None = None) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except client.ApiException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    tail = log.output()[-4000:] if log is not None else ""
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{tail}")

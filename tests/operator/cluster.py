"""Fixtures: the embedded API server, the real operator as a subprocess, and kubectl-like helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.conftest import KSERVE_SCHEMAS, ROOT

GROUP, VERSION, PLURAL = "planetgen.io", "v1alpha1", "planetpipelines"


class Operator:
    """``planet operator`` in a subprocess, so a test can kill -9 it and start it again."""

    def __init__(self, kubeconfig: Path, log: Path, *args: str) -> None:
        self.kubeconfig, self.log, self.args = kubeconfig, log, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable,
            "-m",
            "planet_operator.cli.main",
            "operator",
            "--standalone",
            "-A",
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[client.ApiClient, Path]]:
    apiserver = pytest.importorskip("planet_operator.kubeapi")
    crds = [ROOT / "crds"] + ([KSERVE_SCHEMAS] if KSERVE_SCHEMAS.exists() else [])
    with apiserver.run_in_thread(crd_paths=crds) as server:
        kubeconfig = tmp_path / "kubeconfig"
        apiserver.write_kubeconfig(kubeconfig, server.url)
        configuration = client.Configuration(host=server.url)
        with client.ApiClient(configuration) as api:
            yield api, kubeconfig


@pytest.fixture
def operator(cluster: tuple[client.ApiClient, Path], tmp_path: Path) -> Iterator[Operator]:
    running = Operator(cluster[1], tmp_path / "operator.log")
    running.start()
    yield running
    running.stop()


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

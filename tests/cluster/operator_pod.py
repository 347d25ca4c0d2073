"""The chart installed with the real Helm and its operator run as a pod the ReplicaSet made."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.chart import helm

from planet_harness.controlplane import ControlPlane
from planet_harness.pods import PodProcess
from planet_harness.processes import free_port

PLANET = str(Path(sys.executable).with_name("planet"))


def wait_for(what: str, check: Any, *, timeout: float, operator: PodProcess) -> Any:
    """Poll ``check`` until truthy; fail with the operator's log, or at once if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert operator.process is not None and operator.process.running, (
            operator.process.tail() if operator.process else ""
        )
        time.sleep(0.5)
    tail = operator.process.tail(60) if operator.process else ""
    raise AssertionError(f"{what} not within {timeout:.0f} s; operator log:\n{tail}")


def install(cluster: ControlPlane, *, release: str, namespace: str, values: list[str]) -> PodProcess:
    """``helm install`` the chart, then start the operator of the first pod its Deployment made."""
    health, metrics = free_port(), free_port()
    cluster.helm(
        "install",
        release,
        str(helm.CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        f"--set=ports.health={health}",
        f"--set=ports.metrics={metrics}",
        "--set=operator.resyncSeconds=5",
        # No kubelet here to run the pre-delete hook's Job (test_uninstall_hook.py runs it for real).
        "--set=uninstallHook.enabled=false",
        *(f"--set={value}" for value in values),
    )
    deployment = json.loads(
        cluster.kubectl("get", "deployment", release, "-n", namespace, "-o", "json").stdout
    )
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    # A Pod the real ReplicaSet controller stamped from the Deployment, run as a local process with
    # that pod's identity and a token bound to it (no kubelet in this cluster: the object stays Pending).
    pod = _first_pod(cluster, namespace, selector)
    process = PodProcess(
        cluster, pod=pod, container=pod["spec"]["containers"][0], commands={"planet": PLANET}
    )
    process.start()
    wait_for("liveness", lambda: _healthy(health), timeout=60, operator=process)
    return process


def service_account_user(cluster: ControlPlane, namespace: str) -> str:
    """The operator's user name as the API server audits it."""
    found = json.loads(cluster.kubectl("get", "sa", "-n", namespace, "-o", "json").stdout)
    accounts = [a["metadata"]["name"] for a in found["items"] if a["metadata"]["name"] != "default"]
    assert len(accounts) == 1, accounts
    return f"system:serviceaccount:{namespace}:{accounts[0]}"


def denied(cluster: ControlPlane, user: str, *, since: int = 0) -> list[str]:
    """Requests refused after the ``since``-th audit event: any 401 (it has no user), 403s of ``user``."""
    return [
        f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('code')}"
        for e in list(cluster.audit_events())[since:]
        if (code := e.get("responseStatus", {}).get("code")) == 401
        or (code == 403 and e.get("user", {}).get("username") == user)
    ]


def _first_pod(cluster: ControlPlane, namespace: str, selector: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = json.loads(
            cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
        )
        if pods["items"]:
            first: dict[str, Any] = sorted(pods["items"], key=lambda p: p["metadata"]["name"])[0]
            return first
        time.sleep(0.5)
    raise AssertionError(f"the ReplicaSet made no pod for {selector}")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False

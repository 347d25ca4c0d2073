"""The operator as the chart deploys it: in a "pod", with the chart's ServiceAccount and RBAC only.

The chart is installed by the real Helm (``helm install``) on the real API server; the operator runs
the Deployment's command and args, finds its token and CA where the kubernetes client looks, and must
take a new pipeline to its build Job and a status without a single denied request (audit log).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.chart import helm
from tests.conftest import ROOT

from planet_harness.controlplane import ControlPlane
from planet_harness.pods import PodProcess, pod_from_deployment
from planet_harness.processes import free_port
from planet_operator.api import resource

PLANET = str(Path(sys.executable).with_name("planet"))


def wait_for(what: str, check: Any, *, timeout: float, operator: PodProcess) -> Any:
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


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane) -> Iterator[PodProcess]:
    """The chart installed as `helm install` would, and its operator running in-cluster."""
    health, metrics = free_port(), free_port()
    cluster.helm(
        "install",
        helm.RELEASE,
        str(helm.CHART),
        "--namespace",
        helm.NAMESPACE,
        "--create-namespace",
        f"--set=ports.health={health}",
        f"--set=ports.metrics={metrics}",
        "--set=operator.resyncSeconds=5",
    )
    # The Deployment as the API server stored it: what a ReplicaSet would stamp pods from.
    deployment = json.loads(
        cluster.kubectl("get", "deployment", helm.RELEASE, "-n", helm.NAMESPACE, "-o", "json").stdout
    )
    pod = pod_from_deployment(deployment, name=f"{deployment['metadata']['name']}-7d9f8-abcde")
    container = pod["spec"]["containers"][0]
    process = PodProcess(cluster, pod=pod, container=container, commands={"planet": PLANET})
    process.start()
    try:
        wait_for("liveness", lambda: _healthy(health), timeout=60, operator=process)
        yield process
    finally:
        process.stop()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _service_account_user(objects_namespace: str, cluster: ControlPlane) -> str:
    name = json.loads(cluster.kubectl("get", "sa", "-n", objects_namespace, "-o", "json").stdout)
    accounts = [a["metadata"]["name"] for a in name["items"] if a["metadata"]["name"] != "default"]
    assert len(accounts) == 1, accounts
    return f"system:serviceaccount:{objects_namespace}:{accounts[0]}"


def test_new_pipeline_gets_its_build_job_and_status(
    cluster: ControlPlane, namespace: str, operator: PodProcess
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"))

    def job() -> Any:
        found = json.loads(
            cluster.kubectl(
                "get", "jobs", "-n", namespace, "-l", resource.LABEL_ENGINE_KEY, "-o", "json"
            ).stdout
        )
        return found["items"]

    jobs = wait_for("the engine-build Job", job, timeout=90, operator=operator)
    assert len(jobs) == 1

    def status() -> Any:
        body = json.loads(cluster.kubectl("get", "pp", "minimal", "-n", namespace, "-o", "json").stdout)
        return body.get("status", {}).get("phase") and body["status"]

    got = wait_for("a status", status, timeout=60, operator=operator)
    assert got["phase"] == "Building", got
    assert got.get("observedGeneration") == 1
    assert any(c["type"] == "Ready" for c in got.get("conditions", []))

    user = _service_account_user(helm.NAMESPACE, cluster)
    events = list(cluster.audit_events())
    mine = [e for e in events if e.get("user", {}).get("username") == user]
    assert mine, f"no request by {user} in the audit log"
    writes = [e for e in mine if e["verb"] in ("create", "patch", "update")]
    assert writes, "the operator made no write"
    denied = [
        f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('code')}"
        for e in events
        # A 401 carries no user; nothing else in this cluster holds a bad credential.
        if (code := e.get("responseStatus", {}).get("code")) == 401
        or (code == 403 and e.get("user", {}).get("username") == user)
    ]
    assert not denied, "denied requests:\n" + "\n".join(denied)


def test_watches_are_filtered_on_the_server(cluster: ControlPlane, operator: PodProcess) -> None:
    user = _service_account_user(helm.NAMESPACE, cluster)
    watches = [
        e["requestURI"]
        for e in cluster.audit_events()
        if e.get("user", {}).get("username") == user and e["verb"] in ("list", "watch")
    ]
    assert watches
    for plural in ("configmaps", "jobs", "controllerrevisions", "inferenceservices", "inferencegraphs"):
        requests = [uri for uri in watches if f"/{plural}?" in uri or uri.endswith(f"/{plural}")]
        assert requests, f"the operator never listed {plural}"
        unfiltered = [uri for uri in requests if "labelSelector=" not in uri]
        assert not unfiltered, f"{plural} listed without a label selector: {unfiltered[:3]}"

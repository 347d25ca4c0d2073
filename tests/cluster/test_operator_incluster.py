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

from planet_harness.controlplane import ControlPlane, kubeconfig
from planet_harness.pods import PodProcess
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
    # A Pod the real ReplicaSet controller stamped from the Deployment (it stays Pending: no kubelet
    # here), run as a local process with that pod's identity and a token bound to it.
    selector = ",".join(
        f"{k}={v}" for k, v in _deployment(cluster)["spec"]["selector"]["matchLabels"].items()
    )
    pod = _first_pod(cluster, selector)
    container = pod["spec"]["containers"][0]
    process = PodProcess(cluster, pod=pod, container=container, commands={"planet": PLANET})
    process.start()
    try:
        wait_for("liveness", lambda: _healthy(health), timeout=60, operator=process)
        yield process
    finally:
        process.stop()


def build_jobs(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The engine-build Jobs in ``namespace``."""
    found = cluster.kubectl("get", "jobs", "-n", namespace, "-l", resource.LABEL_ENGINE_KEY, "-o", "json")
    items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
    return items


def _deployment(cluster: ControlPlane) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        cluster.kubectl("get", "deployment", helm.RELEASE, "-n", helm.NAMESPACE, "-o", "json").stdout
    )
    return found


def _first_pod(cluster: ControlPlane, selector: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = json.loads(
            cluster.kubectl("get", "pods", "-n", helm.NAMESPACE, "-l", selector, "-o", "json").stdout
        )["items"]
        if pods:
            first: dict[str, Any] = sorted(pods, key=lambda p: p["metadata"]["name"])[0]
            return first
        time.sleep(0.5)
    raise AssertionError(f"the ReplicaSet made no pod for {selector}")


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

    jobs = wait_for(
        "the engine-build Job", lambda: build_jobs(cluster, namespace), timeout=90, operator=operator
    )
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

    # A steady state makes no writes: three resyncs (5 s each) later, nothing was written again, as
    # the server's own spelling of what it stored (quantities, defaults) is not a change.
    seen = len(events)
    time.sleep(16)
    again = [
        f"{e['verb']} {e['requestURI']}"
        for e in list(cluster.audit_events())[seen:]
        if e.get("user", {}).get("username") == user
        and e["verb"] in ("create", "patch", "update", "delete")
        and "kopfpeerings" not in e["requestURI"]
    ]
    assert not again, "writes in a steady state:\n" + "\n".join(again)


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


def test_rotated_token_is_picked_up_after_the_old_one_is_revoked(
    cluster: ControlPlane, namespace: str, operator: PodProcess
) -> None:
    # The kubelet rewrites the projected token before it expires; here the old one is also revoked
    # (its Pod is deleted), so the operator's next write must re-read the file instead of retrying.
    pod = operator.pod
    revoked = (operator.secrets / "token").read_text()
    secret = json.loads(
        cluster.kubectl(
            "create", "secret", "generic", "rotated-token", "-n", helm.NAMESPACE, "-o", "json"
        ).stdout
    )
    operator.project_token(bound_to=("Secret", "rotated-token", secret["metadata"]["uid"]))
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", helm.NAMESPACE, "--wait=false")
    old = {"kind": "Pod", "name": pod["metadata"]["name"]}

    assert cluster.ca is not None
    dead = kubeconfig(
        operator.folder / "revoked.kubeconfig",
        server=cluster.server,
        ca=cluster.ca.pair.cert,
        user="revoked",
        token=revoked,
    )

    def refused() -> bool:
        # The API server caches token reviews for a few seconds: wait until the old token is dead.
        probe = cluster.kubectl("get", "--raw", "/api", kubeconfig=dead, check=False)
        return probe.returncode != 0 and "Unauthorized" in probe.stderr

    wait_for("the revoked token to be refused", refused, timeout=60, operator=operator)
    before = sum(1 for _ in cluster.audit_events())
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"))

    assert wait_for(
        f"a build Job after revoking the token bound to {old}",
        lambda: build_jobs(cluster, namespace),
        timeout=90,
        operator=operator,
    )
    # Written with the new token: the operator's requests after the revocation still carry its user.
    user = _service_account_user(helm.NAMESPACE, cluster)
    after = list(cluster.audit_events())[before:]
    assert any(e.get("user", {}).get("username") == user and e["verb"] == "create" for e in after)

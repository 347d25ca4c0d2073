"""The operator as the chart deploys it: in a "pod", with the chart's ServiceAccount and RBAC only.

The chart is installed by the real Helm (``helm install``) on the real API server; the operator runs
the Deployment's command and args, finds its token and CA where the kubernetes client looks, and must
take a new pipeline to its build Job and a status without a single denied request (audit log).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.chart import helm
from tests.cluster import operator_pod
from tests.conftest import ROOT

from planet_contracts.api import resource
from planet_harness.controlplane import ControlPlane, kubeconfig
from planet_harness.pods import PodProcess

PLANET = str(Path(sys.executable).with_name("planet"))


@pytest.fixture(scope="module")
def audit_start(cluster: ControlPlane) -> int:
    """Audit events before this install: what earlier tests did is not this operator's."""
    return sum(1 for _ in cluster.audit_events())


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane, audit_start: int) -> Iterator[PodProcess]:
    """The chart installed as `helm install` would, and its operator running in-cluster."""
    process = operator_pod.install(cluster, release=helm.RELEASE, namespace=helm.NAMESPACE, values=[])
    try:
        yield process
    finally:
        process.stop()


def build_jobs(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The engine-build Jobs in ``namespace``."""
    found = cluster.kubectl("get", "jobs", "-n", namespace, "-l", resource.LABEL_ENGINE_KEY, "-o", "json")
    items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
    return items


def test_new_pipeline_gets_its_build_job_and_status(
    cluster: ControlPlane, namespace: str, operator: PodProcess, audit_start: int
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"))

    jobs = operator_pod.wait_for(
        "the engine-build Job", lambda: build_jobs(cluster, namespace), timeout=90, operator=operator
    )
    assert len(jobs) == 1

    def status() -> Any:
        body = json.loads(cluster.kubectl("get", "pp", "minimal", "-n", namespace, "-o", "json").stdout)
        return body.get("status", {}).get("phase") and body["status"]

    got = operator_pod.wait_for("a status", status, timeout=60, operator=operator)
    assert got["phase"] == "Building", got
    assert got.get("observedGeneration") == 1
    assert any(c["type"] == "Ready" for c in got.get("conditions", []))

    user = operator_pod.service_account_user(cluster, helm.NAMESPACE)
    events = list(cluster.audit_events())
    mine = [e for e in events if e.get("user", {}).get("username") == user]
    assert mine, f"no request by {user} in the audit log"
    writes = [e for e in mine if e["verb"] in ("create", "patch", "update")]
    assert writes, "the operator made no write"
    refused = operator_pod.denied(cluster, user, since=audit_start)
    assert not refused, "denied requests:\n" + "\n".join(refused)

    # A steady state makes no writes: three resyncs (5 s each) later, nothing was written again, as
    # the server's own spelling of what it stored (quantities, defaults) is not a change.
    def version() -> str:
        return str(
            cluster.kubectl(
                "get", "pp", "minimal", "-n", namespace, "-o", "jsonpath={.metadata.resourceVersion}"
            ).stdout
        )

    # Settle first: the build pod turning Unschedulable (no node here) is news the status reports once.
    before, deadline = version(), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(6)
        if (now := version()) == before:
            break
        before = now
    seen = sum(1 for _ in cluster.audit_events())
    time.sleep(16)
    again = [
        f"{e['verb']} {e['requestURI']}"
        for e in list(cluster.audit_events())[seen:]
        if e.get("user", {}).get("username") == user
        and e["verb"] in ("create", "patch", "update", "delete")
        # This pipeline's steady state: earlier test modules leave pipelines that still fail.
        and f"/namespaces/{namespace}/" in e["requestURI"]
    ]
    assert not again, "writes in a steady state:\n" + "\n".join(again)


def test_watches_are_filtered_on_the_server(cluster: ControlPlane, operator: PodProcess) -> None:
    user = operator_pod.service_account_user(cluster, helm.NAMESPACE)
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

    operator_pod.wait_for("the revoked token to be refused", refused, timeout=60, operator=operator)
    before = sum(1 for _ in cluster.audit_events())
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "minimal.yaml"))

    assert operator_pod.wait_for(
        f"a build Job after revoking the token bound to {old}",
        lambda: build_jobs(cluster, namespace),
        timeout=90,
        operator=operator,
    )
    # Written with the new token: the operator's requests after the revocation still carry its user.
    user = operator_pod.service_account_user(cluster, helm.NAMESPACE)
    after = list(cluster.audit_events())[before:]
    assert any(e.get("user", {}).get("username") == user and e["verb"] == "create" for e in after)

"""A namespace-scoped install (``watchNamespaces``): Roles only, and nothing read outside its namespace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.cluster import operator_pod
from tests.cluster.test_operator_incluster import build_jobs
from tests.conftest import ROOT

from planet_harness.controlplane import ControlPlane
from planet_harness.pods import PodProcess

RELEASE, NAMESPACE, WATCHED = "planetgen-team", "planetgen-team", "team-a"


@pytest.fixture(scope="module")
def audit_start(cluster: ControlPlane) -> int:
    """Audit events before this install: what earlier tests did is not this operator's."""
    return sum(1 for _ in cluster.audit_events())


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane, audit_start: int) -> Iterator[PodProcess]:
    cluster.kubectl("create", "namespace", WATCHED)
    process = operator_pod.install(
        cluster, release=RELEASE, namespace=NAMESPACE, values=[f"watchNamespaces={{{WATCHED}}}", "replicas=1"]
    )
    try:
        yield process
    finally:
        process.stop()


def test_namespaced_operator_builds_with_roles_only(
    cluster: ControlPlane, operator: PodProcess, audit_start: int
) -> None:
    cluster.kubectl("apply", "-n", WATCHED, "-f", str(ROOT / "examples" / "minimal.yaml"))
    jobs = operator_pod.wait_for(
        "the build Job", lambda: build_jobs(cluster, WATCHED), timeout=90, operator=operator
    )
    assert len(jobs) == 1
    user = operator_pod.service_account_user(cluster, NAMESPACE)
    assert not operator_pod.denied(cluster, user, since=audit_start)
    bindings = cluster.kubectl("get", "clusterrolebindings", "-o", "name").stdout
    assert RELEASE not in bindings, "a namespaced install must not bind a ClusterRole"
    # Everything it reads is in its namespace: no cluster-wide list or watch (discovery aside).
    reads = [
        e["requestURI"]
        for e in cluster.audit_events()
        if e.get("user", {}).get("username") == user and e["verb"] in ("list", "watch")
    ]
    assert reads
    outside = [uri for uri in reads if f"/namespaces/{WATCHED}/" not in uri]
    assert not outside, f"reads outside {WATCHED}: {outside[:5]}"

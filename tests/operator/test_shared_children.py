"""Owners on the real API server with the chart's RBAC: a shared build Job, a child taken over.

The API server runs OwnerReferencesPermissionEnforcement: a write that changes a child's
ownerReferences needs ``delete`` on it, so these writes fail unless the chart grants what they need.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client
from tests.operator.cluster import GROUP, PLURAL, VERSION, Cluster, Operator, pipeline, wait_for

from planet_harness.kserve_status import StatusWriter

ENGINE = {"backend": "onnxruntime", "precision": "fp32"}
ENGINE_KEY = "planetgen.io/engine-key"
WRITES = ("create", "update", "patch", "delete")


def _jobs(cluster: Cluster) -> list[Any]:
    batch = client.BatchV1Api(cluster.api)
    return list(batch.list_namespaced_job(cluster.namespace, label_selector=ENGINE_KEY).items)


def _uid(cluster: Cluster, name: str) -> str:
    body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, cluster.namespace, PLURAL, name
    )
    return str(body["metadata"]["uid"])


def _operator_requests(cluster: Cluster, since: int, fragment: str) -> list[dict[str, Any]]:
    return [
        e
        for e in list(cluster.control_plane.audit_events())[since:]
        if e.get("user", {}).get("username") == cluster.operator_user and fragment in e["requestURI"]
    ]


def _refused(cluster: Cluster, since: int) -> list[str]:
    return [
        f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('message', '')}"
        for e in _operator_requests(cluster, since, f"/namespaces/{cluster.namespace}/")
        if e.get("responseStatus", {}).get("code") == 403
    ]


def test_pipelines_sharing_an_engine_key_share_one_job_that_is_never_patched(
    cluster: Cluster, operator: Operator
) -> None:
    ns = cluster.namespace
    since = sum(1 for _ in cluster.control_plane.audit_events())
    for name in ("left", "right"):
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, pipeline(name, engine=ENGINE)
        )
    uids = {_uid(cluster, "left"), _uid(cluster, "right")}

    def joined() -> Any:
        jobs = _jobs(cluster)
        owners = {ref.uid for job in jobs for ref in job.metadata.owner_references or []}
        return len(jobs) == 1 and owners == uids and jobs[0]

    job = wait_for("one Job owned by both pipelines", joined, log=operator)
    labels = job.metadata.labels
    assert "planetgen.io/pipeline" not in labels and "planetgen.io/revision" not in labels, labels
    assert labels[ENGINE_KEY] and job.spec.template.metadata.labels[ENGINE_KEY] == labels[ENGINE_KEY]
    # Several owners, none the controller: the garbage collector keeps it while any is left.
    assert not any(ref.controller for ref in job.metadata.owner_references)
    assert all(ref.block_owner_deletion for ref in job.metadata.owner_references)
    # The join changed ownerReferences, which the chart's RBAC allows (delete on jobs).
    assert not _refused(cluster, since), _refused(cluster, since)

    # Settle (the Job controller writes the Job's status once its pod exists), then several resyncs
    # (2 s each) of both pipelines: the operator writes nothing to the Job.
    before, deadline = job.metadata.resource_version, time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(3)
        now = _jobs(cluster)[0].metadata.resource_version
        if now == before:
            break
        before = now
    settled = sum(1 for _ in cluster.control_plane.audit_events())
    time.sleep(7)
    after = _jobs(cluster)[0]
    assert after.metadata.resource_version == before
    assert after.metadata.generation == 1, "the Job's spec was changed"
    assert after.metadata.labels == labels
    name = job.metadata.name
    assert not [e for e in _operator_requests(cluster, settled, f"/jobs/{name}") if e["verb"] in WRITES]
    # Over the whole test: one create, and one patch (the second owner joining), never more.
    writes = [
        (e["verb"], e["responseStatus"]["code"])
        for e in _operator_requests(cluster, since, "/jobs")
        if e["verb"] in WRITES and e.get("stage") == "ResponseComplete"
    ]
    assert [w for w in writes if w[1] < 300].count(("patch", 200)) == 1, writes
    assert [w for w in writes if w[0] == "create" and w[1] < 300] == [("create", 201)], writes

    # One owner deleted: the Job stays for the other, which the garbage collector leaves as its owner.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "left")
    right = _uid(cluster, "right")
    wait_for(
        "the garbage collector to drop the deleted owner",
        lambda: [ref.uid for job in _jobs(cluster) for ref in job.metadata.owner_references or []] == [right],
        log=operator,
    )
    time.sleep(2)
    assert [j.metadata.name for j in _jobs(cluster)] == [name]
    # The last owner deleted: the Job goes.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "right")
    wait_for("the Job to be garbage-collected", lambda: _jobs(cluster) == [], timeout=60, log=operator)


def test_a_graph_someone_else_made_is_taken_over_under_the_charts_rbac(
    cluster: Cluster, operator: Operator
) -> None:
    ns = cluster.namespace
    since = sum(1 for _ in cluster.control_plane.audit_events())
    # An InferenceGraph with the pipeline's name and no owner (left by `kubectl apply` of `planet
    # render`, or by a pipeline deleted with --cascade=orphan).
    stale = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "adopted", "namespace": ns, "labels": {"planetgen.io/pipeline": "adopted"}},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "old"}]}}},
    }
    cluster.custom.create_namespaced_custom_object(
        "serving.kserve.io", "v1alpha1", ns, "inferencegraphs", stale
    )
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, pipeline("adopted"))
    uid = _uid(cluster, "adopted")

    def owned() -> Any:
        graph: dict[str, Any] = cluster.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            "serving.kserve.io", "v1alpha1", ns, "inferencegraphs", "adopted"
        )
        return [r["uid"] for r in graph["metadata"].get("ownerReferences") or []] == [uid] and graph

    with StatusWriter(cluster.api, namespace=ns):
        graph = wait_for("the pipeline to own the graph", owned, log=operator)
    assert graph["spec"]["nodes"]["root"]["steps"][0]["serviceName"] == "adopted-generate"
    assert not _refused(cluster, since), _refused(cluster, since)

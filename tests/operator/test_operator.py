"""The real operator (a `planet operator` process) against the real API server, in a namespace per test."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.operator.cluster import GROUP, PLURAL, VERSION, Cluster, Operator, operator_for, pipeline, wait_for

from planet_harness.kserve_status import StatusWriter
from planet_operator.schemas import strict

CRD_NAME = f"{PLURAL}.{GROUP}"


def get_pipeline(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name)  # type: ignore[no-any-return]


def create(cluster: Cluster, body: dict[str, Any]) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, body)


def patch(cluster: Cluster, name: str, body: dict[str, Any]) -> None:
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name, body)


def services(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    listed = cluster.custom.list_namespaced_custom_object(
        "serving.kserve.io",
        "v1beta1",
        cluster.namespace,
        "inferenceservices",
        label_selector=f"planetgen.io/pipeline={name}",
    )
    return listed["items"]  # type: ignore[no-any-return]


def phase(cluster: Cluster, name: str) -> str | None:
    return (get_pipeline(cluster, name).get("status") or {}).get("phase")


def events_for(cluster: Cluster, name: str) -> list[Any]:
    listed = client.CoreV1Api(cluster.api).list_namespaced_event(cluster.namespace)
    return [e for e in listed.items if e.involved_object.name == name]


def kserve_ready(cluster: Cluster) -> StatusWriter:
    """KServe's status writes, for this test's namespace only."""
    return StatusWriter(cluster.api, namespace=cluster.namespace)


def test_create_update_delete(cluster: Cluster, operator: Operator, kserve_schemas: Path) -> None:
    ns = cluster.namespace
    index = strict.load_crds(kserve_schemas)
    upscale = {"model": {"uri": "/models/x2.pth"}, "stages": [{"type": "upscale", "factor": 2}]}
    create(cluster, pipeline("alpha", upscale=upscale))

    # create ▶ children appear, owned and labelled, and valid for KServe
    found = wait_for(
        "two InferenceServices",
        lambda: len(services(cluster, "alpha")) == 2 and services(cluster, "alpha"),
        log=operator,
    )
    for isvc in found:
        assert isvc["metadata"]["ownerReferences"][0]["name"] == "alpha"
        assert index.validate({k: v for k, v in isvc.items() if k != "status"}) == []
    graph = cluster.custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1alpha1", ns, "inferencegraphs", "alpha"
    )
    assert index.validate({k: v for k, v in graph.items() if k != "status"}) == []

    # KServe reports ready ▶ the pipeline is Ready with the graph's URL
    with kserve_ready(cluster):
        status = wait_for(
            "Ready",
            lambda: phase(cluster, "alpha") == "Ready" and get_pipeline(cluster, "alpha")["status"],
            log=operator,
        )
        # Standard mode: the graph's Service, not its status.url (KServe routes no HTTPRoute to it).
        assert status["url"] == f"http://alpha.{ns}.svc.cluster.local"
        first = status["currentRevision"]
        assert status["stableRevision"] == first
        assert [h["result"] for h in status["history"]] == ["Promoted"]

        # spec update ▶ new revision, children updated (rollout steps [] promote at once)
        patch(cluster, "alpha", {"spec": {"generation": {"steps": 20}}})

        def promoted() -> Any:
            s = get_pipeline(cluster, "alpha").get("status") or {}
            return s.get("stableRevision") not in (None, first) and s.get("phase") == "Ready" and s

        status = wait_for("new revision", promoted, log=operator)
        second = status["stableRevision"]
        labels = {
            i["metadata"]["name"]: i["spec"]["predictor"]["labels"]["planetgen.io/revision"]
            for i in services(cluster, "alpha")
        }
        assert set(labels.values()) == {second}
        revisions = client.AppsV1Api(cluster.api).list_namespaced_controller_revision(
            ns, label_selector="planetgen.io/pipeline=alpha"
        )
        assert {r.metadata.labels["planetgen.io/revision"] for r in revisions.items} == {first, second}

    assert any(e.reason == "Ready" for e in events_for(cluster, "alpha"))

    # delete ▶ children gone: the real garbage collector follows the ownerReferences. It watches a
    # CRD's kind from its next discovery sync (every 30 s) on, so just after the CRDs went in it can
    # take that long.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "alpha")
    wait_for("children gone", lambda: services(cluster, "alpha") == [], timeout=75, log=operator)


def test_steady_state_makes_no_writes(cluster: Cluster, operator: Operator) -> None:
    create(cluster, pipeline("calm"))
    with kserve_ready(cluster):
        wait_for("Ready", lambda: phase(cluster, "calm") == "Ready", log=operator)
        time.sleep(1.0)
        before = get_pipeline(cluster, "calm")["metadata"]["resourceVersion"]
        children_before = [s["metadata"]["resourceVersion"] for s in services(cluster, "calm")]
        since = sum(1 for _ in cluster.control_plane.audit_events())
        time.sleep(5.0)  # more than two resync periods
        assert get_pipeline(cluster, "calm")["metadata"]["resourceVersion"] == before
        assert [s["metadata"]["resourceVersion"] for s in services(cluster, "calm")] == children_before
    # Nor anything else: the audit log has no write by the operator in that window.
    writes = [
        f"{e['verb']} {e['requestURI']}"
        for e in list(cluster.control_plane.audit_events())[since:]
        if e.get("user", {}).get("username") == cluster.operator_user
        and e["verb"] in ("create", "update", "patch", "delete", "deletecollection")
    ]
    assert not writes, writes


@contextlib.contextmanager
def crd_without_rule(cluster: Cluster, message: str) -> Iterator[None]:
    """The PlanetPipeline CRD without the CEL rule that says ``message``, as an older CRD would be."""
    control_plane = cluster.control_plane

    def rules_of(crd: dict[str, Any]) -> list[dict[str, Any]]:
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        found: list[dict[str, Any]] = schema["properties"]["spec"]["properties"]["autoscaling"][
            "x-kubernetes-validations"
        ]
        return found

    def replace(edit: Any) -> None:
        crd = json.loads(control_plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
        edit(rules_of(crd))
        control_plane.kubectl("replace", "-f", "-", input=json.dumps(crd))

    removed: list[dict[str, Any]] = []

    def drop(rules: list[dict[str, Any]]) -> None:
        removed.extend(r for r in rules if r["message"] == message)
        assert removed, f"no rule says {message!r}"
        rules[:] = [r for r in rules if r["message"] != message]

    replace(drop)
    try:
        yield
    finally:
        replace(lambda rules: rules.extend(removed))


def test_invalid_spec_reports_and_changes_nothing(cluster: Cluster, operator: Operator) -> None:
    create(cluster, pipeline("good"))
    bad = {"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}
    with kserve_ready(cluster):
        wait_for("Ready", lambda: phase(cluster, "good") == "Ready", log=operator)
        spec_before = services(cluster, "good")[0]["spec"]
        # The CRD's CEL rule refuses this in the API server ...
        with pytest.raises(client.ApiException) as refused:
            patch(cluster, "good", bad)
        assert refused.value.status == 422 and "minReplicas" in refused.value.body, refused.value.body
        # ... and the operator refuses it too where the CRD let it in: one installed before the rule.
        with crd_without_rule(cluster, "minReplicas must be <= maxReplicas"):
            wait_for("the older CRD served", lambda: patch(cluster, "good", bad) or True, timeout=30)
        status = wait_for(
            "Failed",
            lambda: phase(cluster, "good") == "Failed" and get_pipeline(cluster, "good")["status"],
            log=operator,
        )
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "InvalidSpec"
        assert "spec.autoscaling.minReplicas" in ready["message"]
        assert services(cluster, "good")[0]["spec"] == spec_before, "a bad spec must not touch what serves"
        wait_for(
            "event",
            lambda: any(
                e.reason == "Failed" and "minReplicas" in e.message for e in events_for(cluster, "good")
            ),
            log=operator,
        )


def test_engine_build_job_gates_the_deploy(cluster: Cluster, operator: Operator) -> None:
    ns = cluster.namespace
    batch = client.BatchV1Api(cluster.api)
    create(cluster, pipeline("built", engine={"backend": "onnxruntime", "precision": "fp32"}))
    jobs = wait_for("build Job", lambda: batch.list_namespaced_job(ns).items, log=operator)
    # The handler creates the Job, then kopf writes its status patch: the phase lands a moment later.
    wait_for("Building", lambda: phase(cluster, "built") == "Building", log=operator)
    assert services(cluster, "built") == []
    job = jobs[0]
    assert job.spec.template.spec.containers[0].command == ["python", "-m", "planet_build"]
    # Its pod fails as a kubelet would report it: exit 2 (bad input), which the Job's
    # podFailurePolicy makes final. The real Job controller fails the Job; Degraded, nothing deployed.
    core = client.CoreV1Api(cluster.api)
    pods = wait_for(
        "the Job's pod",
        lambda: core.list_namespaced_pod(ns, label_selector=f"job-name={job.metadata.name}").items,
        log=operator,
    )
    build = job.spec.template.spec.containers[0]
    terminated = {"exitCode": 2, "reason": "Error", "message": "out of GPU memory"}
    core.patch_namespaced_pod_status(
        pods[0].metadata.name,
        ns,
        {
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": build.name,
                        "image": build.image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        },
    )
    status = wait_for(
        "Degraded",
        lambda: phase(cluster, "built") == "Degraded" and get_pipeline(cluster, "built")["status"],
        log=operator,
    )
    engines = next(c for c in status["conditions"] if c["type"] == "EnginesReady")
    assert engines["status"] == "False"
    assert "PodFailurePolicy" in engines["message"], engines
    assert "out of GPU memory" in engines["message"], engines
    assert services(cluster, "built") == []


def test_killed_mid_reconcile_restarts_without_duplicates(cluster: Cluster, tmp_path: Path) -> None:
    running = operator_for(cluster, tmp_path / "op.log")
    running.start()
    names = [f"restart-{i}" for i in range(4)]
    for name in names:
        create(cluster, pipeline(name))
    wait_for("first children", lambda: services(cluster, names[0]), log=running)
    running.kill()  # mid-way through the batch
    running.start()
    try:
        with kserve_ready(cluster):
            for name in names:
                wait_for(f"{name} Ready", lambda n=name: phase(cluster, n) == "Ready", log=running)  # type: ignore[misc]
        for name in names:
            assert len(services(cluster, name)) == 1
            revisions = client.AppsV1Api(cluster.api).list_namespaced_controller_revision(
                cluster.namespace, label_selector=f"planetgen.io/pipeline={name}"
            )
            assert len(revisions.items) == 1
            assert len(get_pipeline(cluster, name)["status"]["history"]) == 1
    finally:
        running.stop()


def test_conflicting_child_is_taken_over_without_losing_updates(cluster: Cluster, operator: Operator) -> None:
    ns = cluster.namespace
    # Someone (an old operator, a user) created the child first, with a stale spec and a label of their own.
    stale = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "taken-generate",
            "namespace": ns,
            "labels": {"team": "planets", "planetgen.io/pipeline": "taken"},
        },
        "spec": {
            "predictor": {"minReplicas": 9, "containers": [{"name": "kserve-container", "image": "old"}]}
        },
    }
    cluster.custom.create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", ns, "inferenceservices", stale
    )
    create(cluster, pipeline("taken"))

    def taken_over() -> Any:
        isvc = cluster.custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", ns, "inferenceservices", "taken-generate"
        )
        return isvc["spec"]["predictor"]["minReplicas"] == 1 and isvc

    isvc = wait_for("operator's spec", taken_over, log=operator)
    assert isvc["metadata"]["labels"]["team"] == "planets", "the other writer's label survives"
    assert isvc["spec"]["predictor"]["containers"][0]["image"] != "old"


def test_a_mode_change_keeps_serving_in_the_live_mode_and_says_why(
    cluster: Cluster, operator: Operator
) -> None:
    # KServe refuses to change a live InferenceService's deploymentMode: the operator must not try.
    create(cluster, pipeline("modal", serving={"deploymentMode": "standard"}))
    with kserve_ready(cluster):
        wait_for("Ready", lambda: phase(cluster, "modal") == "Ready", log=operator)
        patch(cluster, "modal", {"spec": {"serving": {"deploymentMode": "knative"}}})

        def refused() -> Any:
            status = get_pipeline(cluster, "modal").get("status") or {}
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            return ready if ready.get("reason") == "DeploymentModeImmutable" else None

        ready = wait_for("the mode change refused in status", refused, log=operator)
        assert "keeps serving in standard mode" in ready["message"]
        time.sleep(3)  # a few resyncs: nothing may have been rewritten in the other mode
        for isvc in services(cluster, "modal"):
            assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
        assert any(e.reason == "DeploymentModeImmutable" for e in events_for(cluster, "modal"))
        # Back to the live mode: the cause clears.
        patch(cluster, "modal", {"spec": {"serving": {"deploymentMode": "standard"}}})
        wait_for("Ready again", lambda: phase(cluster, "modal") == "Ready", log=operator)

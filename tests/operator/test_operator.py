"""The real operator (a `planet operator` process) against the embedded API server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.operator.cluster import GROUP, PLURAL, VERSION, Operator, cluster, operator, pipeline, wait_for

from planet_operator.schemas import strict
from planet_operator.testing.fake_kserve import StatusWriter

__all__ = ["cluster", "operator"]  # fixtures
NS = "default"


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def get_pipeline(api: client.ApiClient, name: str) -> dict[str, Any]:
    return custom(api).get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)  # type: ignore[no-any-return]


def services(api: client.ApiClient, name: str) -> list[dict[str, Any]]:
    listed = custom(api).list_namespaced_custom_object(
        "serving.kserve.io",
        "v1beta1",
        NS,
        "inferenceservices",
        label_selector=f"planetgen.io/pipeline={name}",
    )
    return listed["items"]  # type: ignore[no-any-return]


def phase(api: client.ApiClient, name: str) -> str | None:
    return (get_pipeline(api, name).get("status") or {}).get("phase")


def events_for(api: client.ApiClient, name: str) -> list[Any]:
    return [
        e for e in client.CoreV1Api(api).list_namespaced_event(NS).items if e.involved_object.name == name
    ]


def test_create_update_delete(
    cluster: tuple[client.ApiClient, Path], operator: Operator, kserve_schemas: Path
) -> None:
    api, _ = cluster
    index = strict.load_crds(kserve_schemas)
    upscale = {"model": {"uri": "/models/x2.pth"}, "stages": [{"type": "upscale", "factor": 2}]}
    custom(api).create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, pipeline("alpha", upscale=upscale)
    )

    # create ▶ children appear, owned and labelled, and valid for KServe
    found = wait_for(
        "two InferenceServices",
        lambda: len(services(api, "alpha")) == 2 and services(api, "alpha"),
        log=operator,
    )
    for isvc in found:
        assert isvc["metadata"]["ownerReferences"][0]["name"] == "alpha"
        assert index.validate({k: v for k, v in isvc.items() if k != "status"}) == []
    graph = custom(api).get_namespaced_custom_object(
        "serving.kserve.io", "v1alpha1", NS, "inferencegraphs", "alpha"
    )
    assert index.validate({k: v for k, v in graph.items() if k != "status"}) == []

    # KServe reports ready ▶ the pipeline is Ready with the graph's URL
    with StatusWriter(api):
        status = wait_for(
            "Ready",
            lambda: phase(api, "alpha") == "Ready" and get_pipeline(api, "alpha")["status"],
            log=operator,
        )
        assert status["url"] == "http://alpha.default.svc.cluster.local"  # Standard mode: the graph's Service
        first = status["currentRevision"]
        assert status["stableRevision"] == first
        assert [h["result"] for h in status["history"]] == ["Promoted"]

        # spec update ▶ new revision, children updated (rollout steps [] promote at once)
        custom(api).patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "alpha", {"spec": {"generation": {"steps": 20}}}
        )

        def promoted() -> Any:
            s = get_pipeline(api, "alpha").get("status") or {}
            return s.get("stableRevision") not in (None, first) and s.get("phase") == "Ready" and s

        status = wait_for("new revision", promoted, log=operator)
        second = status["stableRevision"]
        labels = {
            i["metadata"]["name"]: i["spec"]["predictor"]["labels"]["planetgen.io/revision"]
            for i in services(api, "alpha")
        }
        assert set(labels.values()) == {second}
        revisions = client.AppsV1Api(api).list_namespaced_controller_revision(
            NS, label_selector="planetgen.io/pipeline=alpha"
        )
        assert {r.metadata.labels["planetgen.io/revision"] for r in revisions.items} == {first, second}

    assert any(e.reason == "Ready" for e in events_for(api, "alpha"))

    # delete ▶ children gone (ownerReference cascade)
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "alpha")
    wait_for("children gone", lambda: services(api, "alpha") == [], log=operator)


def test_steady_state_makes_no_writes(cluster: tuple[client.ApiClient, Path], operator: Operator) -> None:
    api, _ = cluster
    custom(api).create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, pipeline("calm"))
    with StatusWriter(api):
        wait_for("Ready", lambda: phase(api, "calm") == "Ready", log=operator)
        time.sleep(1.0)
        before = get_pipeline(api, "calm")["metadata"]["resourceVersion"]
        children_before = [s["metadata"]["resourceVersion"] for s in services(api, "calm")]
        time.sleep(5.0)  # more than two resync periods
        assert get_pipeline(api, "calm")["metadata"]["resourceVersion"] == before
        assert [s["metadata"]["resourceVersion"] for s in services(api, "calm")] == children_before


def test_invalid_spec_reports_and_changes_nothing(
    cluster: tuple[client.ApiClient, Path], operator: Operator
) -> None:
    api, _ = cluster
    custom(api).create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, pipeline("good"))
    with StatusWriter(api):
        wait_for("Ready", lambda: phase(api, "good") == "Ready", log=operator)
        spec_before = services(api, "good")[0]["spec"]
        # CEL would refuse this on a real API server; the operator must refuse it too.
        custom(api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "good",
            {"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        )
        status = wait_for(
            "Failed",
            lambda: phase(api, "good") == "Failed" and get_pipeline(api, "good")["status"],
            log=operator,
        )
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "InvalidSpec"
        assert "spec.autoscaling.minReplicas" in ready["message"]
        assert services(api, "good")[0]["spec"] == spec_before, "a bad spec must not touch what serves"
        wait_for(
            "event",
            lambda: any(e.reason == "Failed" and "minReplicas" in e.message for e in events_for(api, "good")),
            log=operator,
        )


def test_engine_build_job_gates_the_deploy(
    cluster: tuple[client.ApiClient, Path], operator: Operator
) -> None:
    api, _ = cluster
    batch = client.BatchV1Api(api)
    body = pipeline("built", engine={"backend": "onnxruntime", "precision": "fp32"})
    custom(api).create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    jobs = wait_for("build Job", lambda: batch.list_namespaced_job(NS).items, log=operator)
    assert phase(api, "built") == "Building"
    assert services(api, "built") == []
    job = jobs[0]
    assert job.spec.template.spec.containers[0].command == ["python", "-m", "planet_build"]
    # The Job fails: Degraded with the Job's reason; nothing deployed.
    batch.patch_namespaced_job_status(
        job.metadata.name,
        NS,
        {
            "status": {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "out of GPU memory",
                    }
                ]
            }
        },
    )
    status = wait_for(
        "Degraded",
        lambda: phase(api, "built") == "Degraded" and get_pipeline(api, "built")["status"],
        log=operator,
    )
    engines = next(c for c in status["conditions"] if c["type"] == "EnginesReady")
    assert engines["status"] == "False"
    assert "BackoffLimitExceeded" in engines["message"]
    assert services(api, "built") == []


def test_killed_mid_reconcile_restarts_without_duplicates(
    cluster: tuple[client.ApiClient, Path], tmp_path: Path
) -> None:
    api, kubeconfig = cluster
    running = Operator(kubeconfig, tmp_path / "op.log")
    running.start()
    names = [f"restart-{i}" for i in range(4)]
    for name in names:
        custom(api).create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, pipeline(name))
    wait_for("first children", lambda: services(api, names[0]), log=running)
    running.kill()  # mid-way through the batch
    running.start()
    try:
        with StatusWriter(api):
            for name in names:
                wait_for(f"{name} Ready", lambda n=name: phase(api, n) == "Ready", log=running)  # type: ignore[misc]
        for name in names:
            assert len(services(api, name)) == 1
            revisions = client.AppsV1Api(api).list_namespaced_controller_revision(
                NS, label_selector=f"planetgen.io/pipeline={name}"
            )
            assert len(revisions.items) == 1
            assert len(get_pipeline(api, name)["status"]["history"]) == 1
    finally:
        running.stop()


def test_conflicting_child_is_taken_over_without_losing_updates(
    cluster: tuple[client.ApiClient, Path], operator: Operator
) -> None:
    api, _ = cluster
    # Someone (an old operator, a user) created the child first, with a stale spec and a label of their own.
    stale = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "taken-generate",
            "namespace": NS,
            "labels": {"team": "planets", "planetgen.io/pipeline": "taken"},
        },
        "spec": {
            "predictor": {"minReplicas": 9, "containers": [{"name": "kserve-container", "image": "old"}]}
        },
    }
    custom(api).create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NS, "inferenceservices", stale
    )
    custom(api).create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, pipeline("taken"))

    def taken_over() -> Any:
        isvc = custom(api).get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NS, "inferenceservices", "taken-generate"
        )
        return isvc["spec"]["predictor"]["minReplicas"] == 1 and isvc

    isvc = wait_for("operator's spec", taken_over, log=operator)
    assert isvc["metadata"]["labels"]["team"] == "planets", "the other writer's label survives"
    assert isvc["spec"]["predictor"]["containers"][0]["image"] != "old"

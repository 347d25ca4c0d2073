"""``reconcile`` called directly, pass by pass, against an in-memory client (tests/operator/fake_kube.py).

Each pass reads the pipeline and its children from the fake the way the handler's Kopf indexes
would hand them over (:func:`observe_children`), runs one reconcile, and the test looks at what was
written. Children's status (a Job completing, KServe marking a predictor Ready) is set by the test,
as their controllers would.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Any

import pytest
from tests.operator.fake_kube import PODS, Call, FakeClient

from planet_contracts.api import resource, validation
from planet_operator.builders import names, revision
from planet_operator.kube import resources
from planet_operator.kube.client import Conflict, Invalid, NotFound
from planet_operator.reconcile import core, diagnose, notices, observe
from planet_operator.reconcile.context import Context
from planet_operator.rollout import durations, machine

NS = "t"
NAME = "p"
NOW = datetime.datetime(2026, 12, 1, 22, 0, tzinfo=datetime.UTC)
BASE = "hf://stabilityai/stable-diffusion-xl-base-1.0"
UPSCALER = "s3://models/upscalers/x2.pth"
#: TensorRT (the default backend: a build Job first) with a one-stage upscale chain.
UPSCALED: dict[str, Any] = {
    "model": {"base": {"uri": BASE}},
    "upscale": {"model": {"uri": UPSCALER}, "stages": [{"type": "upscale", "factor": 2}]},
}


def pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{resource.GROUP}/{resource.VERSION}",
        "kind": resource.KIND,
        "metadata": {"name": NAME, "namespace": NS},
        "spec": copy.deepcopy(spec),
    }


async def observe_children(client: FakeClient, body: dict[str, Any]) -> observe.Observed:
    """The pipeline's children as handlers/pipelines.py builds them from the Kopf indexes."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    # The indexes select by label (handlers.children.FILTERS) and key by (namespace, pipeline label).
    owned = {resource.LABEL_MANAGED_BY: resource.MANAGER, resource.LABEL_PIPELINE: name}

    async def items(res: Any, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return list((await client.list_objects(res, namespace, labels=labels))["items"])

    def by_name(bodies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {b["metadata"]["name"]: b for b in bodies}

    jobs = {
        j["metadata"]["labels"][resource.LABEL_ENGINE_KEY]: j
        for j in await items(resources.JOBS)
        if resource.LABEL_ENGINE_KEY in (j["metadata"].get("labels") or {})
    }
    pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pod in await items(PODS, {resource.LABEL_MANAGED_BY: resource.MANAGER}):
        owner = diagnose.pod_owner(pod["metadata"].get("labels") or {})
        if owner is not None:
            pods.setdefault(owner, []).append(diagnose.slim_pod(pod))
    return observe.Observed(
        services=by_name(await items(resources.INFERENCE_SERVICES, owned)),
        graphs=by_name(await items(resources.INFERENCE_GRAPHS, owned)),
        revisions={
            r["metadata"]["labels"][resource.LABEL_REVISION]: r
            for r in await items(resources.CONTROLLER_REVISIONS, owned)
        },
        configs=by_name(await items(resources.CONFIG_MAPS, owned)),
        jobs=jobs,
        pods=pods,
    )


class Clock:
    """The time a test says it is (the reconcile's and the fake server's)."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


@dataclasses.dataclass
class Harness:
    """One pipeline in a fake cluster, and what its reconciles emitted."""

    client: FakeClient
    ctx: Context
    clock: Clock
    events: list[tuple[str, str, str]]
    announced: notices.Notices

    @property
    def body(self) -> dict[str, Any]:
        stored = self.client.stored(resources.PIPELINES, NS, NAME)
        assert stored is not None
        return stored

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    def condition(self, type_: str) -> tuple[str, str, str]:
        found = next(c for c in self.status["conditions"] if c["type"] == type_)
        return found["status"], found["reason"], found.get("message", "")

    async def reconcile(self) -> core.Result:
        """One pass, as Kopf would run it: the pipeline as stored, its children as indexed.

        ``client.calls`` and ``events`` then hold this pass's calls and events only.
        """
        body = self.body
        observed = await observe_children(self.client, body)
        self.client.calls.clear()
        self.events.clear()
        return await core.reconcile(self.ctx, body, observed, announced=self.announced)

    def child(self, res: Any, name: str) -> dict[str, Any]:
        found = self.client.stored(res, NS, name)
        assert found is not None, f"{res.plural}/{name} was not created"
        return found


def harness(spec: dict[str, Any]) -> Harness:
    clock = Clock(NOW)
    client = FakeClient(clock=clock)
    client.seed(resources.PIPELINES, pipeline(spec))
    events: list[tuple[str, str, str]] = []
    ctx = Context(
        client=client,  # type: ignore[arg-type]
        emit=lambda _body, type_, reason, message: events.append((type_, reason, message)),
        clock=clock,
    )
    return Harness(client=client, ctx=ctx, clock=clock, events=events, announced=notices.Notices())


def rev_and_key(spec: dict[str, Any]) -> tuple[str, str]:
    parsed = validation.parse_spec(spec, name=NAME)
    return revision.revision_of(parsed), revision.engine_key_of(parsed)


def complete(h: Harness, job: str) -> None:
    """The Job controller's status of a build that succeeded."""
    h.client.set_status(
        resources.JOBS,
        NS,
        job,
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    )


def ready(h: Harness, res: Any, name: str, url: str | None = None) -> None:
    """KServe's status of a child that serves."""
    status: dict[str, Any] = {
        "conditions": [
            {"type": "PredictorReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }
    if url:
        status["url"] = url
    h.client.set_status(res, NS, name, status)


def pod(h: Harness, service: str, rev: str, index: int = 0) -> str:
    """A ready predictor pod of ``service`` serving ``rev``, labelled as KServe labels them."""
    name = f"{service}-{rev}-{index}"
    labels = {
        resource.LABEL_MANAGED_BY: resource.MANAGER,
        resource.LABEL_PIPELINE: NAME,
        resource.LABEL_REVISION: rev,
        diagnose.SERVICE_LABEL: service,
    }
    h.client.seed(
        PODS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    return name


async def edit(h: Harness, patch: dict[str, Any]) -> None:
    """A user's ``kubectl patch --type merge`` of the pipeline (the next pass clears the call log)."""
    await h.client.patch(resources.PIPELINES, NS, NAME, patch)


def creates(h: Harness) -> list[tuple[str, str]]:
    return [(c.kind, c.name) for c in h.client.writes() if c.verb == "create"]


STATUS_WRITE = Call(verb="patch", kind=resource.KIND, name=NAME, subresource="status")


async def deployed(h: Harness, spec: dict[str, Any]) -> tuple[str, str]:
    """Drive a new pipeline to Ready: build, deploy, KServe marks everything Ready."""
    rev, key = rev_and_key(spec)
    await h.reconcile()
    complete(h, names.engine_job(key))
    await h.reconcile()
    for name in (names.generate_service(NAME), names.upscale_service(NAME)):
        ready(h, resources.INFERENCE_SERVICES, name, url=f"http://{name}.{NS}.example.com")
    ready(h, resources.INFERENCE_GRAPHS, names.graph(NAME), url=f"http://{NAME}-{NS}.example.com")
    result = await h.reconcile()
    assert result.phase == "Ready", h.status
    return rev, key


# --- the fake itself ------------------------------------------------------------------------------


async def test_the_fake_answers_the_verbs_as_the_client_does() -> None:
    client = FakeClient(clock=lambda: NOW)
    cm = resources.CONFIG_MAPS
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}}
    made = await client.create(cm, NS, body)
    assert made["metadata"]["namespace"] == NS and made["metadata"]["generation"] == 1
    assert made["metadata"]["uid"] and made["metadata"]["resourceVersion"]
    with pytest.raises(Conflict) as taken:
        await client.create(cm, NS, body)
    assert taken.value.reason == "AlreadyExists"
    with pytest.raises(NotFound):
        await client.get(cm, NS, "missing")
    await client.delete(cm, NS, "missing")  # not an error, as in the client

    # Merge patch: null removes, maps merge; a stale resourceVersion is a 409.
    patched = await client.patch(
        cm, NS, "c", {"metadata": {"labels": {"a": None, "b": "2"}}, "data": {"k": "v"}}
    )
    assert patched["metadata"]["labels"] == {"b": "2"} and patched["data"] == {"k": "v"}
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(Conflict):
        await client.patch(
            cm, NS, "c", {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}}
        )
    # The status subresource and the object do not write each other's parts.
    await client.patch(cm, NS, "c", {"status": {"x": 1}, "data": {"k": "w"}}, subresource="status")
    await client.patch(cm, NS, "c", {"status": {"x": 2}})
    stored = client.stored(cm, NS, "c")
    assert stored is not None and stored["status"] == {"x": 1} and stored["data"] == {"k": "v"}

    listed = await client.list_objects(cm, NS, labels={"b": "2"})
    assert [i["metadata"]["name"] for i in listed["items"]] == ["c"]
    assert (await client.list_objects(cm, NS, labels={"a": "1"}))["items"] == []
    assert (await client.list_objects(cm, "elsewhere"))["items"] == []

    client.refuse_next_create("ConfigMap", "no")
    with pytest.raises(Invalid) as refused:
        await client.create(cm, NS, {**body, "metadata": {"name": "d"}})
    assert (refused.value.status, refused.value.message, refused.value.verb) == (422, "no", "create")
    await client.create(cm, NS, {**body, "metadata": {"name": "d"}})  # only the next one
    assert [(c.verb, c.name) for c in client.writes()] == [
        ("create", "c"),
        ("create", "c"),
        ("delete", "missing"),
        ("patch", "c"),
        ("patch", "c"),
        ("patch", "c"),
        ("patch", "c"),
        ("create", "d"),
        ("create", "d"),
    ]


# --- reconcile ------------------------------------------------------------------------------------


async def test_an_invalid_spec_writes_only_the_status_naming_the_field() -> None:
    h = harness({"model": {"base": {"uri": BASE}}, "generation": {"width": 1530}})
    result = await h.reconcile()

    assert h.client.writes() == [STATUS_WRITE]
    assert [c.kind for c in h.client.calls] == [resource.KIND]  # not even a read of a child
    status = h.status
    assert status["phase"] == result.phase == "Failed"
    assert status["observedGeneration"] == 1
    state, reason, message = h.condition("Ready")
    assert (state, reason) == ("False", "InvalidSpec")
    assert "spec.generation.width" in message and "multiples of 8" in message
    assert h.events == [("Warning", "Failed", message)]
    assert result.requeue_after is None and not result.retry
    for res in (resources.CONTROLLER_REVISIONS, resources.JOBS, resources.INFERENCE_SERVICES):
        assert h.client.names(res, NS) == []


async def test_a_new_pipeline_records_its_revision_and_builds_its_engines_first() -> None:
    h = harness(UPSCALED)
    rev, key = rev_and_key(UPSCALED)
    job = names.engine_job(key)
    result = await h.reconcile()

    assert h.client.writes() == [
        Call(verb="create", kind="ControllerRevision", name=f"{NAME}-{rev}"),
        Call(verb="create", kind="Job", name=job),
        STATUS_WRITE,
    ]
    stored = h.child(resources.CONTROLLER_REVISIONS, f"{NAME}-{rev}")
    assert stored["data"] == {"spec": UPSCALED, "version": None}
    assert stored["revision"] == 1
    assert stored["metadata"]["labels"][resource.LABEL_REVISION] == rev
    uid = h.body["metadata"]["uid"]
    assert [o["uid"] for o in stored["metadata"]["ownerReferences"]] == [uid]

    built = h.child(resources.JOBS, job)
    assert job == f"planet-engine-{key[:16]}"
    assert built["metadata"]["labels"][resource.LABEL_ENGINE_KEY] == key[:63]
    # Shared by every pipeline with the key: an owner, never the controller.
    (owner,) = built["metadata"]["ownerReferences"]
    assert owner["uid"] == uid and "controller" not in owner
    args = built["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--expect-key") + 1] == key
    assert args[args.index("--upscaler") + 1] == UPSCALER

    status = h.status
    assert status["phase"] == result.phase == "Building"
    assert status["currentRevision"] == rev
    assert "stableRevision" not in status
    engines = h.condition("EnginesReady")
    assert engines[:2] == ("False", "Building")
    assert engines[2].startswith(f"building engines {key[:12]} ({job})")
    assert h.condition("Ready") == ("False", "EnginesBuilding", engines[2])
    assert h.events == [("Normal", "Building", engines[2])]
    # Nothing serves yet: not a config, a predictor or a graph.
    for res in (resources.CONFIG_MAPS, resources.INFERENCE_SERVICES, resources.INFERENCE_GRAPHS):
        assert h.client.names(res, NS) == []
    # The pipeline waits on the build: the Job's events wake it (handlers.children.WAITING_ON).
    assert result.waiting_on == key[:63]
    assert result.requeue_after is None and not result.retry

    # While the build runs, another pass writes nothing.
    again = await h.reconcile()
    assert h.client.writes() == []
    assert again.phase == "Building" and again.waiting_on == key[:63]


async def test_a_finished_build_deploys_the_predictors_and_the_graph() -> None:
    h = harness(UPSCALED)
    rev, key = rev_and_key(UPSCALED)
    await h.reconcile()
    complete(h, names.engine_job(key))
    result = await h.reconcile()

    generate, upscale, graph = names.generate_service(NAME), names.upscale_service(NAME), names.graph(NAME)
    assert (generate, upscale, graph) == ("p-generate", "p-upscale", "p")
    made = creates(h)
    assert [kind for kind, _ in made] == [
        "ConfigMap",
        "InferenceService",
        "InferenceService",
        "InferenceGraph",
    ]
    config = made[0][1]
    assert config.startswith(f"{NAME}-{rev}-")
    assert made[1:] == [
        ("InferenceService", generate),
        ("InferenceService", upscale),
        ("InferenceGraph", graph),
    ]
    # The index is the truth: no GET before a create, and the finished Job is left alone.
    assert [c for c in h.client.calls if c.verb == "get" or c.kind == "Job"] == []
    assert h.client.writes()[-1] == STATUS_WRITE

    for name, component in ((generate, "generate"), (upscale, "upscale")):
        isvc = h.child(resources.INFERENCE_SERVICES, name)
        labels = isvc["metadata"]["labels"]
        assert labels[resource.LABEL_REVISION] == rev and labels[resource.LABEL_COMPONENT] == component
        assert isvc["metadata"]["ownerReferences"][0]["uid"] == h.body["metadata"]["uid"]
        volumes = isvc["spec"]["predictor"].get("volumes") or []
        assert any((v.get("configMap") or {}).get("name") == config for v in volumes), volumes
    nodes = h.child(resources.INFERENCE_GRAPHS, graph)["spec"]["nodes"]
    assert nodes == {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"name": "generate", "serviceName": generate, "dependency": "Hard"},
                {"name": "upscale", "serviceName": upscale, "dependency": "Hard", "data": "$response"},
            ],
        }
    }

    status = h.status
    assert status["phase"] == result.phase == "Deploying"
    assert status["stableRevision"] == status["currentRevision"] == rev
    assert [(e["revision"], e["result"]) for e in status["history"]] == [(rev, "Progressing")]
    assert h.condition("EnginesReady")[:2] == ("True", "Built")
    state, reason, message = h.condition("Ready")
    assert (state, reason) == ("False", "PredictorNotReady")
    assert f"{generate}: " in message and f"{upscale}: " in message
    assert result.waiting_on is None and not result.retry


async def test_ready_children_make_the_pipeline_ready_and_the_next_pass_writes_nothing() -> None:
    h = harness(UPSCALED)
    rev, key = rev_and_key(UPSCALED)
    await h.reconcile()
    complete(h, names.engine_job(key))
    await h.reconcile()
    for name in (names.generate_service(NAME), names.upscale_service(NAME)):
        ready(h, resources.INFERENCE_SERVICES, name, url=f"http://{name}.{NS}.example.com")
    ready(h, resources.INFERENCE_GRAPHS, NAME, url=f"http://{NAME}-{NS}.example.com")

    result = await h.reconcile()
    assert h.client.writes() == [STATUS_WRITE]
    status = h.status
    assert status["phase"] == result.phase == "Ready"
    assert h.condition("Ready") == ("True", "Serving", f"revision {rev} serving")
    assert h.condition("Degraded")[:2] == ("False", "AsExpected")
    # Standard mode: the graph's Service, not KServe's status.url (no HTTPRoute for graphs).
    assert status["url"] == f"http://{NAME}.{NS}.svc.cluster.local"
    assert [(e["revision"], e["result"]) for e in status["history"]] == [(rev, "Promoted")]
    assert h.events == [("Normal", "Ready", f"revision {rev} serving")]
    assert result.causes == () and not result.retry

    before = h.client.objects.copy()
    again = await h.reconcile()
    assert h.client.calls == []  # not a read either: everything came from the index
    assert h.events == []
    assert h.client.objects == before
    assert again.phase == "Ready" and again.requeue_after is None


async def test_a_refused_create_names_the_child_and_quotes_the_server() -> None:
    spec = {"model": {"base": {"uri": BASE}}, "engine": {"backend": "torch"}}
    h = harness(spec)
    refusal = (
        'InferenceService.serving.kserve.io "p-generate" is invalid: spec.predictor.containers[0].image: '
        "Required value"
    )
    h.client.refuse_next_create("InferenceService", refusal)
    result = await h.reconcile()

    generate = names.generate_service(NAME)
    # Torch needs no build; the refusal stops neither the config, the graph nor the status.
    assert [kind for kind, _ in creates(h)] == [
        "ControllerRevision",
        "ConfigMap",
        "InferenceService",
        "InferenceGraph",
    ]
    assert h.client.names(resources.INFERENCE_SERVICES, NS) == []
    assert h.client.names(resources.INFERENCE_GRAPHS, NS) == [NAME]
    expected = f"InferenceService {generate}: create refused (422 Invalid): {refusal}"
    assert result.retry
    assert [(c.kind, c.name, c.reason) for c in result.causes] == [
        ("InferenceService", generate, "ChildRejected")
    ]
    status = h.status
    assert status["phase"] == result.phase == "Degraded"
    assert h.condition("Ready") == ("False", "ChildRejected", expected)
    assert h.condition("Degraded") == ("True", "ChildRejected", expected)
    assert h.condition("EnginesReady")[:2] == ("True", "NotNeeded")
    assert ("Warning", "ChildRejected", expected) in h.events

    # Admitted on the next pass: created, no retry, and the cause's end announced.
    again = await h.reconcile()
    assert creates(h) == [("InferenceService", generate)]
    assert not again.retry and again.causes == ()
    assert h.status["phase"] == "Deploying"
    assert [(t, r) for t, r, _ in h.events] == [("Normal", "Deploying"), ("Normal", "Resolved")]


async def test_a_new_model_revision_on_a_ready_pipeline_starts_a_canary_beside_the_stable_one() -> None:
    h = harness(UPSCALED)
    stable, stable_key = await deployed(h, UPSCALED)
    generate, upscale = names.generate_service(NAME), names.upscale_service(NAME)
    primary_before = {n: h.child(resources.INFERENCE_SERVICES, n) for n in (generate, upscale)}

    changed = copy.deepcopy(UPSCALED)
    changed["model"]["base"]["revision"] = "0123456789abcdef"
    canary, canary_key = rev_and_key(changed)
    assert canary != stable and canary_key != stable_key
    await edit(h, {"spec": {"model": {"base": {"revision": "0123456789abcdef"}}}})
    assert h.body["spec"] == changed

    # 1. The new revision is recorded and its engines built; the stable revision keeps serving.
    result = await h.reconcile()
    assert creates(h) == [
        ("ControllerRevision", f"{NAME}-{canary}"),
        ("Job", names.engine_job(canary_key)),
    ]
    assert h.child(resources.CONTROLLER_REVISIONS, f"{NAME}-{canary}")["revision"] == 2
    assert result.phase == "Building" and result.waiting_on == canary_key[:63]
    status = h.status
    assert status["stableRevision"] == stable and status["currentRevision"] == canary
    assert status["observedGeneration"] == 2
    assert "canaryRevision" not in status
    assert h.client.names(resources.INFERENCE_SERVICES, NS) == sorted([generate, upscale])

    # 2. Built: the canary's predictors start beside the primary's, with no traffic yet.
    complete(h, names.engine_job(canary_key))
    result = await h.reconcile()
    canary_generate, canary_upscale = (
        names.generate_service(NAME, canary),
        names.upscale_service(NAME, canary),
    )
    assert canary_generate == f"{NAME}-generate-{canary}"
    made = creates(h)
    assert [kind for kind, _ in made] == ["ConfigMap", "InferenceService", "InferenceService"]
    assert made[0][1].startswith(f"{NAME}-{canary}-")
    assert made[1:] == [("InferenceService", canary_generate), ("InferenceService", canary_upscale)]
    assert (
        h.child(resources.INFERENCE_SERVICES, canary_generate)["metadata"]["labels"][resource.LABEL_REVISION]
        == canary
    )
    # The primary is not touched: same objects, not a single write naming them.
    assert not [c for c in h.client.writes() if c.name in (generate, upscale)]
    for name, body in primary_before.items():
        assert h.child(resources.INFERENCE_SERVICES, name) == body
    graph = h.child(resources.INFERENCE_GRAPHS, NAME)
    assert graph["spec"]["nodes"]["root"]["steps"][0]["serviceName"] == generate
    status = h.status
    assert status["phase"] == result.phase == "Progressing"
    assert status["stableRevision"] == stable and status["canaryRevision"] == canary
    assert status["trafficPercent"] == 0
    assert h.condition("RolloutProgressing")[:2] == ("True", "CanaryStarting")
    assert ("Normal", "RolloutStarted", f"canary {canary} against stable {stable}") in h.events
    assert result.requeue_after == core.HANDOFF_POLL_SECONDS
    # Until they are ready, another pass changes nothing.
    await h.reconcile()
    assert h.client.writes() == []

    # 3. The canary's predictors are ready: the first step's weight goes to them through the graph.
    for name in (canary_generate, canary_upscale):
        ready(h, resources.INFERENCE_SERVICES, name)
    result = await h.reconcile()
    nodes = h.child(resources.INFERENCE_GRAPHS, NAME)["spec"]["nodes"]
    assert nodes["root"]["routerType"] == "Splitter"
    assert [(s["nodeName"], s["weight"]) for s in nodes["root"]["steps"]] == [("primary", 90), ("canary", 10)]
    assert [s["serviceName"] for s in nodes["canary"]["steps"]] == [canary_generate, canary_upscale]
    assert [s["serviceName"] for s in nodes["primary"]["steps"]] == [generate, upscale]
    status = h.status
    assert status["trafficPercent"] == 10 and status["rollout"]["step"] == 0
    assert status["rollout"]["stepStarted"] == NOW.isoformat()
    assert h.condition("RolloutProgressing")[:2] == ("True", "Progressing")
    # The next look is when the first analysis is due.
    assert result.requeue_after == durations.parse_duration("1m")
    # Before the analysis is due, another pass changes nothing (no Prometheus is asked either).
    again = await h.reconcile()
    assert h.client.writes() == []
    assert again.requeue_after == durations.parse_duration("1m")


async def test_a_promoted_canary_keeps_the_traffic_until_the_primary_serves_its_revision() -> None:
    h = harness(UPSCALED)
    stable, _ = await deployed(h, UPSCALED)
    generate, upscale = names.generate_service(NAME), names.upscale_service(NAME)
    old_pods = [pod(h, generate, stable), pod(h, upscale, stable)]
    await edit(h, {"spec": {"model": {"base": {"revision": "0123456789abcdef"}}}})
    canary, canary_key = rev_and_key(h.body["spec"])
    await h.reconcile()
    complete(h, names.engine_job(canary_key))
    await h.reconcile()
    canaries = [names.generate_service(NAME, canary), names.upscale_service(NAME, canary)]
    for name in canaries:
        ready(h, resources.INFERENCE_SERVICES, name)
        pod(h, name, canary)
    await h.reconcile()
    assert h.status["trafficPercent"] == 10

    def routed() -> list[str]:
        root = h.child(resources.INFERENCE_GRAPHS, NAME)["spec"]["nodes"]["root"]
        assert root["routerType"] == "Sequence"
        return [step["serviceName"] for step in root["steps"]]

    # 1. Promoted by hand: the warm canary takes all traffic, the primary moves to its revision.
    await edit(h, {"metadata": {"annotations": {machine.PROMOTE: "true"}}})
    result = await h.reconcile()
    assert machine.PROMOTE not in (h.body["metadata"].get("annotations") or {})  # acted on once
    assert routed() == canaries
    for name in (generate, upscale):
        assert (
            h.child(resources.INFERENCE_SERVICES, name)["metadata"]["labels"][resource.LABEL_REVISION]
            == canary
        )
    status = h.status
    assert status["phase"] == result.phase == "Ready"
    assert status["stableRevision"] == canary
    assert "canaryRevision" not in status and "trafficPercent" not in status and "rollout" not in status
    assert h.condition("RolloutProgressing") == ("False", "Promoted", "promoted by user")
    assert [(e["revision"], e["result"]) for e in status["history"]] == [
        (stable, "Promoted"),
        (canary, "Promoted"),
    ]
    assert ("Normal", "Promoted", f"{canary} promoted: promoted by user") in h.events

    # 2. The primary's pods still serve the old revision (KServe's Ready holds through the roll):
    # the canary keeps the traffic, and the pipeline looks again soon.
    result = await h.reconcile()
    assert h.client.writes() == []
    assert routed() == canaries
    assert result.requeue_after == core.HANDOFF_POLL_SECONDS

    # 3. Rolled: the graph goes back to the primary; the canary goes after a grace, not at once.
    for name in old_pods:
        await h.client.delete(PODS, NS, name)
    pod(h, generate, canary, 1)
    pod(h, upscale, canary, 1)
    result = await h.reconcile()
    assert routed() == [generate, upscale]
    deadline = (NOW + datetime.timedelta(seconds=core.RETIRE_GRACE_SECONDS)).isoformat()
    for name in canaries:
        annotations = h.child(resources.INFERENCE_SERVICES, name)["metadata"]["annotations"]
        assert annotations[resource.RETIRE_AFTER] == deadline
    assert not [c for c in h.client.writes() if c.verb == "delete"]
    assert result.requeue_after == core.RETIRE_GRACE_SECONDS

    # 4. Past the grace the canary's InferenceServices are deleted; then nothing more happens.
    h.clock.now = NOW + datetime.timedelta(seconds=core.RETIRE_GRACE_SECONDS + 1)
    await h.reconcile()
    assert [(c.verb, c.name) for c in h.client.writes()] == [("delete", name) for name in canaries]
    assert h.client.names(resources.INFERENCE_SERVICES, NS) == sorted([generate, upscale])
    assert h.status["phase"] == "Ready"
    result = await h.reconcile()
    assert h.client.writes() == [] and result.requeue_after is None


FAILED = "Container build for failed pod exited with code 2 matching FailJob rule"


async def test_a_failed_build_names_the_job_and_its_reason_and_deploys_nothing() -> None:
    h = harness(UPSCALED)
    _, key = rev_and_key(UPSCALED)
    job = names.engine_job(key)
    await h.reconcile()
    h.client.set_status(
        resources.JOBS,
        NS,
        job,
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "message": FAILED,
                }
            ],
        },
    )
    result = await h.reconcile()

    assert h.client.writes() == [STATUS_WRITE]  # the failed Job is not re-created or patched
    expected = f"Job {job}: PodFailurePolicy: {FAILED}"
    status = h.status
    assert status["phase"] == result.phase == "Degraded"
    assert h.condition("EnginesReady") == ("False", "BuildFailed", expected)
    assert h.condition("Ready") == ("False", "BuildFailed", expected)
    assert h.condition("Degraded") == ("True", "BuildFailed", expected)
    assert h.events == [("Warning", "BuildFailed", expected)]
    assert [(c.kind, c.name) for c in result.causes] == [("Job", job)]
    assert not result.retry  # not a refusal: the spec must change (or the Job be deleted)
    assert result.waiting_on is None
    for res in (resources.CONFIG_MAPS, resources.INFERENCE_SERVICES, resources.INFERENCE_GRAPHS):
        assert h.client.names(res, NS) == []

"""Refusals and child failures become causes, each announced once (reconcile.causes, diagnose, notices)."""

from __future__ import annotations

import copy
import datetime
import logging
from typing import Any

import pytest

from planet_contracts.api import resource
from planet_operator.builders import engine_job, names
from planet_operator.kube import apply
from planet_operator.kube.client import APIError, Conflict, Invalid, NotFound
from planet_operator.reconcile import causes, core, diagnose, notices, observe, report
from planet_operator.reconcile.context import Context

NOW = datetime.datetime(2026, 12, 1, 22, 0, 0, tzinfo=datetime.UTC)
QUOTA = (
    'inferenceservices.serving.kserve.io "q-generate" is forbidden: exceeded quota: no-isvc, requested: '
    "count/inferenceservices.serving.kserve.io=1, used: count/inferenceservices.serving.kserve.io=0, "
    "limited: count/inferenceservices.serving.kserve.io=0"
)
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB"


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "refused"),
    [
        (403, QUOTA, True),  # quota, RBAC, a webhook's "no", namespace terminating
        (422, 'InferenceService "x" is invalid: spec.predictor: Required value', True),
        (409, "object is being deleted", True),
        (400, "admission webhook denied the request: bad", True),
        (404, "the server could not find the requested resource", True),  # the CRD is missing
        (
            500,
            'Internal error occurred: failed calling webhook "policy.example.com": connection refused',
            True,
        ),
        (401, "Unauthorized", False),  # credentials: the client re-read them; the loop retries
        (429, "Too many requests", False),  # API priority and fairness: later
        (503, "the server is currently unable to handle the request", False),
    ],
)
def test_what_counts_as_a_refusal(status: int, message: str, refused: bool) -> None:
    assert causes.is_refusal(APIError(status, "X", message)) is refused


def test_refused_write_names_the_child_and_quotes_the_server() -> None:
    cause = causes.refused(
        kind="InferenceService", name="q-generate", error=APIError(403, "Forbidden", QUOTA, verb="create")
    )
    assert cause.reason == "ChildRejected"
    assert cause.text == f"InferenceService q-generate: create refused (403 Forbidden): {QUOTA}"
    # Another retry, same words: the same cause. Another message: another cause.
    again = causes.refused(
        kind="InferenceService", name="q-generate", error=APIError(403, "Forbidden", QUOTA, verb="create")
    )
    other = causes.refused(
        kind="InferenceService", name="q-generate", error=APIError(403, "Forbidden", "denied", verb="create")
    )
    assert again.identity == cause.identity != other.identity


def test_long_server_messages_keep_their_start_and_logs_their_end() -> None:
    cause = causes.refused(
        kind="ConfigMap", name="c", error=Invalid(422, "Invalid", "x" * 5000, verb="create")
    )
    assert len(cause.message) <= causes.MAX_MESSAGE and cause.message.startswith(
        "create refused (422 Invalid)"
    )
    log = "\n".join(f"line {i}" for i in range(100)) + "\nRuntimeError: boom\n\n"
    assert causes.tail(log) == "line 98 | line 99 | RuntimeError: boom"


def test_summary_puts_refusals_first_and_camel_cases_child_reasons() -> None:
    failed = causes.Cause(kind="Job", name="j", reason="BuildFailed", message="exit 2")
    rejected = causes.Cause(kind="InferenceGraph", name="g", reason="ChildRejected", message="no")
    reason, message = causes.summary([failed, rejected])
    assert reason == "ChildRejected"
    assert message == "InferenceGraph g: no; Job j: exit 2"
    assert causes.camel("Predictor Deployment NotReady", "X") == "PredictorDeploymentNotReady"
    assert causes.camel("", "PredictorFailed") == "PredictorFailed"


def test_reconcile_failures_say_what_failed() -> None:
    cause = causes.reconcile_failed(
        kind="PlanetPipeline", name="p", error=APIError(403, "Forbidden", "cannot patch status", verb="patch")
    )
    assert cause.text == "PlanetPipeline p: patch failed (403 Forbidden): cannot patch status"
    assert causes.reconcile_failed(kind="PlanetPipeline", name="p", error=OSError("refused")).message == (
        "OSError: refused"
    )


# --- what children say (shapes as KServe 0.20 and Kubernetes 1.34 wrote them) ---------------------


def _pod(name: str = "svc-predictor-6489f57567-h96vd", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": "2026-12-01T21:59:00Z"}, "status": status}


def _crash_loop(message: str = OOM) -> dict[str, Any]:
    return _pod(
        phase="Running",
        containerStatuses=[
            {
                "name": "kserve-container",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
            }
        ],
    )


def _service(**status: Any) -> dict[str, Any]:
    conditions = status.pop(
        "conditions",
        [
            {
                "type": "PredictorReady",
                "status": "False",
                "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability.",
            },
            {
                "type": "Ready",
                "status": "False",
                "reason": "Predictor Deployment NotReady",
                "message": "Predictor HTTPRoute not created",
            },
        ],
    )
    return {
        "metadata": {"name": "svc", "generation": 1},
        "status": {"conditions": conditions, "observedGeneration": 1, **status},
    }


BLOCKED = {
    "transitionStatus": "BlockedByFailedLoad",
    "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": OOM, "exitCode": 1},
}


def test_kserve_model_load_failure_is_quoted_with_the_pod() -> None:
    cause = diagnose.service_failed(_service(modelStatus=BLOCKED), [_crash_loop()], now=NOW)
    assert cause is not None
    assert cause.reason == "ModelLoadFailed"
    assert cause.text.startswith(
        f"InferenceService svc: ModelLoadFailed: {OOM} (exit code 1); pod svc-predictor"
    )
    assert "CrashLoopBackOff (3 restarts), last exit 1 (Error)" in cause.message


def test_a_crash_loop_kserve_has_not_seen_yet_is_the_same_cause() -> None:
    seen_first = diagnose.service_failed(_service(), [_crash_loop()], now=NOW)
    reported = diagnose.service_failed(_service(modelStatus=BLOCKED), [_crash_loop()], now=NOW)
    assert seen_first is not None and reported is not None
    assert seen_first.reason == "CrashLoopBackOff" and OOM in seen_first.message
    assert seen_first.identity == reported.identity  # one event, whichever observer came first


def test_kserve_keeps_last_failure_info_after_recovery_which_is_not_a_failure() -> None:
    recovered = dict(BLOCKED, transitionStatus="InProgress", states={"targetModelState": "Pending"})
    running = _pod(
        phase="Running",
        containerStatuses=[
            {
                "name": "kserve-container",
                "ready": True,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": OOM}},
            }
        ],
    )
    assert diagnose.service_failed(_service(modelStatus=recovered), [running], now=NOW) is None


def test_kserve_reconcile_failure_is_a_failure_and_starting_is_not() -> None:
    refused = (
        'fails to reconcile predictor: Deployment.apps "svc-predictor" is invalid: '
        'spec.template.spec.containers[0].resources.requests: Invalid value: "4": must be less than or '
        "equal to cpu limit of 1"
    )
    conditions = [
        {"type": "PredictorReady", "status": "False", "reason": "ReconcileFailed", "message": refused}
    ]
    cause = diagnose.service_failed(_service(conditions=conditions), [], now=NOW)
    assert cause is not None and cause.reason == "ReconcileFailed" and refused in cause.message
    assert diagnose.service_failed(_service(), [_pod(phase="Pending")], now=NOW) is None


def test_waiting_for_a_node_is_a_failure_only_after_the_grace() -> None:
    def unscheduled(minutes: int) -> dict[str, Any]:
        since = (NOW - datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": since,
        }
        return _pod(phase="Pending", conditions=[condition])

    assert diagnose.service_failed(_service(), [unscheduled(1)], now=NOW) is None
    assert "Insufficient nvidia.com/gpu" in diagnose.waiting_for([unscheduled(1)], now=NOW)
    late = diagnose.service_failed(_service(), [unscheduled(6)], now=NOW)
    assert late is not None and late.reason == "Unschedulable" and "for over 5 min" in late.message
    assert diagnose.waiting_for([unscheduled(6)], now=NOW) == ""


def _job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "planet-engine-87a0"}, "spec": {"backoffLimit": 2}, "status": status}


def _failed_build_pod(code: int, message: str) -> dict[str, Any]:
    return _pod(
        "planet-engine-87a0-x7k2p",
        phase="Failed",
        containerStatuses=[
            {
                "name": "build",
                "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}},
            }
        ],
    )


def test_failed_build_quotes_the_job_and_its_pod() -> None:
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
        "message": (
            "Container build for pod t/planet-engine-87a0-x7k2p failed with exit code 2 matching FailJob "
            "rule at index 1"
        ),
    }
    says = "error: --backend tensorrt needs CUDA"
    cause = diagnose.job_failed(_job(conditions=[failed], failed=1), [_failed_build_pod(2, says)])
    assert cause.reason == "BuildFailed"
    assert cause.text == (
        f"Job planet-engine-87a0: PodFailurePolicy: {failed['message']}; "
        f"pod planet-engine-87a0-x7k2p: container build exited 2 (Error): {says}"
    )


def test_a_retrying_build_says_how_attempts_ended_and_a_stuck_one_fails() -> None:
    running = _job(active=1, failed=1)
    text = diagnose.job_progress(running, [_failed_build_pod(1, "CUDA error: out of memory")], now=NOW)
    assert text == (
        "1 of 3 attempts failed, last: pod planet-engine-87a0-x7k2p: container build exited 1 (Error): "
        "CUDA error: out of memory"
    )
    pulling = _pod(
        "planet-engine-87a0-abcde",
        phase="Pending",
        containerStatuses=[
            {
                "name": "build",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "ghcr.io/x/builder:9"',
                    }
                },
            }
        ],
    )
    stuck = diagnose.job_stuck(running, [pulling], now=NOW)
    assert stuck is not None and stuck.reason == "ImagePullBackOff" and "ghcr.io/x/builder:9" in stuck.message


def test_pods_are_kept_slim_and_found_by_what_they_run_for() -> None:
    body = {
        "metadata": {"name": "p", "namespace": "n", "labels": {"x": "y"}, "managedFields": [{}]},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": []},
    }
    assert diagnose.slim_pod(body) == {
        "metadata": {"name": "p", "namespace": "n"},
        "status": {"phase": "Running", "containerStatuses": []},
    }
    # The revision label stays: it tells a primary's old pods from its new ones.
    body["metadata"]["labels"] = {"planetgen.io/revision": "abc", "x": "y"}
    assert diagnose.slim_pod(body)["metadata"]["labels"] == {"planetgen.io/revision": "abc"}
    assert diagnose.pod_owner({"batch.kubernetes.io/job-name": "planet-engine-1"}) == (
        "Job",
        "planet-engine-1",
    )
    assert diagnose.pod_owner({"serving.kserve.io/inferenceservice": "a-generate"}) == (
        "InferenceService",
        "a-generate",
    )
    assert diagnose.pod_owner({"app": "other"}) is None


# --- announcing once ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cause(message: str = "no", name: str = "g") -> causes.Cause:
    return causes.Cause(kind="InferenceGraph", name=name, reason="ChildRejected", message=message)


def test_a_cause_is_announced_once_and_its_end_with_a_count() -> None:
    clock = Clock()
    tracker = notices.Notices(clock)
    assert tracker.update([_cause()]).started == (_cause(),)
    for _ in range(4):
        clock.now += 5
        assert not tracker.update([_cause(), _cause()])  # retries: nothing to say
    assert tracker.count(_cause()) == 5
    clock.now += 5
    gone = tracker.update([])
    assert gone.resolved == (notices.Resolved(cause=_cause(), count=5, seconds=25.0),)
    assert tracker.active == []
    # It comes back: a new occurrence, a new announcement.
    assert tracker.update([_cause()]).started == (_cause(),)


def test_causes_are_independent_and_a_keyed_cause_keeps_its_event_while_its_words_change() -> None:
    tracker = notices.Notices(Clock())
    a, b = _cause(name="a"), _cause(name="b")
    assert tracker.update([a]).started == (a,)
    changes = tracker.update([a, b])
    assert changes.started == (b,) and not changes.resolved
    first = causes.Cause(
        kind="InferenceService", name="s", reason="CrashLoopBackOff", message="x", key=("k",)
    )
    later = causes.Cause(kind="InferenceService", name="s", reason="ModelLoadFailed", message="y", key=("k",))
    tracker = notices.Notices(Clock())
    assert tracker.update([first]).started == (first,)
    assert not tracker.update([later])
    assert tracker.active == [later]


def test_a_cause_the_status_already_quotes_was_announced_before_a_restart() -> None:
    tracker = notices.Notices(Clock())
    changes = tracker.update([_cause()], reported=[f"{_cause().text}; Job j: failed"])
    assert changes.known == (_cause(),) and not changes.started
    assert tracker.update([]).resolved[0].cause == _cause()


def test_announce_posts_one_warning_and_one_normal_event(caplog: pytest.LogCaptureFixture) -> None:
    posted: list[tuple[str, str, str]] = []

    def emit(_: Any, type_: str, reason: str, message: str) -> None:
        posted.append((type_, reason, message))

    tracker = notices.Notices(Clock())
    body = {"metadata": {"name": "p"}}
    with caplog.at_level(logging.INFO, logger="planet.reconcile"):
        for _ in range(3):
            notices.announce(tracker.update([_cause()]), body=body, emit=emit, subject="ns/p")
        notices.announce(tracker.update([]), body=body, emit=emit, subject="ns/p")
    assert posted == [
        ("Warning", "ChildRejected", "InferenceGraph g: no"),
        ("Normal", "Resolved", "InferenceGraph g: resolved (ChildRejected, seen 3 times over 0 s); was: no"),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "planet.reconcile"]
    assert lines == [
        "ns/p: InferenceGraph g: no",
        "ns/p: resolved after seen 3 times over 0 s: InferenceGraph g: no",
    ]


# --- conditions from causes -----------------------------------------------------------------------


def _summarise(**kwargs: Any) -> Any:
    from planet_contracts.api import validation
    from planet_contracts.api.status import PlanetPipelineStatus

    spec = validation.parse_spec(
        {"model": {"base": {"uri": "hf://x/y"}}, "engine": {"backend": "torch"}}, name="p"
    )
    defaults: dict[str, Any] = {
        "spec": spec,
        "revision": "r1",
        "observed": observe.Observed(),
        "pipeline": "p",
        "deployed": False,
        "building": "",
        "routed": ["p-generate"],
        "now": "2026-12-01T22:00:00+00:00",
        "generation": 1,
    }
    return report.summarise(PlanetPipelineStatus(), **{**defaults, **kwargs})


def _conditions(status: Any) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


def test_a_refusal_is_degraded_and_says_nothing_of_the_finished_build() -> None:
    rejected = causes.refused(
        kind="InferenceService", name="p-generate", error=APIError(403, "Forbidden", "denied", verb="create")
    )
    status = _summarise(deployed=True, causes=[rejected])
    got = _conditions(status)
    assert status.phase == "Degraded"
    assert got["Ready"] == ("False", "ChildRejected", rejected.text)
    assert got["Degraded"] == ("True", "ChildRejected", rejected.text)
    assert got["EnginesReady"][0] == "True"
    assert "building" not in got["Ready"][2]


def test_build_causes_are_the_engines_condition_too() -> None:
    failed = causes.Cause(kind="Job", name="j", reason="BuildFailed", message="PodFailurePolicy: exit 2")
    got = _conditions(_summarise(causes=[failed]))
    assert got["EnginesReady"] == ("False", "BuildFailed", failed.text)
    assert got["Ready"][1] == got["Degraded"][1] == "BuildFailed"
    building = _conditions(_summarise(building="building engines abc (planet-engine-abc)"))
    assert building["Ready"] == ("False", "EnginesBuilding", "building engines abc (planet-engine-abc)")
    assert building["Degraded"] == ("False", "AsExpected", "")


def test_a_starting_predictor_says_what_its_pod_waits_for() -> None:
    service = _service()
    service["metadata"]["name"] = "p-generate"
    got = _conditions(
        _summarise(
            deployed=True,
            observed=observe.Observed(services={"p-generate": service}),
            waiting={"p-generate": "pod x: Unschedulable: 0/3 nodes are available"},
        )
    )
    assert got["Ready"] == (
        "False",
        "PredictorNotReady",
        "p-generate: Predictor HTTPRoute not created; pod x: Unschedulable: 0/3 nodes are available",
    )


# --- one reconcile against a server that refuses ----------------------------------------------------


class RefusingClient:
    """The operator's client verbs; creates of ``refused`` plurals answer 403, like a quota."""

    def __init__(self, refused: str, message: str) -> None:
        self.refused, self.message = refused, message
        self.calls: list[tuple[str, str]] = []
        self.status: dict[str, Any] = {}

    async def create(self, resource: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", resource.plural))
        if resource.plural == self.refused:
            raise APIError(403, "Forbidden", self.message, verb="create")
        return body

    async def patch(
        self, resource: Any, namespace: str, name: str, patch: Any, **kwargs: Any
    ) -> dict[str, Any]:
        self.calls.append(("patch", resource.plural + ("/status" if kwargs.get("subresource") else "")))
        if kwargs.get("subresource") == "status":
            for key, value in patch["status"].items():
                if value is None:
                    self.status.pop(key, None)
                else:
                    self.status[key] = value
        return {}

    async def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any]:
        raise NotFound(404, "NotFound", "not found", verb="get")

    async def delete(self, resource: Any, namespace: str, name: str) -> None:
        self.calls.append(("delete", resource.plural))


async def test_a_refused_child_is_reported_once_and_cleared_when_admitted() -> None:
    client = RefusingClient("inferenceservices", QUOTA)
    posted: list[tuple[str, str, str]] = []
    ctx = Context(client=client, emit=lambda _b, t, r, m: posted.append((t, r, m)), clock=lambda: NOW)  # type: ignore[arg-type]
    body: dict[str, Any] = {
        "apiVersion": f"{resource.GROUP}/{resource.VERSION}",
        "kind": resource.KIND,
        "metadata": {"name": "q", "namespace": "t", "uid": "u1", "generation": 1},
        "spec": {
            "model": {"base": {"uri": "hf://x/y"}},
            "engine": {"backend": "torch"},
            "rollout": {"steps": []},
        },
    }
    tracker = notices.Notices()
    results = []
    for _ in range(3):
        body["status"] = copy.deepcopy(client.status)  # what Kopf's watch would hand the next pass
        results.append(await core.reconcile(ctx, body, observe.Observed(), announced=tracker))
    assert [r.retry for r in results] == [True, True, True]
    ready = next(c for c in client.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ChildRejected"
    assert ready["message"] == f"InferenceService q-generate: create refused (403 Forbidden): {QUOTA}"
    assert client.status["phase"] == "Degraded"
    # The graph and the config were still applied; the status was written once; one Warning event.
    creates = [plural for verb, plural in client.calls if verb == "create"]
    assert creates.count("inferencegraphs") == 3 and creates.count("inferenceservices") == 3
    assert client.calls.count(("patch", "planetpipelines/status")) == 1
    assert [(t, r) for t, r, _ in posted] == [("Warning", "ChildRejected")]

    client.refused = ""
    body["status"] = copy.deepcopy(client.status)
    result = await core.reconcile(ctx, body, observe.Observed(), announced=tracker)
    assert not result.retry and result.causes == ()
    assert client.status["phase"] == "Deploying"
    # The cause's end, and the phase's move (Degraded itself was announced by the cause only).
    assert [(t, r) for t, r, _ in posted] == [
        ("Warning", "ChildRejected"),
        ("Normal", "Deploying"),
        ("Normal", "Resolved"),
    ]


# --- the build Job's spec ----------------------------------------------------------------------------


def test_build_job_fails_at_once_on_a_usage_error_and_keeps_its_log_in_the_status() -> None:
    from planet_contracts.api import validation
    from planet_operator.builders import plan

    spec = validation.parse_spec({"model": {"base": {"uri": "hf://x/y"}}}, name="p")
    release = plan.Release(revision="r", spec=spec)
    job = engine_job.engine_job(plan.single("p", "t", spec, "r"), release)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "build", "operator": "In", "values": [2]},
    } in rules
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"]
        == "FallbackToLogsOnError"
    )
    assert names.engine_job("k") == "planet-engine-k"


async def test_a_build_job_is_never_patched_beyond_its_metadata() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.patches: list[Any] = []

        async def patch(
            self, resource: Any, namespace: str, name: str, patch: Any, **_: Any
        ) -> dict[str, Any]:
            self.patches.append(patch)
            return {}

    live = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "t", "labels": {"a": "1"}},
        "spec": {"template": {"spec": {"containers": [{"name": "build", "image": "old"}]}}},
    }
    desired = copy.deepcopy(live)
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "new"  # immutable on the server
    recorder = Recorder()
    assert await apply.ensure(recorder, desired, live=live) == "unchanged"  # type: ignore[arg-type]
    desired["metadata"]["labels"]["b"] = "2"  # nor relabelled: a build Job is shared (issue 16)
    assert await apply.ensure(recorder, desired, live=live) == "unchanged"  # type: ignore[arg-type]
    assert recorder.patches == []


async def test_a_conflict_whose_object_is_gone_is_left_to_the_next_pass() -> None:
    class Gone:
        async def create(self, *_: Any) -> dict[str, Any]:
            raise Conflict(409, "AlreadyExists", "exists", verb="create")

        async def get(self, *_: Any) -> dict[str, Any]:
            raise NotFound(404, "NotFound", "gone", verb="get")

    desired = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "t"},
        "data": {},
    }
    assert await apply.ensure(Gone(), desired, indexed=True) == "unchanged"  # type: ignore[arg-type]


def test_a_build_job_without_pods_is_explained_by_its_failed_creates() -> None:
    created = (NOW - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = _job(startTime=created)
    job["metadata"]["creationTimestamp"] = created
    assert diagnose.lacks_pods(job, [], now=NOW)
    assert not diagnose.lacks_pods(job, [_pod("planet-engine-87a0-abcde", phase="Pending")], now=NOW)
    young = copy.deepcopy(job)
    young["metadata"]["creationTimestamp"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert not diagnose.lacks_pods(young, [], now=NOW), "pods take a moment to appear"

    says = (
        'Error creating: pods "planet-engine-87a0-x" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "build" must set '
        "securityContext.allowPrivilegeEscalation=false)"
    )
    events = [
        {
            "involvedObject": {"kind": "Job", "name": "planet-engine-87a0"},
            "reason": "FailedCreate",
            "message": "old",
            "lastTimestamp": "2026-12-01T21:00:00Z",
        },
        {
            "involvedObject": {"kind": "Job", "name": "planet-engine-87a0"},
            "reason": "FailedCreate",
            "message": says,
            "lastTimestamp": "2026-12-01T21:59:00Z",
        },
        {"involvedObject": {"kind": "Job", "name": "other"}, "reason": "FailedCreate", "message": "not ours"},
    ]
    cause = diagnose.pods_refused(job, events)
    assert cause is not None and cause.reason == "FailedCreate"
    assert cause.text == f"Job planet-engine-87a0: FailedCreate: {says}"
    assert diagnose.pods_refused(job, events[2:]) is None

"""What failing children say, in their own words: build Jobs, InferenceServices, and their pods.

Read from the objects as the API server has them (Kopf indexes keep slim copies of the pods), so a
reconcile asks nothing more of the API server to explain a failure. KServe's Standard mode reports
a predictor's readiness from its Deployment (``PredictorReady``: ``MinimumReplicasUnavailable``
while starting, ``FailedCreate`` when pods are refused, ``ProgressDeadlineExceeded``,
``ReconcileFailed`` when it cannot write the Deployment) and a model that will not load in
``status.modelStatus`` (``transitionStatus: BlockedByFailedLoad`` with ``lastFailureInfo``, which
it leaves in place after a recovery). It learns of a container's failure only when it reconciles,
so the pods themselves are read too: a crash loop, an image that cannot be pulled, no node to run on.
A pod no node can take is a failure only after :data:`UNSCHEDULABLE_GRACE`: until then a cluster
autoscaler may be adding the node, and the step's message says what the pod waits for.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Mapping
from typing import Any

from planet_contracts.api import resource
from planet_operator.reconcile import causes, observe

Body = Mapping[str, Any]
#: Pod label the Job controller sets (``batch.kubernetes.io/job-name`` since 1.27; older: ``job-name``).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
#: Pod label KServe sets on every pod of an InferenceService.
SERVICE_LABEL = "serving.kserve.io/inferenceservice"
#: Container waiting reasons that will not go away by themselves.
WAITING_FAILURES = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreStartHookError",
        "PostStartHookError",
    }
)
#: InferenceService condition reasons (KServe's, the Deployment's, Knative's) for a predictor
#: that will not come up as specified; ``MinimumReplicasUnavailable`` and the like mean "starting".
SERVICE_FAILURES = frozenset(
    {
        "ReconcileFailed",
        "ProgressDeadlineExceeded",
        "FailedCreate",
        "InvalidGPUAllocation",
        "InvalidWorkerSpecNotSet",
        "RevisionFailed",
        "RevisionMissing",
        "ContainerMissing",
    }
)
#: ``modelStatus.transitionStatus`` values for a model that will not load as specified.
MODEL_BLOCKED = frozenset({"BlockedByFailedLoad", "InvalidSpec"})
#: How long a pod may wait for a node (GPU nodes take minutes to join) before that is a failure.
UNSCHEDULABLE_GRACE = datetime.timedelta(minutes=5)
#: Cause keys: one cause per failing child, however its words change while it fails.
PREDICTOR_FAILED = "PredictorFailed"
BUILD_STUCK = "BuildStuck"


def pod_owner(labels: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the child a pod runs for: its build Job or its InferenceService."""
    for label in JOB_NAME_LABELS:
        if labels.get(label):
            return "Job", str(labels[label])
    if labels.get(SERVICE_LABEL):
        return "InferenceService", str(labels[SERVICE_LABEL])
    return None


def slim_pod(body: Body) -> dict[str, Any]:
    """The parts of a pod that explain a failure: what the operator's pod index keeps."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    kept: dict[str, Any] = {
        key: meta[key]
        for key in ("name", "namespace", "creationTimestamp", "deletionTimestamp")
        if key in meta
    }
    revision = (meta.get("labels") or {}).get(resource.LABEL_REVISION)
    if revision:
        # Which revision the pod serves: a primary's rolling update is through when none is old.
        kept["labels"] = {resource.LABEL_REVISION: revision}
    return {
        "metadata": kept,
        "status": {
            key: status[key]
            for key in (
                "phase",
                "reason",
                "message",
                "conditions",
                "initContainerStatuses",
                "containerStatuses",
            )
            if key in status
        },
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodProblem:
    """Why one pod does not run: its own reason, and its words."""

    pod: str
    reason: str
    #: Which container, and how (without the container's own message).
    where: str
    #: The container's (or scheduler's) message: a termination message, the end of a log.
    words: str = ""
    #: False while the pod may still start by itself (waiting for a node, within the grace).
    failing: bool = True

    @property
    def short(self) -> str:
        """``pod P: container C CrashLoopBackOff (3 restarts)``."""
        return f"pod {self.pod}: {self.where}"

    @property
    def text(self) -> str:
        """The short form and the pod's own words."""
        return f"{self.short}: {self.words}" if self.words else self.short


def pod_problem(pod: Body, *, now: datetime.datetime | None = None) -> PodProblem | None:
    """The first thing that keeps ``pod`` from running, or None."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    name = str(meta.get("name", ""))
    status = pod.get("status") or {}
    for kind, key in (("init container", "initContainerStatuses"), ("container", "containerStatuses")):
        for container in status.get(key) or []:
            found = _container_problem(name, kind, container)
            if found is not None:
                return found
    if status.get("phase") == "Failed":
        reason = str(status.get("reason") or "Failed")
        return PodProblem(
            pod=name, reason=reason, where=f"{reason}", words=causes.tail(status.get("message") or "")
        )
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            since = parse_time(condition.get("lastTransitionTime"))
            overdue = now is not None and since is not None and now - since >= UNSCHEDULABLE_GRACE
            grace = int(UNSCHEDULABLE_GRACE.total_seconds()) // 60
            return PodProblem(
                pod=name,
                reason=reason,
                # Fixed words: a count of minutes would rewrite the status every minute.
                where=f"{reason} for over {grace} min" if overdue else reason,
                words=causes.one_line(str(condition.get("message") or "")),
                failing=overdue,
            )
    return None


def parse_time(value: Any) -> datetime.datetime | None:
    """A Kubernetes timestamp (or an ISO 8601 one the operator wrote); None when absent or garbled.

    One without an offset is taken as UTC, so it compares with the operator's aware clock.
    """
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed


def _container_problem(pod: str, kind: str, container: Body) -> PodProblem | None:
    state = container.get("state") or {}
    name = container.get("name", "")
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    restarts = int(container.get("restartCount") or 0)
    if waiting.get("reason") in WAITING_FAILURES:
        reason = str(waiting["reason"])
        where = f"{kind} {name} {reason}" + (f" ({restarts} restarts)" if restarts else "")
        if last:
            where += f", last exit {last.get('exitCode')} ({last.get('reason') or 'Error'})"
            words = causes.tail(str(last.get("message") or ""))
        else:
            words = causes.one_line(str(waiting.get("message") or ""))
        return PodProblem(pod=pod, reason=reason, where=where, words=words)
    if terminated and int(terminated.get("exitCode") or 0) != 0:
        reason = str(terminated.get("reason") or "Error")
        where = f"{kind} {name} exited {terminated.get('exitCode')} ({reason})"
        return PodProblem(
            pod=pod, reason=reason, where=where, words=causes.tail(str(terminated.get("message") or ""))
        )
    return None


def _newest_first(pods: Collection[Body]) -> list[Body]:
    return sorted(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True
    )


def _terminal(pod: Body) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def first_problem(
    pods: Collection[Body], *, terminal: bool | None = None, now: datetime.datetime | None = None
) -> PodProblem | None:
    """The newest pod's problem (only finished pods, or only running ones, when ``terminal`` says)."""
    for pod in _newest_first(pods):
        if terminal is not None and _terminal(pod) != terminal:
            continue
        found = pod_problem(pod, now=now)
        if found is not None:
            return found
    return None


def job_failed(job: Body, pods: Collection[Body]) -> causes.Cause:
    """A Job the Job controller marked Failed: its reason and message, and what its last pod said."""
    name = str(job["metadata"]["name"])
    _, text = observe.job_state(job)
    problem = first_problem(pods, terminal=True)
    if problem is not None:
        text += f"; {problem.text}"
    return causes.Cause(
        kind="Job",
        name=name,
        reason=causes.BUILD_FAILED,
        message=causes.clip(text, keep="start"),
        key=(causes.BUILD_FAILED, "Job", name),
    )


def job_stuck(job: Body, pods: Collection[Body], *, now: datetime.datetime) -> causes.Cause | None:
    """A running build whose pod cannot start (image, configuration, no node for too long)."""
    problem = first_problem(pods, terminal=False, now=now)
    if problem is None or not problem.failing:
        return None
    name = str(job["metadata"]["name"])
    return causes.Cause(
        kind="Job",
        name=name,
        reason=causes.camel(problem.reason, BUILD_STUCK),
        message=causes.clip(f"{problem.reason}: {problem.text}", keep="start"),
        key=(BUILD_STUCK, "Job", name),
    )


#: How long a running build Job may have no pod before the operator asks why (the Job controller
#: says so only in FailedCreate events: Pod Security, a LimitRange, a quota on pods, a webhook).
NO_POD_GRACE = datetime.timedelta(seconds=5)


def lacks_pods(job: Body, pods: Collection[Body], *, now: datetime.datetime) -> bool:
    """A running Job that has had no pod for a while: its pods may be refused."""
    if pods or observe.job_state(job)[0] != "running" or (job.get("status") or {}).get("active"):
        return False
    created = parse_time((job.get("metadata") or {}).get("creationTimestamp"))
    return created is not None and now - created >= NO_POD_GRACE


def pods_refused(job: Body, events: Collection[Body]) -> causes.Cause | None:
    """The Job controller's latest FailedCreate event about ``job``: the API server's answer to its pod."""
    name = str(job["metadata"]["name"])
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == "Job"
        and (e.get("involvedObject") or {}).get("name") == name
        and e.get("reason") == "FailedCreate"
    ]
    if not mine:
        return None
    latest = max(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return causes.Cause(
        kind="Job",
        name=name,
        reason="FailedCreate",
        message=causes.clip(
            f"FailedCreate: {causes.one_line(str(latest.get('message') or ''))}", keep="start"
        ),
        key=(BUILD_STUCK, "Job", name),
    )


def job_progress(job: Body | None, pods: Collection[Body], *, now: datetime.datetime) -> str:
    """What a running build waits for and how its earlier attempts ended ("" when nothing to say)."""
    if job is None:
        return ""
    parts = []
    waiting = first_problem(pods, terminal=False, now=now)
    if waiting is not None and not waiting.failing:
        parts.append(waiting.text)
    failed = int((job.get("status") or {}).get("failed") or 0)
    if failed:
        limit = int((job.get("spec") or {}).get("backoffLimit") or 0) + 1
        problem = first_problem(pods, terminal=True)
        parts.append(f"{failed} of {limit} attempts failed" + (f", last: {problem.text}" if problem else ""))
    return "; ".join(parts)


def waiting_for(pods: Collection[Body], *, now: datetime.datetime) -> str:
    """What keeps a starting predictor's newest pod from running, while that is not yet a failure."""
    problem = first_problem(pods, terminal=False, now=now)
    return problem.text if problem is not None and not problem.failing else ""


def service_failed(service: Body, pods: Collection[Body], *, now: datetime.datetime) -> causes.Cause | None:
    """An InferenceService that will not become ready as specified, in KServe's and its pods' words."""
    if observe.is_ready(service):
        return None
    name = str(service["metadata"]["name"])
    status = service.get("status") or {}
    model = status.get("modelStatus") or {}
    problem = first_problem(pods, now=now)
    info = model.get("lastFailureInfo") or {}
    condition = _failing_condition(service)
    if (
        model.get("transitionStatus") in MODEL_BLOCKED
        or (model.get("states") or {}).get("targetModelState") == "FailedToLoad"
    ):
        reason = str(info.get("reason") or "ModelLoadFailed")
        text = f"{reason}: {causes.tail(str(info.get('message') or '')) or 'the model failed to load'}"
        if info.get("exitCode"):
            text += f" (exit code {info['exitCode']})"
        detail = problem.short if problem else ""
    elif condition is not None:
        reason = str(condition.get("reason"))
        text = f"{reason}: {causes.one_line(str(condition.get('message') or ''))}"
        detail = problem.text if problem else ""
    elif problem is not None and problem.failing:
        reason, text, detail = problem.reason, f"{problem.reason}: {problem.text}", ""
    else:
        return None
    if detail:
        text += f"; {detail}"
    return causes.Cause(
        kind="InferenceService",
        name=name,
        reason=causes.camel(reason, PREDICTOR_FAILED),
        message=causes.clip(text, keep="start"),
        key=(PREDICTOR_FAILED, "InferenceService", name),
    )


def _failing_condition(service: Body) -> Mapping[str, Any] | None:
    for kind in ("PredictorReady", "Ready"):
        found = observe.condition(service, kind)
        if found is None or found.get("status") != "False":
            continue
        reason = str(found.get("reason") or "")
        if reason in SERVICE_FAILURES or reason.startswith("ExitCode"):
            return found
    return None


def services(
    observed: observe.Observed, *, serving: Collection[str], served: bool, now: datetime.datetime
) -> list[causes.Cause]:
    """Causes for the InferenceServices that fail, or that stopped serving.

    ``serving`` names the services that carry the pipeline's traffic (a canary still starting is not
    one of them); ``served``: the pipeline served once, so their not being ready is a loss.
    """
    found = []
    for name, service in sorted(observed.services.items()):
        if resource.RETIRE_AFTER in ((service.get("metadata") or {}).get("annotations") or {}):
            continue  # the graph left it; it goes after its grace, whatever it does meanwhile
        failed = service_failed(service, observed.pods.get(("InferenceService", name), ()), now=now)
        if failed is not None:
            found.append(failed)
        elif name in serving and served and not observe.is_ready(service):
            found.append(
                causes.Cause(
                    kind="InferenceService",
                    name=name,
                    reason="PredictorNotReady",
                    message=f"stopped serving: {observe.not_ready_reason(service)}",
                    key=(PREDICTOR_FAILED, "InferenceService", name),
                )
            )
    return found

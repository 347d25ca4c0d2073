"""Every refusal and failure reaches the pipeline: a condition and one Warning event, cleared when fixed.

The operator runs in-cluster under the chart's RBAC, on the real API server with KServe's webhooks
and controllers and the real Job, ReplicaSet and Deployment controllers. It is a release of its own
(``planetgen-errors``), so the requests these tests have refused on purpose are not the ones
test_operator_incluster.py proves never happen to its operator. There is no kubelet here: where a
pod must fail or come up, the test writes the Pod's status as a kubelet would, and the real Job
controller and KServe react to it.

Each test measures two things against the issue's 60 s: from the cause (a quota, a webhook, a
missing rule, a failed pod) to the condition and its Warning event, and from the fix to the
condition clearing with a Normal event. Measured times are printed and kept in
``<cluster workdir>/error-timings.json``.
"""

from __future__ import annotations

import copy
import datetime
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import operator_pod

from planet_harness.controlplane import ControlPlane
from planet_harness.pods import PodProcess
from planet_harness.webhooks import Webhook

KUBECTL_PLANET = str(Path(sys.executable).with_name("kubectl-planet"))
RELEASE = NAMESPACE = "planetgen-errors"
#: The issue's bound for a cause to reach the pipeline, and for its fix to clear it.
LIMIT = 60.0
#: Long enough for several retries (back-off 1, 2, 5 s, capped at the 5 s resync).
RETRIES = 12.0
MODEL = "hf://stabilityai/stable-diffusion-xl-base-1.0"
#: Resources KServe admits: its defaulter adds a 1-CPU limit, so the example's 4-CPU request is refused.
RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


# --- the operator -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane) -> Iterator[PodProcess]:
    """The chart installed by Helm as its own release (one replica), its operator running in-cluster."""
    process = operator_pod.install(cluster, release=RELEASE, namespace=NAMESPACE, values=["replicas=1"])
    try:
        yield process
    finally:
        process.stop()
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)


@pytest.fixture
def space(cluster: ControlPlane, namespace: str, operator: PodProcess) -> Iterator[str]:
    """The test's namespace; its pipelines are deleted while the operator still runs to let them go."""
    yield namespace
    cluster.kubectl("delete", "pp", "--all", "-n", namespace, "--timeout=60s", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def timings(cluster: ControlPlane) -> Iterator[dict[str, dict[str, float]]]:
    measured: dict[str, dict[str, float]] = {}
    yield measured
    (cluster.workdir / "error-timings.json").write_text(json.dumps(measured, indent=2))
    print("\ntime to condition / to clear (s):", json.dumps(measured), file=sys.stderr)


# --- helpers ------------------------------------------------------------------------------------


def _until(
    what: str, check: Callable[[], Any], *, timeout: float = LIMIT, process: PodProcess | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process is not None:
            assert process.process is not None and process.process.running, (
                process.process and process.process.tail()
            )
        time.sleep(0.25)
    tail = process.process.tail(80) if process is not None and process.process is not None else ""
    raise AssertionError(f"{what} not within {timeout:.0f} s\n{tail}")


def _items(cluster: ControlPlane, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    return list(json.loads(cluster.kubectl(*args).stdout)["items"])


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pipeline(name: str, *, backend: str = "torch") -> dict[str, Any]:
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": name},
        "spec": {
            "model": {"base": {"uri": MODEL}},
            "engine": {"backend": backend, "precision": "fp16"},
            "rollout": {"steps": []},
            "serving": {"resources": RESOURCES},
        },
    }


class Pipeline:
    """One pipeline as a user sees it: status, events, and what the operator logged about it."""

    def __init__(self, cluster: ControlPlane, namespace: str, name: str, operator: PodProcess) -> None:
        self.cluster, self.namespace, self.name, self.operator = cluster, namespace, name, operator

    def create(self, body: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(body))

    def status(self) -> dict[str, Any]:
        body = json.loads(
            self.cluster.kubectl("get", "pp", self.name, "-n", self.namespace, "-o", "json").stdout
        )
        return dict(body.get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions") or [] if c["type"] == kind), {})

    def events(self, type_: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.name={self.name},involvedObject.kind=PlanetPipeline,type={type_}"
        found = self.cluster.kubectl(
            "get", "events", "-n", self.namespace, "--field-selector", selector, "-o", "json"
        ).stdout
        return list(json.loads(found)["items"])

    def log_lines(self, *words: str) -> list[str]:
        text = self.operator.process.log.read_text(errors="replace") if self.operator.process else ""
        return [line for line in text.splitlines() if all(w in line for w in words)]

    def until(self, what: str, check: Callable[[], Any], *, timeout: float = LIMIT) -> tuple[Any, float]:
        started = time.monotonic()
        value = _until(f"{self.namespace}/{self.name}: {what}", check, timeout=timeout, process=self.operator)
        return value, time.monotonic() - started

    def surfaces(
        self, *, reason: str, words: list[str], started: float, said: list[str] | None = None
    ) -> float:
        """The cause shows as Ready=False/Degraded=True and one Warning event, however often retried.

        ``words`` must be in the condition; ``said`` (default: ``words``) in the event and the log line.
        """
        said = said or words

        def shown() -> Any:
            ready, degraded = self.condition("Ready"), self.condition("Degraded")
            warned = [e for e in self.events("Warning") if all(w in e["message"] for w in said)]
            return (
                ready.get("status") == "False"
                and ready.get("reason") == reason
                and all(w in ready.get("message", "") for w in words)
                and degraded.get("status") == "True"
                and warned
            )

        self.until(f"Ready={reason} and a Warning event quoting {words}", shown)
        elapsed = time.monotonic() - started
        assert elapsed < LIMIT, elapsed
        assert self.status()["phase"] == "Degraded"
        # The retries that follow add no event and no log line about the same cause.
        time.sleep(RETRIES)
        warned = [e for e in self.events("Warning") if all(w in e["message"] for w in said)]
        assert len(warned) == 1, [e["message"] for e in warned]
        assert int(warned[0].get("count") or 1) == 1
        assert len(self.log_lines(*said)) == 1, self.log_lines(*said)
        return elapsed

    def clears(self, *, child: str, reason: str, started: float) -> float:
        """After the fix: Degraded=False, Ready no longer says ``reason``, a Normal event says so."""

        def cleared() -> Any:
            ready, degraded = self.condition("Ready"), self.condition("Degraded")
            resolved = [
                e for e in self.events("Normal") if e["reason"] == "Resolved" and child in e["message"]
            ]
            return degraded.get("status") == "False" and ready.get("reason") != reason and resolved

        self.until(f"{reason} to clear with a Normal event", cleared)
        elapsed = time.monotonic() - started
        assert elapsed < LIMIT, elapsed
        resolved = [e for e in self.events("Normal") if e["reason"] == "Resolved" and child in e["message"]]
        assert len(resolved) == 1, [e["message"] for e in resolved]
        # One line when it started, one (with how often it was seen) when it went away.
        assert [line for line in self.log_lines(child) if "resolved after seen" in line], self.log_lines(
            child
        )
        return elapsed


def _job(cluster: ControlPlane, namespace: str, pipeline_name: str) -> dict[str, Any]:
    """The pipeline's build Job: shared Jobs carry no pipeline label, only their owners say whose."""

    def owned() -> list[Any]:
        jobs = _items(cluster, "jobs", namespace, "app.kubernetes.io/managed-by=planetgen")
        return [
            j for j in jobs if pipeline_name in {o["name"] for o in j["metadata"].get("ownerReferences", [])}
        ]

    return dict(_until("the build Job", owned)[0])


def _pod_of(cluster: ControlPlane, namespace: str, selector: str) -> dict[str, Any]:
    pods = _until(f"a pod for {selector}", lambda: _items(cluster, "pods", namespace, selector))
    return dict(sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])[-1])


def kubelet_writes(cluster: ControlPlane, pod: dict[str, Any], status: dict[str, Any]) -> None:
    """Write a Pod's status as its kubelet would (the status subresource, with the admin's rights)."""
    meta = pod["metadata"]
    cluster.kubectl(
        "patch",
        "pod",
        meta["name"],
        "-n",
        meta["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def _terminated(pod: dict[str, Any], *, exit_code: int, reason: str, message: str) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    now = _now()
    return {
        "phase": "Failed" if exit_code else "Succeeded",
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": reason,
                        "message": message,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
        ],
    }


# --- refused writes ------------------------------------------------------------------------------


def test_quota_that_allows_no_inference_services(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-inference-services", "namespace": space},
        "spec": {"hard": {"count/inferenceservices.serving.kserve.io": "0"}},
    }
    cluster.apply([quota])
    # The quota controller has seen it. (On a freshly started controller manager that has not yet
    # discovered KServe's resources, admission refuses as "status unknown for quota" instead of
    # "exceeded quota": the same quota's words either way.)
    _until(
        "the quota's status", lambda: _items(cluster, "resourcequota", space)[0].get("status", {}).get("hard")
    )
    p = Pipeline(cluster, space, "quota", operator)
    started = time.monotonic()
    p.create(pipeline("quota"))
    words = [
        "InferenceService quota-generate",
        "create refused (403 Forbidden)",
        "quota: no-inference-services",
        "count/inferenceservices.serving.kserve.io",
    ]
    to_condition = p.surfaces(reason="ChildRejected", words=words, started=started)
    # The graph, the config and the revision were still written: only the refused child is missing.
    assert _items(cluster, "inferencegraphs", space), "the rest of the pass went on"

    # Retried with back-off, not in a loop: each refused create is one request in the audit log.
    attempts = [
        e
        for e in cluster.audit_events()
        if e["verb"] == "create"
        and e.get("objectRef", {}).get("resource") == "inferenceservices"
        and e.get("objectRef", {}).get("namespace") == space
        and e.get("responseStatus", {}).get("code") == 403
    ]
    assert 2 <= len(attempts) <= 2 + (to_condition + RETRIES) / 1.0, len(attempts)

    fixed = time.monotonic()
    cluster.kubectl("delete", "resourcequota", "no-inference-services", "-n", space)
    to_clear = p.clears(child="InferenceService quota-generate", reason="ChildRejected", started=fixed)
    assert _items(cluster, "inferenceservices", space)
    # The pipeline says what it waits for now: the predictor, not the quota.
    ready = p.condition("Ready")
    assert ready["reason"] == "PredictorNotReady" and "no-inference-services" not in ready["message"], ready
    timings["quota"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}


def test_webhook_that_refuses_the_inference_service_after_the_build(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    # The report: the build Job completed, then an admission webhook refused the service.
    says = "GPU pool a100-west is closed for maintenance until 18:00 UTC (ticket OPS-4411)"
    rules = [
        {
            "apiGroups": ["serving.kserve.io"],
            "apiVersions": ["*"],
            "resources": ["inferenceservices"],
            "operations": ["CREATE"],
        }
    ]
    with Webhook(
        cluster, name="gpu-pool.policy.planetgen.test", namespace=space, rules=rules, refuse=says
    ) as hook:
        p = Pipeline(cluster, space, "hooked", operator)
        p.create(pipeline("hooked", backend="tensorrt"))
        job = _job(cluster, space, "hooked")
        pod = _pod_of(cluster, space, f"batch.kubernetes.io/job-name={job['metadata']['name']}")
        started = time.monotonic()
        kubelet_writes(cluster, pod, _terminated(pod, exit_code=0, reason="Completed", message="built"))
        words = [
            "InferenceService hooked-generate",
            'admission webhook "gpu-pool.policy.planetgen.test" denied the request',
            says,
        ]
        to_condition = p.surfaces(reason="ChildRejected", words=words, started=started)
        # Nothing from the step that has ended: the engines are built.
        assert "building engines" not in p.condition("Ready")["message"]
        assert p.condition("EnginesReady")["status"] == "True"
        assert any(op == "CREATE" and name == "hooked-generate" for op, _, name in hook.reviews)

        fixed = time.monotonic()
        hook.refuse = None
        to_clear = p.clears(child="InferenceService hooked-generate", reason="ChildRejected", started=fixed)
    timings["webhook"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}


def test_missing_rbac_for_one_child_kind(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    role = json.loads(cluster.kubectl("get", "clusterrole", RELEASE, "-o", "json").stdout)
    original = copy.deepcopy(role["rules"])
    # An administrator trims the chart's ClusterRole: InferenceGraphs may be read but not written.
    for rule in role["rules"]:
        if "inferencegraphs" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v not in ("create", "patch")]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
    try:
        p = Pipeline(cluster, space, "rbac", operator)
        started = time.monotonic()
        p.create(pipeline("rbac"))
        words = [
            "InferenceGraph rbac",
            "create refused (403 Forbidden)",
            'cannot create resource "inferencegraphs"',
        ]
        to_condition = p.surfaces(reason="ChildRejected", words=words, started=started)
        fixed = time.monotonic()
    finally:
        restored = json.loads(cluster.kubectl("get", "clusterrole", RELEASE, "-o", "json").stdout)
        restored["rules"] = original
        cluster.kubectl("replace", "-f", "-", input=json.dumps(restored))
    to_clear = p.clears(child="InferenceGraph rbac", reason="ChildRejected", started=fixed)
    assert _items(cluster, "inferencegraphs", space)
    timings["rbac"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}


def test_missing_rbac_for_the_pipelines_own_status(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    # The one refusal the status cannot carry: its own write. The Warning event and the log do.
    role = json.loads(cluster.kubectl("get", "clusterrole", RELEASE, "-o", "json").stdout)
    original = copy.deepcopy(role["rules"])
    role["rules"] = [r for r in role["rules"] if "planetpipelines/status" not in r["resources"]]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
    p = Pipeline(cluster, space, "mute", operator)
    words = [
        "PlanetPipeline mute",
        "patch failed (403 Forbidden)",
        'cannot patch resource "planetpipelines/status"',
    ]

    def warned() -> list[dict[str, Any]]:
        return [
            e
            for e in p.events("Warning")
            if e["reason"] == "ReconcileFailed" and all(w in e["message"] for w in words)
        ]

    try:
        started = time.monotonic()
        p.create(pipeline("mute"))
        p.until("a ReconcileFailed Warning event", warned)
        to_event = time.monotonic() - started
        assert to_event < LIMIT
        assert not p.status(), "nothing could be written"
        time.sleep(RETRIES)
        assert len(warned()) == 1, [e["message"] for e in warned()]
        assert len(p.log_lines(*words)) == 1, p.log_lines(*words)
        fixed = time.monotonic()
    finally:
        restored = json.loads(cluster.kubectl("get", "clusterrole", RELEASE, "-o", "json").stdout)
        restored["rules"] = original
        cluster.kubectl("replace", "-f", "-", input=json.dumps(restored))

    def resolved() -> Any:
        normal = [
            e
            for e in p.events("Normal")
            if e["reason"] == "Resolved" and "PlanetPipeline mute" in e["message"]
        ]
        return normal and p.status().get("phase")

    p.until("the status, and a Normal event", resolved)
    to_clear = time.monotonic() - fixed
    assert to_clear < LIMIT
    timings["status-rbac"] = {"condition": round(to_event, 1), "clear": round(to_clear, 1)}


def test_pod_security_that_refuses_the_build_jobs_pods(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    # The Job is admitted (with a warning); its pods are not, and the Job controller says so only in
    # FailedCreate events on the Job: no condition, no status field.
    cluster.kubectl("label", "namespace", space, "pod-security.kubernetes.io/enforce=restricted")
    p = Pipeline(cluster, space, "secured", operator)
    started = time.monotonic()
    p.create(pipeline("secured", backend="tensorrt"))
    name = _job(cluster, space, "secured")["metadata"]["name"]
    words = [f"Job {name}", "FailedCreate", "is forbidden: violates PodSecurity", "restricted:latest"]
    to_condition = p.surfaces(reason="FailedCreate", words=words, started=started)
    assert p.condition("EnginesReady")["reason"] == "FailedCreate"

    fixed = time.monotonic()
    cluster.kubectl("label", "namespace", space, "pod-security.kubernetes.io/enforce-")
    to_clear = p.clears(child=f"Job {name}", reason="FailedCreate", started=fixed)
    assert p.status()["phase"] == "Building"
    timings["pod-security"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}


# --- what the children do ------------------------------------------------------------------------


def test_build_job_whose_pod_fails(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    p = Pipeline(cluster, space, "broken", operator)
    p.create(pipeline("broken", backend="tensorrt"))
    job = _job(cluster, space, "broken")
    name = job["metadata"]["name"]
    pod = _pod_of(cluster, space, f"batch.kubernetes.io/job-name={name}")
    # planet_build exits 2 for a build that cannot run here (planet_build.errors.EXIT_USAGE); the
    # kubelet puts the end of its log in the termination message (FallbackToLogsOnError).
    says = "error: --backend tensorrt needs CUDA, and this node has no GPU (exit 2: retrying will not help)"
    started = time.monotonic()
    kubelet_writes(cluster, pod, _terminated(pod, exit_code=2, reason="Error", message=says))
    words = [f"Job {name}", "PodFailurePolicy", "exited 2 (Error)", says]
    to_condition = p.surfaces(reason="BuildFailed", words=words, started=started)
    engines = p.condition("EnginesReady")
    assert engines["status"] == "False" and engines["reason"] == "BuildFailed" and says in engines["message"]

    # The fix the docs give: delete the failed Job once the cause is fixed; the operator builds again.
    fixed = time.monotonic()
    cluster.kubectl("delete", "job", name, "-n", space, "--cascade=background")
    to_clear = p.clears(child=f"Job {name}", reason="BuildFailed", started=fixed)
    assert p.status()["phase"] == "Building"
    assert p.condition("EnginesReady")["reason"] == "Building"
    timings["build"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}


def test_inference_service_kserve_reports_not_ready(
    cluster: ControlPlane, space: str, operator: PodProcess, timings: dict[str, dict[str, float]]
) -> None:
    p = Pipeline(cluster, space, "crash", operator)
    p.create(pipeline("crash"))
    pod = _pod_of(cluster, space, "serving.kserve.io/inferenceservice=crash-generate")
    says = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.50 GiB (GPU 0; 23.68 GiB total)"
    now = _now()
    init = [c["name"] for c in pod["spec"].get("initContainers") or []]
    container = pod["spec"]["containers"][0]
    crash_loop = {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {
                "type": "ContainersReady",
                "status": "False",
                "reason": "ContainersNotReady",
                "lastTransitionTime": now,
            },
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
        ],
        # The storage initializer fetched the model; then the server crashes loading it, again and again.
        "initContainerStatuses": [
            {
                "name": name,
                "image": "kserve/storage-initializer",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
                },
            }
            for name in init
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 4,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 1m20s restarting failed container",
                    }
                },
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "message": says,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
        ],
    }
    started = time.monotonic()
    kubelet_writes(cluster, pod, crash_loop)
    # KServe's own words: modelStatus.lastFailureInfo (ModelLoadFailed) from the container's last exit.
    # The operator may see the crash loop on the pod a moment before KServe reports it: one cause,
    # one event, in the container's words either way.
    words = ["InferenceService crash-generate", "ModelLoadFailed", says, "(exit code 1)"]
    said = ["InferenceService crash-generate", says]
    to_condition = p.surfaces(reason="ModelLoadFailed", words=words, said=said, started=started)
    isvc = _items(cluster, "inferenceservices", space)[0]
    assert isvc["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    # One event for the service, whichever observer (the pod, KServe) saw the failure first.
    about = [e for e in p.events("Warning") if "InferenceService crash-generate" in e["message"]]
    assert len(about) == 1, [e["message"] for e in about]

    # kubectl planet status: the chain from the pipeline down to the failing pod, on one screen.
    shown = subprocess.run(
        [KUBECTL_PLANET, "status", "crash", "-n", space, f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for text in (
        "Ready=False ModelLoadFailed",
        "InferenceService crash-generate",
        pod["metadata"]["name"],
        "CrashLoopBackOff",
        "CUDA out of memory",
    ):
        assert text in shown, f"{text!r} not in:\n{shown}"
    chain = shown[shown.index("Chain") :]
    assert len(chain.splitlines()) <= 40, chain

    # The kubelet reports the container up and ready: the Deployment is available, KServe says so.
    fixed = time.monotonic()
    now = _now()
    up = copy.deepcopy(crash_loop)
    up["conditions"] = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    up["containerStatuses"][0].update(ready=True, started=True, state={"running": {"startedAt": now}})
    kubelet_writes(cluster, pod, up)
    to_clear = p.clears(child="InferenceService crash-generate", reason="ModelLoadFailed", started=fixed)
    ready = p.condition("Ready")
    assert says not in ready["message"], ready
    timings["kserve"] = {"condition": round(to_condition, 1), "clear": round(to_clear, 1)}

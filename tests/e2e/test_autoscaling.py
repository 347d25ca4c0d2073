"""Queue-depth autoscaling on the real components: Prometheus ▶ KEDA ▶ the HPA in kube-controller-manager.

The stack runs Prometheus (discovering the predictor pods through the API server by the scrape
annotations the operator renders) and KEDA 2.18 (operator and metrics server as pods, its metrics
server registered as ``v1beta1.external.metrics.k8s.io``). KServe 0.20 turns the pipeline's
InferenceService into a ScaledObject, KEDA into an HPA, and kube-controller-manager's HPA controller
sets the Deployment's replicas from ``planet_queue_depth + planet_inflight_requests``.

Intervals are shortened so a burst and its cooldown fit in minutes (the products' defaults in
brackets): Prometheus scrapes every 2 s [15 s in ``planet dev up``], the HPA controller syncs every
5 s [15 s] and scales down after a 30 s stabilization window [KServe's 300 s]. The window is the
pipeline's own (``autoscaling.scaleDownStabilizationSeconds``): the cluster keeps KServe's 300 s, so
replicas come back in time only if the operator's window reached the HPA. Bounds below are counted
in those intervals; nothing asserts a speed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from tests.e2e import stack
from tests.e2e.stack import kubectl_json, running

from planet_harness import devstack, workloads
from planet_harness import stack as harness

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NS = "default"
SCRAPE_SECONDS, HPA_SYNC_SECONDS, SCALE_DOWN_WINDOW_SECONDS = 2.0, 5.0, 30
AUTOSCALING = harness.Autoscaling(scrape_seconds=SCRAPE_SECONDS, hpa_sync_seconds=HPA_SYNC_SECONDS)
MIN_REPLICAS, MAX_REPLICAS, TARGET = 1, 3, 2
#: Scale-up must show within this many HPA syncs of the burst's start (scrape, KEDA's query and the
#: HPA's own sync each add up to one interval; the rest is slack for two shared cores).
SCALE_UP_SYNCS = 12
BASELINE_CLIENTS, BURST_CLIENTS = 1, 10
PIPELINE = "e2e-scale"
MANIFEST = workloads.scaling_pipeline(
    PIPELINE, namespace=NS, size=(152, 64), steps=2, max_queue=16,
    replicas=(MIN_REPLICAS, MAX_REPLICAS), target_queue_depth=TARGET,
    scale_down_window=SCALE_DOWN_WINDOW_SECONDS,
)  # fmt: skip
PROMPT = workloads.PROMPT


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.DevStack]:
    with running(tmp_path_factory.mktemp("scale"), autoscaling=AUTOSCALING) as dev:
        yield dev


def until(dev: devstack.DevStack, what: str, check: Callable[[], Any], timeout: float) -> Any:
    return stack.until(dev, what, check, timeout, kinds="pods,hpa,scaledobjects")


@dataclasses.dataclass
class Outcome:
    """One request's fate, its 429s included."""

    started: float
    finished: float
    status: int
    rejected: int
    revision: str = ""


class Load:
    """Closed-loop clients posting to one InferenceService through the gateway; 429s wait and retry."""

    def __init__(self, dev: devstack.DevStack, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": dev.stack.proxy}))
        self.outcomes: list[Outcome] = []
        self.clients = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def set_clients(self, count: int) -> None:
        """Run ``count`` clients; surplus ones stop after their current request."""
        with self._lock:
            self.clients = count
        while len([t for t in self._threads if t.is_alive()]) < count:
            index = len(self._threads)
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self.set_clients(0)
        for thread in self._threads:
            thread.join(timeout=120)

    def _client(self, index: int) -> None:
        seed = index * 100_000
        while index < self.clients:
            seed += 1
            self.outcomes.append(self._one(seed))

    def _one(self, seed: int) -> Outcome:
        body = json.dumps({"instances": [{"prompt": PROMPT, "seed": seed}]}).encode()
        started, rejected = time.monotonic(), 0
        while True:
            request = urllib.request.Request(
                self.url, data=body, headers={"content-type": "application/json"}
            )
            try:
                with self.opener.open(request, timeout=300) as reply:
                    answer = json.loads(reply.read())
                    revision = str(answer["predictions"][0].get("revision", ""))
                    return Outcome(started, time.monotonic(), reply.status, rejected, revision)
            except urllib.error.HTTPError as exc:
                if exc.code != 429:
                    return Outcome(started, time.monotonic(), exc.code, rejected)
                rejected += 1
                # Retry-After as the predictor says, capped so the test's clients stay busy.
                time.sleep(min(float(exc.headers.get("Retry-After") or 1), 2.0))
            except OSError:
                return Outcome(started, time.monotonic(), 0, rejected)


class Replicas:
    """Samples a Deployment's replicas (the HPA's decision) and ready replicas every second."""

    def __init__(self, dev: devstack.DevStack, deployments: list[str]) -> None:
        self.dev = dev
        self.deployments = deployments
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self.pods_seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Replicas:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            found = kubectl_json(self.dev, "get", "deployments", "-n", NS)
            if found is None:
                continue
            now: dict[str, tuple[int, int]] = {}
            for item in found["items"]:
                name = item["metadata"]["name"]
                if name in self.deployments:
                    status = item.get("status", {})
                    now[name] = (item["spec"].get("replicas", 0), status.get("readyReplicas", 0))
            self.samples.append((time.monotonic(), now))

    def latest(self, deployment: str) -> tuple[int, int]:
        for _, now in reversed(self.samples):
            if deployment in now:
                return now[deployment]
        return (0, 0)

    def seen(self, deployment: str, since: float = 0.0) -> list[int]:
        return [now[deployment][0] for at, now in self.samples if at >= since and deployment in now]


def prometheus_value(dev: devstack.DevStack, query: str) -> float | None:
    assert dev.stack.prometheus is not None
    url = f"{dev.stack.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as reply:
        result = json.loads(reply.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def ready_pipeline(dev: devstack.DevStack, name: str) -> dict[str, Any] | None:
    found = kubectl_json(dev, "get", "pp", name, "-n", NS)
    status = (found or {}).get("status", {})
    return status if status.get("phase") == "Ready" else None


def predict_url(dev: devstack.DevStack, isvc: str) -> str:
    found = kubectl_json(dev, "get", "isvc", isvc, "-n", NS)
    assert found is not None, isvc
    return f"{found['status']['url']}/v1/models/{isvc}:predict"


def pod_uids(dev: devstack.DevStack, isvc: str) -> set[str]:
    found = kubectl_json(dev, "get", "pods", "-n", NS, "-l", f"serving.kserve.io/inferenceservice={isvc}")
    return {p["metadata"]["uid"] for p in (found or {"items": []})["items"]}


def test_keda_serves_external_metrics_through_the_aggregator(dev: devstack.DevStack) -> None:
    # The API server proxies external.metrics.k8s.io to KEDA's metrics server at its pod address.
    found = dev.cluster.kubectl("get", "--raw", "/apis/external.metrics.k8s.io/v1beta1").stdout
    assert json.loads(found)["groupVersion"] == "external.metrics.k8s.io/v1beta1"


def test_a_burst_scales_the_predictor_up_and_back(dev: devstack.DevStack) -> None:
    dev.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(MANIFEST))
    until(dev, f"{PIPELINE} Ready", lambda: ready_pipeline(dev, PIPELINE), timeout=600)
    isvc = f"{PIPELINE}-generate"
    deployment = f"{isvc}-predictor"
    # KServe made the ScaledObject, KEDA the HPA, with the pipeline's bounds.
    hpa = until(
        dev,
        "KEDA's HPA",
        lambda: kubectl_json(dev, "get", "hpa", f"keda-hpa-{deployment}", "-n", NS),
        timeout=120,
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (MIN_REPLICAS, MAX_REPLICAS)
    # The pipeline's window, not the cluster's 300 s: operator ▶ KServe ▶ ScaledObject ▶ HPA.
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == SCALE_DOWN_WINDOW_SECONDS
    scaled = kubectl_json(dev, "get", "scaledobject", deployment, "-n", NS)
    assert scaled is not None
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    # Prometheus found the predictor through the API server by its annotations.
    until(dev, "Prometheus scraping the predictor", lambda: prometheus_value(dev, query) is not None, 120)

    load = Load(dev, predict_url(dev, isvc))
    with Replicas(dev, [deployment]) as replicas:
        until(dev, "the first sample", lambda: replicas.samples, timeout=30)
        # Baseline: one client never needs more than the minimum (queue + in flight <= 1 < target).
        load.set_clients(BASELINE_CLIENTS)
        time.sleep(6 * HPA_SYNC_SECONDS)
        assert replicas.seen(deployment) and max(replicas.seen(deployment)) == MIN_REPLICAS
        before_burst = pod_uids(dev, isvc)

        burst = time.monotonic()
        load.set_clients(BURST_CLIENTS * BASELINE_CLIENTS)
        until(
            dev,
            "the HPA raising replicas",
            lambda: replicas.latest(deployment)[0] > MIN_REPLICAS,
            timeout=SCALE_UP_SYNCS * HPA_SYNC_SECONDS,
        )
        raised_after = time.monotonic() - burst
        until(dev, "a new replica Ready", lambda: replicas.latest(deployment)[1] > MIN_REPLICAS, 300)
        # Scale-up added pods and killed none (the busy one kept its requests).
        assert before_burst <= pod_uids(dev, isvc)
        time.sleep(4 * HPA_SYNC_SECONDS)

        load.set_clients(BASELINE_CLIENTS)
        calm = time.monotonic()
        until(dev, "the queue drained", lambda: (prometheus_value(dev, query) or 0) <= BASELINE_CLIENTS, 300)
        until(
            dev,
            "replicas back to the minimum",
            lambda: replicas.latest(deployment) == (MIN_REPLICAS, MIN_REPLICAS),
            timeout=SCALE_DOWN_WINDOW_SECONDS + 30 * HPA_SYNC_SECONDS,
        )
        back_after = time.monotonic() - calm
        # Scale-down happened under the baseline load: its in-flight requests must finish too.
        time.sleep(2 * HPA_SYNC_SECONDS)
        load.stop()

    seen = replicas.seen(deployment)
    print(
        f"replicas raised {raised_after:.0f} s after the burst, back to {MIN_REPLICAS} "
        f"{back_after:.0f} s after it; peak {max(seen)}; {len(load.outcomes)} requests, "
        f"{sum(o.rejected for o in load.outcomes)} 429s"
    )
    assert min(seen) >= MIN_REPLICAS and max(seen) <= MAX_REPLICAS
    failed = [o for o in load.outcomes if o.status != 200]
    assert not failed, f"{len(failed)} of {len(load.outcomes)} requests lost: {failed[:5]}"


def test_each_revision_scales_on_its_own_queue(dev: devstack.DevStack) -> None:
    # The burst test's pipeline goes first: two cores, and its pods would compete.
    dev.cluster.kubectl("delete", "pp", PIPELINE, "-n", NS, "--ignore-not-found", "--wait=false")
    name = f"{PIPELINE}-rev"
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["metadata"]["name"] = name
    # One step held until promoted; no analysis falls due while the queues are measured.
    manifest["spec"]["rollout"] = {"steps": [{"weight": 20, "pause": {}}], "analysis": {"interval": "30m"}}
    dev.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    until(dev, f"{name} v1 Ready", lambda: ready_pipeline(dev, name), timeout=600)
    manifest["spec"]["version"] = "v2"
    manifest["spec"]["generation"]["guidanceScale"] = 3.0
    dev.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def rolling() -> dict[str, Any] | None:
        found = kubectl_json(dev, "get", "pp", name, "-n", NS)
        status = (found or {}).get("status", {})
        return status if status.get("trafficPercent") == 20 else None

    status = until(dev, "the canary at 20 %", rolling, timeout=600)
    stable_isvc, canary_isvc = f"{name}-generate", f"{name}-generate-{status['canaryRevision']}"
    stable, canary = f"{stable_isvc}-predictor", f"{canary_isvc}-predictor"
    for isvc in (stable_isvc, canary_isvc):
        query = kubectl_json(dev, "get", "scaledobject", f"{isvc}-predictor", "-n", NS)
        assert query is not None
        until(
            dev,
            f"Prometheus scraping {isvc}",
            lambda q=query: prometheus_value(dev, q["spec"]["triggers"][0]["metadata"]["query"]) is not None,
            120,
        )
    with Replicas(dev, [stable, canary]) as replicas:
        until(
            dev,
            "both Deployments sampled",
            lambda: replicas.samples and {stable, canary} <= set(replicas.samples[-1][1]),
            30,
        )
        for busy, idle, busy_isvc in ((canary, stable, canary_isvc), (stable, canary, stable_isvc)):
            phase = time.monotonic()
            idle_at_start = replicas.latest(idle)[0]
            assert idle_at_start >= MIN_REPLICAS, replicas.samples[-1]
            load = Load(dev, predict_url(dev, busy_isvc))
            load.set_clients(BURST_CLIENTS)
            until(
                dev,
                f"{busy} scaling up on its own queue",
                lambda b=busy: replicas.latest(b)[0] > MIN_REPLICAS,
                timeout=SCALE_UP_SYNCS * HPA_SYNC_SECONDS,
            )
            # Two more syncs: time for a wrongly shared query to have moved the other one too.
            time.sleep(2 * HPA_SYNC_SECONDS)
            load.stop()
            grew = [n for n in replicas.seen(idle, since=phase) if n > idle_at_start]
            assert not grew, f"{idle} followed {busy}'s queue: {replicas.seen(idle, since=phase)}"
            revisions = {o.revision for o in load.outcomes if o.status == 200}
            assert len(revisions) == 1, revisions
    dev.cluster.kubectl("delete", "pp", name, "-n", NS, "--wait=false")

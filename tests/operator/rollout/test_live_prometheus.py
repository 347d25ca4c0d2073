"""The rollout machine driven by a real Prometheus scraping an exporter with the predictor's metrics."""

import asyncio
import dataclasses
import datetime
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest

from planet_contracts.api import spec as api
from planet_operator.rollout import analysis, machine, prometheus

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs a prometheus binary on PATH"),
]

MIN_WINDOW = 5.0  # seconds: five 1 s scrapes, enough for rate()
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
QUALITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))  # the predictor's


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one revision's predictor reports per request."""

    latency: float = 0.8
    queue: float = 0.05
    errors: float = 0.0  # share failing with reason "internal"
    client_errors: float = 0.0  # share refused as bad_request / queue_full: not the canary's fault
    quality: float = 0.8


PROFILES = {
    "healthy": Profile(client_errors=0.3),
    "erroring": Profile(errors=0.2),
    "slow": Profile(latency=45.0),
}


class Traffic:
    """Feeds the exporter's metrics for every profile, 20 requests/s each, from one thread."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        labels = ["pipeline", "revision", "lane"]
        self.errors = prometheus_client.Counter("planet_errors", "", [*labels, "reason"], registry=registry)
        self.duration = prometheus_client.Histogram(
            "planet_request_duration_seconds", "", [*labels, "stage"], buckets=BUCKETS, registry=registry
        )
        self.quality = prometheus_client.Histogram(
            "planet_quality_score", "", labels, buckets=QUALITY_BUCKETS, registry=registry
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        owed = {(rev, kind): 0.0 for rev in PROFILES for kind in ("internal", "client")}
        while not self.stop.wait(0.1):
            for revision, profile in PROFILES.items():
                lane = ("planets", revision, "final")
                for _ in range(2):
                    self.quality.labels(*lane).observe(profile.quality)
                    self.duration.labels(*lane, "total").observe(profile.latency)
                    self.duration.labels(*lane, "queue").observe(profile.queue)
                    # Whole errors, spread evenly: the rates come out exact.
                    for kind, share, reason in (
                        ("internal", profile.errors, "internal"),
                        ("client", profile.client_errors, "bad_request"),
                    ):
                        owed[revision, kind] += share
                        if owed[revision, kind] >= 1:
                            owed[revision, kind] -= 1
                            self.errors.labels(*lane, reason).inc()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    registry = prometheus_client.CollectorRegistry()
    exporter_port = free_port()
    server, _ = prometheus_client.start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    traffic = Traffic(registry)
    traffic.thread.start()

    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: planet\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            str(shutil.which("prometheus")),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200,
            seconds=30,
            what="ready",
        )
        # rate() over the window needs a few scrapes of every revision.
        query = f"{url}/api/v1/query?query=count(count_over_time(up%5B{MIN_WINDOW:.0f}s%5D)%20%3E%3D%204)"
        wait_until(
            lambda: b'"1"]' in urllib.request.urlopen(query, timeout=1).read(), seconds=30, what="scrapes"
        )
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        traffic.stop.set()
        traffic.thread.join(timeout=5)
        server.shutdown()
        print(Path(log.name).read_text()[-2000:])


def spec_for(*steps: api.RolloutStep, **limits: object) -> api.RolloutSpec:
    return api.RolloutSpec(
        steps=list(steps),
        analysis=api.AnalysisSpec(interval="2s", max_p95_latency_seconds=30, **limits),  # type: ignore[arg-type]
    )


async def drive(
    url: str, spec: api.RolloutSpec, revision: str, *, seconds: float = 25
) -> list[tuple[machine.Decision, analysis.AnalysisResult | None]]:
    """The handler's loop: analyse when due, decide, sleep until the requeue time; until the rollout ends."""
    target = analysis.Target(pipeline="planets", revision=revision)
    history: list[tuple[machine.Decision, analysis.AnalysisResult | None]] = []
    state = None
    deadline = time.monotonic() + seconds
    async with prometheus.PrometheusClient(base_url=url, timeout=5) as client:
        for _ in range(200):
            now = datetime.datetime.now(datetime.UTC)
            result = None
            if machine.analysis_due(spec=spec, state=state, now=now):
                result = await analysis.analyse(
                    client=client, spec=spec.analysis, target=target, now=now, min_window_seconds=MIN_WINDOW
                )
            decision = machine.decide(
                spec=spec, rollback=api.RollbackSpec(), state=state, now=now, analysis=result
            )
            history.append((decision, result))
            if decision.outcome in ("promote", "rollback", "abort") or time.monotonic() > deadline:
                return history
            state = decision.state
            wait = machine.requeue_after(spec=spec, state=state, now=datetime.datetime.now(datetime.UTC))
            await asyncio.sleep(min(max(wait, 0.05), 2.0))
    return history


def weights(history: list[tuple[machine.Decision, analysis.AnalysisResult | None]]) -> list[int]:
    return [d.traffic_percent for d, _ in history if d.traffic_percent is not None]


def verdicts(history: list[tuple[machine.Decision, analysis.AnalysisResult | None]]) -> list[str]:
    return [r.verdict for _, r in history if r is not None]


async def test_queries_measure_the_canary(prometheus_url: str) -> None:
    spec = api.AnalysisSpec(interval="2s", min_quality_score=0.5)
    now = datetime.datetime.now(datetime.UTC)
    async with prometheus.PrometheusClient(base_url=prometheus_url) as client:
        healthy, erroring = [
            await analysis.analyse(
                client=client,
                spec=spec,
                target=analysis.Target(pipeline="planets", revision=rev),
                now=now,
                min_window_seconds=MIN_WINDOW,
            )
            for rev in ("healthy", "erroring")
        ]
    value = {c.metric: c.value for c in healthy.checks}
    assert value["error_rate"] == 0  # 30 % bad_request, all excluded
    assert 0.5 < value["p95_latency_seconds"] <= 1.0  # type: ignore[operator]
    assert value["queue_seconds"] == pytest.approx(0.05)
    assert value["quality_score"] == pytest.approx(0.8)
    assert healthy.verdict == "pass"
    rate = next(c.value for c in erroring.checks if c.metric == "error_rate")
    assert rate == pytest.approx(0.2, abs=0.03)


async def test_healthy_canary_is_promoted_through_every_step(prometheus_url: str) -> None:
    spec = spec_for(
        api.RolloutStep(weight=20, pause=api.Pause(duration="2s")),
        api.RolloutStep(weight=50),
        api.RolloutStep(weight=80, pause=api.Pause(duration="3s")),
        min_quality_score=0.5,
    )
    history = await drive(prometheus_url, spec, "healthy")
    assert history[-1][0].outcome == "promote"
    assert weights(history) == [20, 50, 80, 100]
    assert set(verdicts(history)) == {"pass"}


async def test_erroring_canary_is_rolled_back_within_the_failure_limit(prometheus_url: str) -> None:
    spec = spec_for(api.RolloutStep(weight=10), api.RolloutStep(weight=50), failure_limit=1)
    history = await drive(prometheus_url, spec, "erroring")
    last = history[-1][0]
    assert last.outcome == "rollback"
    assert weights(history) == [10, 0]
    assert verdicts(history) == ["fail", "fail"]
    # The rate comes from scraped counters over a window, so it is near the fed 20 %, not exactly it.
    found = re.search(r"analysis failed 2 times \(limit 1\): error_rate ([0-9.]+) > max 0\.01", last.reason)
    assert found, last.reason
    assert float(found.group(1)) == pytest.approx(0.2, abs=0.03)


async def test_latency_regression_is_rolled_back(prometheus_url: str) -> None:
    spec = spec_for(api.RolloutStep(weight=10), api.RolloutStep(weight=50), failure_limit=0)
    history = await drive(prometheus_url, spec, "slow")
    last = history[-1][0]
    assert (last.outcome, weights(history)) == ("rollback", [10, 0])
    assert "p95_latency_seconds" in last.reason
    assert "> max 30" in last.reason
    assert "error_rate" not in last.reason


async def test_no_data_is_inconclusive_then_fails_after_the_limit(prometheus_url: str) -> None:
    spec = spec_for(api.RolloutStep(weight=10), inconclusive_limit=2)
    history = await drive(prometheus_url, spec, "never-deployed")
    last = history[-1][0]
    assert last.outcome == "rollback"
    assert verdicts(history) == ["inconclusive"] * 3
    assert [d.outcome for d, r in history if r is not None] == ["hold", "hold", "rollback"]
    assert "no data in 3 checks in a row (limit 2)" in last.reason


async def test_bad_queries_and_scalars(prometheus_url: str) -> None:
    async with prometheus.PrometheusClient(base_url=prometheus_url) as client:
        assert [s.value for s in await client.query("1 + 1")] == [2.0]
        with pytest.raises(prometheus.PrometheusError) as caught:
            await client.query("sum(rate(x[")
    assert (caught.value.kind, caught.value.status) == ("bad_data", 400)

"""A real Prometheus for tests and benchmarks, scraping an exporter whose traffic the caller controls.

The exporter publishes the predictor's metric names and labels (``planet_request_duration_seconds``,
``planet_errors_total``, ``planet_quality_score``); a background thread observes requests for every
revision in :attr:`MetricsFeed.profiles`, so a test can make a canary healthy, erroring or slow and
let the operator find out through real PromQL. Used by the canary-rollout tests
(``tests/operator/test_rollouts.py``); nothing in the product imports it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import prometheus_client

from planet_harness.processes import free_port

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
QUALITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one revision's predictor reports per request."""

    latency: float = 0.8
    queue: float = 0.05
    #: Share of requests failing with reason ``internal`` (counts against the canary).
    errors: float = 0.0
    quality: float = 0.8


class MetricsFeed:
    """An exporter on 127.0.0.1 fed ``rate`` requests/s for each revision in :attr:`profiles`."""

    def __init__(self, *, pipeline: str, rate: float = 20.0) -> None:
        self.pipeline = pipeline
        self.rate = rate
        self.profiles: dict[str, Profile] = {}
        self.registry = prometheus_client.CollectorRegistry()
        labels = ["pipeline", "revision", "lane"]
        self._errors = prometheus_client.Counter(
            "planet_errors", "", [*labels, "reason"], registry=self.registry
        )
        self._duration = prometheus_client.Histogram(
            "planet_request_duration_seconds", "", [*labels, "stage"], buckets=BUCKETS, registry=self.registry
        )
        # A histogram, as the predictors export it (the analysis reads its mean over the window).
        self._quality = prometheus_client.Histogram(
            "planet_quality_score", "", labels, buckets=QUALITY_BUCKETS, registry=self.registry
        )
        self.port = free_port()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-feed", daemon=True)
        self._server: object | None = None

    def __enter__(self) -> MetricsFeed:
        self._server, _ = prometheus_client.start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        shutdown = getattr(self._server, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def _run(self) -> None:
        owed: dict[str, float] = {}
        tick = 0.1
        while not self._stop.wait(tick):
            for revision, profile in list(self.profiles.items()):
                lane = (self.pipeline, revision, "final")
                owed[revision] = owed.get(revision, 0.0)
                for _ in range(max(1, round(self.rate * tick))):
                    self._quality.labels(*lane).observe(profile.quality)
                    self._duration.labels(*lane, "total").observe(profile.latency)
                    self._duration.labels(*lane, "queue").observe(profile.queue)
                    # Whole errors spread evenly, so the rates come out exact.
                    owed[revision] += profile.errors
                    if owed[revision] >= 1:
                        owed[revision] -= 1
                        self._errors.labels(*lane, "internal").inc()


class PrometheusServer:
    """``prometheus`` (the real binary) on 127.0.0.1, scraping ``targets`` every second."""

    def __init__(self, *, targets: list[str], workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package `prometheus`)")
        self.binary = binary
        self.targets = targets
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        targets = ", ".join(f"'{t}'" for t in self.targets)
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: planet\n    static_configs: [{{targets: [{targets}]}}]\n"
        )
        with (self.workdir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready(timeout=30.0)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"prometheus did not become ready on {self.url}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()

"""Prometheus metrics shared by every predictor (names are a contract with the operator).

KServe 0.21 serves ``prometheus_client.REGISTRY`` at ``GET /metrics`` on the HTTP port, so metrics
are registered there unless a test passes its own registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from planet_predictors.serving import errors

STAGES = ("queue", "encode_prompt", "denoise", "decode", "encode_image", "total")
#: Seconds; image generation spans 10 ms (encoding) to minutes (30 steps at 1536x640 on CPU).
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
#: The verifier's score in [0, 1], in tenths (``+Inf`` is added by the client library).
QUALITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class Metrics:
    """The ``planet_*`` families, pre-labelled with pipeline, revision and component.

    ``component`` (generate or upscale) lets the autoscaler query one InferenceService's queue:
    both predictors of a pipeline export the same names with the same pipeline label.
    """

    def __init__(
        self,
        *,
        pipeline: str,
        revision: str,
        component: str = "generate",
        registry: CollectorRegistry | None = None,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.pipeline = pipeline
        self.revision = revision
        self.component = component
        self._base = (pipeline, revision, component)
        base = ["pipeline", "revision", "component"]
        self.queue_depth = Gauge(
            "planet_queue_depth", "Requests queued, not yet running.", [*base, "lane"], registry=registry
        )
        self.inflight = Gauge(
            "planet_inflight_requests", "Requests running on the backend.", [*base, "lane"], registry=registry
        )
        self.duration = Histogram(
            "planet_request_duration_seconds",
            "Request latency by stage.",
            [*base, "lane", "stage"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "planet_batch_size", "Requests per backend batch.", base, buckets=BATCH_BUCKETS, registry=registry
        )
        self.images = Counter("planet_images", "Images returned.", [*base, "lane"], registry=registry)
        self.errors = Counter(
            "planet_errors", "Failed requests by reason.", [*base, "reason"], registry=registry
        )
        self.quality = Histogram(
            "planet_quality_score",
            "The verifier's score of each image returned, in [0, 1].",
            [*base, "lane"],
            buckets=QUALITY_BUCKETS,
            registry=registry,
        )
        self.redraws = Counter(
            "planet_redraws",
            "Images drawn again because the verifier found them short of generation.regenerate.",
            [*base, "lane"],
            registry=registry,
        )
        self.engine_load = Gauge(
            "planet_engine_load_seconds",
            "Seconds to load and warm the backend.",
            [*base, "backend"],
            registry=registry,
        )

    def set_queue_depth(self, lane: str, depth: int) -> None:
        """Record how many requests wait in ``lane``."""
        self.queue_depth.labels(*self._base, lane).set(depth)

    def add_inflight(self, lane: str, delta: int) -> None:
        """Count requests entering (+) or leaving (-) the backend."""
        self.inflight.labels(*self._base, lane).inc(delta)

    def observe(self, lane: str, stage: str, seconds: float) -> None:
        """Record one stage's latency for one request."""
        self.duration.labels(*self._base, lane, stage).observe(seconds)

    def observe_batch(self, size: int) -> None:
        """Record one backend batch."""
        self.batch_size.labels(*self._base).observe(size)

    def count_images(self, lane: str, n: int = 1) -> None:
        """Count images returned to clients."""
        self.images.labels(*self._base, lane).inc(n)

    def count_error(self, reason: str) -> None:
        """Count one failed request (``planet_errors_total{reason}``)."""
        self.errors.labels(*self._base, reason).inc()

    def observe_quality(self, lane: str, score: float) -> None:
        """Record the verifier's score of one image returned in ``lane``."""
        self.quality.labels(*self._base, lane).observe(score)

    def count_redraws(self, lane: str, n: int) -> None:
        """Count ``n`` images of ``lane`` drawn again (generation.regenerate)."""
        self.redraws.labels(*self._base, lane).inc(n)

    def set_engine_load(self, backend: str, seconds: float) -> None:
        """Record the backend's load + warm-up time."""
        self.engine_load.labels(*self._base, backend).set(seconds)

    def prime(self, lanes: list[str]) -> None:
        """Export zeros at start so rate() and the autoscaler see series before the first request."""
        for lane in lanes:
            self.set_queue_depth(lane, 0)
            self.inflight.labels(*self._base, lane).set(0)
            self.images.labels(*self._base, lane)
            self.duration.labels(*self._base, lane, "total")
            self.quality.labels(*self._base, lane)
            self.redraws.labels(*self._base, lane)
        for reason in errors.REASONS:
            self.errors.labels(*self._base, reason)

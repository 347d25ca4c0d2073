"""Canary analysis: PromQL over the predictor's metrics, judged against ``spec.rollout.analysis``.

Each query returns one number for the canary revision over a window, or nothing. Metrics (the
predictor contract): ``planet_errors_total{pipeline,revision,lane,reason}``,
``planet_request_duration_seconds{pipeline,revision,lane,stage}`` (histogram; ``stage="total"``
is observed once per finished request, failed ones included) and
``planet_quality_score{pipeline,revision,lane}`` (histogram of the verifier's score in [0, 1], one
observation per image returned).
``namespace`` is added by the cluster's scrape config, so its matcher is optional.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
import string
from collections.abc import Mapping
from typing import Literal

from planet_contracts.api import spec as api
from planet_operator.rollout import durations, prometheus

Verdict = Literal["pass", "fail", "inconclusive"]
Metric = Literal["error_rate", "p95_latency_seconds", "queue_seconds", "quality_score"]

#: Error reasons left out of the error rate: the client's mistake (400) and backpressure (429).
EXCLUDED_ERROR_REASONS = ("bad_request", "queue_full")

#: ``string.Template``s (PromQL is full of braces); ``$selector`` is the label matchers of the
#: canary, ``$window`` a range such as ``60s``.
DEFAULT_TEMPLATES: Mapping[Metric, str] = {
    # No error series yet means no errors, not no data: hence ``or vector(0)``. No requests gives
    # an empty or NaN result, which counts as no data.
    "error_rate": (
        '(sum(rate(planet_errors_total{$selector,reason!~"'
        + "|".join(EXCLUDED_ERROR_REASONS)
        + '"}[$window]))'
        " or vector(0))"
        ' / sum(rate(planet_request_duration_seconds_count{$selector,stage="total"}[$window]))'
    ),
    "p95_latency_seconds": (
        "histogram_quantile(0.95, sum by (le) "
        '(rate(planet_request_duration_seconds_bucket{$selector,stage="total"}[$window])))'
    ),
    # The mean, not p95: queue wait is 0 or large, and a sustained backlog is what this gate is for.
    "queue_seconds": (
        'sum(rate(planet_request_duration_seconds_sum{$selector,stage="queue"}[$window]))'
        ' / sum(rate(planet_request_duration_seconds_count{$selector,stage="queue"}[$window]))'
    ),
    # The mean score of the images returned in the window (all lanes): no images gives NaN, no data.
    "quality_score": (
        "sum(rate(planet_quality_score_sum{$selector}[$window]))"
        " / sum(rate(planet_quality_score_count{$selector}[$window]))"
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """Whose metrics: the canary revision of one pipeline."""

    pipeline: str
    revision: str
    #: None leaves the namespace matcher out (a scrape that adds no namespace label).
    namespace: str | None = None
    namespace_label: str = "namespace"

    def selector(self) -> str:
        """PromQL label matchers, without braces."""
        labels = {"pipeline": self.pipeline, "revision": self.revision}
        if self.namespace is not None:
            labels = {self.namespace_label: self.namespace, **labels}
        return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One metric against its threshold; ``passed`` is None when there was no data."""

    metric: str
    value: float | None
    threshold: float
    bound: Literal["max", "min"]
    passed: bool | None
    error: str | None = None

    def describe(self) -> str:
        """E.g. ``error_rate 0.12 > max 0.01`` or ``quality_score no data``."""
        if self.value is None:
            return f"{self.metric} no data" + (f" ({self.error})" if self.error else "")
        sign = ("<=" if self.passed else ">") if self.bound == "max" else (">=" if self.passed else "<")
        return f"{self.metric} {self.value:.4g} {sign} {self.bound} {self.threshold:.4g}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnalysisResult:
    """All checks of one analysis run, and the verdict: any failure fails, else any gap is inconclusive."""

    checks: tuple[CheckResult, ...]
    verdict: Verdict
    time: datetime.datetime

    @property
    def reason(self) -> str:
        """The checks that decided the verdict, e.g. ``error_rate 0.12 > max 0.01``."""
        wanted = {"pass": True, "fail": False, "inconclusive": None}[self.verdict]
        return "; ".join(c.describe() for c in self.checks if c.passed is wanted)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Threshold:
    """A metric's limit from the spec."""

    metric: Metric
    value: float
    bound: Literal["max", "min"]


def thresholds(spec: api.AnalysisSpec) -> tuple[Threshold, ...]:
    """The checks ``spec`` asks for; quality only when ``minQualityScore`` is set."""
    found = [
        Threshold(metric="error_rate", value=spec.max_error_rate, bound="max"),
        Threshold(metric="p95_latency_seconds", value=spec.max_p95_latency_seconds, bound="max"),
        Threshold(metric="queue_seconds", value=spec.max_queue_seconds, bound="max"),
    ]
    if spec.min_quality_score is not None:
        found.append(Threshold(metric="quality_score", value=spec.min_quality_score, bound="min"))
    return tuple(found)


def window_seconds(spec: api.AnalysisSpec, *, min_seconds: float = 60.0) -> float:
    """The query range: the interval, but at least ``min_seconds``.

    ``rate()`` needs several scrapes in its range (Prometheus advises 4x the scrape interval), so a
    short analysis interval must not shrink the range below that.
    """
    return max(durations.parse_duration(spec.interval), min_seconds)


def render(
    *, metric: Metric, target: Target, window: float, templates: Mapping[Metric, str] | None = None
) -> str:
    """The PromQL for ``metric`` of ``target`` over ``window`` seconds."""
    template = (templates or {}).get(metric) or DEFAULT_TEMPLATES[metric]
    return string.Template(template).substitute(
        selector=target.selector(),
        window=durations.format_seconds(window),
        namespace=target.namespace or "",
        pipeline=target.pipeline,
        revision=target.revision,
    )


def evaluate(
    *,
    spec: api.AnalysisSpec,
    values: Mapping[str, float | None],
    time: datetime.datetime,
    errors: Mapping[str, str] | None = None,
) -> AnalysisResult:
    """Judge measured ``values`` (None or NaN = no data) against ``spec``'s thresholds."""
    checks = []
    for limit in thresholds(spec):
        value = values.get(limit.metric)
        if value is not None and math.isnan(value):
            value = None  # 0/0: no traffic in the window
        passed = (
            None
            if value is None
            else (value <= limit.value if limit.bound == "max" else value >= limit.value)
        )
        checks.append(
            CheckResult(
                metric=limit.metric,
                value=value,
                threshold=limit.value,
                bound=limit.bound,
                passed=passed,
                error=(errors or {}).get(limit.metric),
            )
        )
    verdict: Verdict = (
        "fail"
        if any(c.passed is False for c in checks)
        else "inconclusive"
        if any(c.passed is None for c in checks)
        else "pass"
    )
    return AnalysisResult(checks=tuple(checks), verdict=verdict, time=time)


async def analyse(
    *,
    client: prometheus.PrometheusClient,
    spec: api.AnalysisSpec,
    target: Target,
    now: datetime.datetime,
    min_window_seconds: float = 60.0,
    templates: Mapping[Metric, str] | None = None,
) -> AnalysisResult:
    """Run every check's query at ``now`` and evaluate the results.

    A query that fails (Prometheus down, bad template) or returns several series counts as no data,
    with the error kept on the check: it holds the rollout and, past ``inconclusiveLimit``, fails it.
    """
    window = window_seconds(spec, min_seconds=min_window_seconds)
    limits = thresholds(spec)
    queries = [render(metric=t.metric, target=target, window=window, templates=templates) for t in limits]
    answers = await asyncio.gather(*(client.query(q, time=now) for q in queries), return_exceptions=True)
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for limit, answer in zip(limits, answers, strict=True):
        if isinstance(answer, prometheus.PrometheusError):
            values[limit.metric], errors[limit.metric] = None, str(answer)
        elif isinstance(answer, BaseException):
            raise answer
        elif len(answer) > 1:
            values[limit.metric], errors[limit.metric] = (
                None,
                f"query returned {len(answer)} series, expected one",
            )
        else:
            values[limit.metric] = answer[0].value if answer else None
    return evaluate(spec=spec, values=values, time=now, errors=errors)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

import datetime

import pytest

from planet_contracts.api import spec as api
from planet_operator.rollout import analysis

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def test_queries_select_the_canary_and_exclude_client_errors() -> None:
    target = analysis.Target(pipeline="planets", revision="abc123", namespace="ml")
    query = analysis.render(metric="error_rate", target=target, window=60)
    assert 'namespace="ml",pipeline="planets",revision="abc123"' in query
    assert 'reason!~"bad_request|queue_full"' in query
    assert "[60s]" in query
    assert "or vector(0)" in query


def test_namespace_matcher_is_optional_and_renamable() -> None:
    bare = analysis.Target(pipeline="p", revision="r")
    assert bare.selector() == 'pipeline="p",revision="r"'
    renamed = analysis.Target(
        pipeline="p", revision="r", namespace="ml", namespace_label="kubernetes_namespace"
    )
    assert renamed.selector().startswith('kubernetes_namespace="ml",')
    assert analysis.Target(pipeline='a"b', revision="r").selector() == 'pipeline="a\\"b",revision="r"'


def test_quality_is_the_mean_of_the_histogram_over_the_window() -> None:
    target = analysis.Target(pipeline="p", revision="r", namespace="ml")
    query = analysis.render(metric="quality_score", target=target, window=120)
    selector = 'namespace="ml",pipeline="p",revision="r"'
    assert query == (
        f"sum(rate(planet_quality_score_sum{{{selector}}}[120s]))"
        f" / sum(rate(planet_quality_score_count{{{selector}}}[120s]))"
    )


def test_templates_can_be_overridden() -> None:
    target = analysis.Target(pipeline="p", revision="r")
    query = analysis.render(
        metric="quality_score",
        target=target,
        window=2.5,
        templates={"quality_score": "min(my_score{$selector}[$window]) # $revision"},
    )
    assert query == 'min(my_score{pipeline="p",revision="r"}[2500ms]) # r'


def test_window_is_at_least_the_minimum() -> None:
    assert analysis.window_seconds(api.AnalysisSpec(interval="2s"), min_seconds=5) == 5
    assert analysis.window_seconds(api.AnalysisSpec(interval="5m")) == 300


def test_evaluate_reports_each_failure_with_its_threshold() -> None:
    spec = api.AnalysisSpec(max_error_rate=0.01, max_p95_latency_seconds=30, min_quality_score=0.6)
    found = analysis.evaluate(
        spec=spec,
        values={"error_rate": 0.12, "p95_latency_seconds": 45.0, "queue_seconds": 0.5, "quality_score": 0.41},
        time=NOW,
    )
    assert found.verdict == "fail"
    assert (
        found.reason
        == "error_rate 0.12 > max 0.01; p95_latency_seconds 45 > max 30; quality_score 0.41 < min 0.6"
    )
    assert [c.passed for c in found.checks] == [False, False, True, False]


def test_nan_and_missing_values_are_no_data() -> None:
    found = analysis.evaluate(
        spec=api.AnalysisSpec(),
        values={"error_rate": float("nan"), "p95_latency_seconds": 1.0},
        time=NOW,
        errors={"queue_seconds": "timeout"},
    )
    assert found.verdict == "inconclusive"
    assert found.reason == "error_rate no data; queue_seconds no data (timeout)"


def test_a_failure_outweighs_missing_data() -> None:
    found = analysis.evaluate(spec=api.AnalysisSpec(), values={"error_rate": 0.5}, time=NOW)
    assert found.verdict == "fail"


def test_quality_is_checked_only_when_asked_for() -> None:
    assert [t.metric for t in analysis.thresholds(api.AnalysisSpec())] == [
        "error_rate",
        "p95_latency_seconds",
        "queue_seconds",
    ]
    values = {"error_rate": 0.0, "p95_latency_seconds": 1.0, "queue_seconds": 0.0}
    assert analysis.evaluate(spec=api.AnalysisSpec(), values=values, time=NOW).verdict == "pass"


@pytest.mark.parametrize("value", [0.01, 0.0])
def test_a_value_at_the_threshold_passes(value: float) -> None:
    spec = api.AnalysisSpec(max_error_rate=value)
    values = {"error_rate": value, "p95_latency_seconds": 1.0, "queue_seconds": 0.0}
    assert analysis.evaluate(spec=spec, values=values, time=NOW).verdict == "pass"

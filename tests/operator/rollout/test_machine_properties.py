import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from planet_contracts.api import spec as api
from planet_operator.rollout import analysis, machine

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
VALUES = {
    "pass": {"error_rate": 0.0, "p95_latency_seconds": 1.0, "queue_seconds": 0.0},
    "fail": {"error_rate": 0.5, "p95_latency_seconds": 1.0, "queue_seconds": 0.0},
    "inconclusive": {},
}

pauses = st.one_of(
    st.none(), st.just(api.Pause()), st.sampled_from(["10s", "1m", "5m"]).map(lambda d: api.Pause(duration=d))
)
specs = st.builds(
    lambda weights, pause_list, limit: api.RolloutSpec(
        steps=[api.RolloutStep(weight=w, pause=p) for w, p in zip(sorted(weights), pause_list, strict=False)],
        analysis=api.AnalysisSpec(interval="30s", failure_limit=limit, inconclusive_limit=limit),
    ),
    st.sets(st.integers(1, 100), min_size=1, max_size=6),
    st.lists(pauses, min_size=6, max_size=6),
    st.integers(0, 3),
)
events = st.lists(
    st.tuples(
        st.integers(0, 400),
        st.sampled_from([None, "pass", "pass", "pass", "fail", "inconclusive"]),
        st.sampled_from(["none"] * 8 + ["pause", "resume", "promote", "abort"]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(spec=specs, automatic=st.booleans(), script=events)
def test_weights_only_grow_until_the_rollout_ends(
    spec: api.RolloutSpec, automatic: bool, script: list[tuple[int, str | None, str]]
) -> None:
    now = T0
    decision = machine.decide(
        spec=spec, rollback=api.RollbackSpec(automatic=automatic), state=None, now=now, analysis=None
    )
    weight = decision.traffic_percent
    assert weight == spec.steps[0].weight
    for delay, verdict, command in script:
        now += datetime.timedelta(seconds=delay)
        result = None
        if verdict is not None:
            result = analysis.evaluate(spec=spec.analysis, values=VALUES[verdict], time=now)
        previous = decision.state
        decision = machine.decide(
            spec=spec,
            rollback=api.RollbackSpec(automatic=automatic),
            state=previous,
            now=now,
            analysis=result,
            commands=machine.Commands(**({command: True} if command != "none" else {})),  # type: ignore[arg-type]
        )
        new = decision.traffic_percent
        assert new is None or 0 <= new <= 100
        if decision.outcome in ("rollback", "abort"):
            assert new == 0
            assert decision.outcome == "abort" or automatic
            return
        if decision.outcome == "promote":
            assert new == 100
            assert command == "promote" or (verdict == "pass" and previous.step == len(spec.steps) - 1)
            return
        if new is not None:
            assert weight is not None
            assert new > weight
            # One step at a time, never skipped.
            assert decision.state.step == previous.step + 1
            assert new == spec.steps[decision.state.step].weight
            weight = new
        assert machine.canary_weight(spec=spec, state=decision.state) == weight

import datetime

import pytest

from planet_contracts.api import spec as api
from planet_contracts.api import status as api_status
from planet_operator.rollout import analysis, machine

T0 = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)
LIMITS = api.AnalysisSpec(interval="1m", failure_limit=1, inconclusive_limit=2)
AUTO = api.RollbackSpec(automatic=True)
VALUES = {
    "pass": {"error_rate": 0.001, "p95_latency_seconds": 2.0, "queue_seconds": 0.1},
    "fail": {"error_rate": 0.12, "p95_latency_seconds": 2.0, "queue_seconds": 0.1},
    "inconclusive": {"error_rate": float("nan"), "p95_latency_seconds": None, "queue_seconds": None},
}


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def result(verdict: str, seconds: float) -> analysis.AnalysisResult:
    found = analysis.evaluate(spec=LIMITS, values=VALUES[verdict], time=at(seconds))
    assert found.verdict == verdict
    return found


def rollout(*steps: api.RolloutStep) -> api.RolloutSpec:
    return api.RolloutSpec(steps=list(steps), analysis=LIMITS)


def step(weight: int, pause: str | bool | None = False) -> api.RolloutStep:
    """pause False: none; None: indefinite; a string: timed."""
    return api.RolloutStep(weight=weight, pause=None if pause is False else api.Pause(duration=pause))


TIMED = rollout(step(10, "5m"), step(50, None), step(80))


def run(
    spec: api.RolloutSpec,
    state: api_status.RolloutState | None,
    seconds: float,
    verdict: str | None = None,
    rollback: api.RollbackSpec = AUTO,
    **commands: object,
) -> machine.Decision:
    return machine.decide(
        spec=spec,
        rollback=rollback,
        state=state,
        now=at(seconds),
        analysis=None if verdict is None else result(verdict, seconds),
        commands=machine.Commands(**commands),  # type: ignore[arg-type]
    )


def test_start_sends_first_weight_and_schedules_analysis() -> None:
    first = run(TIMED, None, 0)
    assert (first.outcome, first.traffic_percent, first.state.step) == ("continue", 10, 0)
    assert first.state.step_started == T0.isoformat()
    assert machine.requeue_after(spec=TIMED, state=first.state, now=at(0)) == 60
    assert not machine.analysis_due(spec=TIMED, state=first.state, now=at(59))
    assert machine.analysis_due(spec=TIMED, state=first.state, now=at(60))


def test_timed_pause_advances_only_when_elapsed_and_passing() -> None:
    state = run(TIMED, None, 0).state
    early = run(TIMED, state, 60, "pass")
    assert (early.outcome, early.traffic_percent, early.state.step) == ("continue", None, 0)
    assert "paused 240s more" in early.reason
    # Elapsed but failing: no advance.
    failing = run(TIMED, early.state, 300, "fail")
    assert (failing.outcome, failing.traffic_percent, failing.state.step) == ("hold", None, 0)
    assert failing.state.failed_checks == 1
    advanced = run(TIMED, failing.state, 360, "pass")
    assert (advanced.outcome, advanced.traffic_percent, advanced.state.step) == ("continue", 50, 1)
    assert advanced.state.step_started == at(360).isoformat()


def test_pause_ending_between_analyses_is_checked_at_its_end() -> None:
    spec = rollout(step(10, "90s"), step(50))
    state = run(spec, run(spec, None, 0).state, 60, "pass").state
    assert machine.next_analysis_at(spec=spec, state=state) == at(90)
    advanced = run(spec, state, 90, "pass")
    assert advanced.traffic_percent == 50
    # Step 2 has no pause: one passing analysis an interval later promotes.
    assert machine.requeue_after(spec=spec, state=advanced.state, now=at(90)) == 60
    done = run(spec, advanced.state, 150, "pass")
    assert (done.outcome, done.traffic_percent) == ("promote", 100)


def test_indefinite_pause_waits_for_manual_promote() -> None:
    state = run(TIMED, run(TIMED, None, 0).state, 300, "pass").state
    assert state.step == 1
    for seconds in (360, 420, 3600):
        held = run(TIMED, state, seconds, "pass")
        assert (held.outcome, held.traffic_percent) == ("hold", None)
        assert "waiting for promote" in held.reason
        state = held.state
    promoted = run(TIMED, state, 3700, promote=True)
    assert (promoted.outcome, promoted.traffic_percent, promoted.handled) == (
        "promote",
        100,
        (machine.PROMOTE,),
    )


def test_pause_freezes_weight_but_failures_still_roll_back() -> None:
    state = run(TIMED, None, 0).state
    paused = run(TIMED, state, 300, "pass", pause=True)
    assert (paused.outcome, paused.traffic_percent, paused.state.paused) == ("hold", None, True)
    assert paused.handled == (machine.PAUSE,)
    # Past the pause and passing: still frozen. No data while paused does not count.
    state = run(TIMED, paused.state, 360, "pass").state
    state = run(TIMED, state, 420, "inconclusive").state
    state = run(TIMED, state, 480, "inconclusive").state
    state = run(TIMED, state, 540, "inconclusive").state
    assert (state.step, state.inconclusive_checks) == (0, 0)
    resumed = run(TIMED, state, 600, "pass", resume=True)
    assert (resumed.outcome, resumed.traffic_percent, resumed.state.paused) == ("continue", 50, False)

    state = run(TIMED, run(TIMED, None, 0).state, 10, pause=True).state
    state = run(TIMED, state, 60, "fail").state
    failed = run(TIMED, state, 120, "fail")
    assert (failed.outcome, failed.traffic_percent) == ("rollback", 0)


def test_abort_and_rollback_to_send_traffic_back_to_stable() -> None:
    state = run(TIMED, run(TIMED, None, 0).state, 300, "pass").state
    aborted = run(TIMED, state, 310, "pass", abort=True, promote=True)
    assert (aborted.outcome, aborted.traffic_percent, aborted.reason) == ("abort", 0, "aborted by user")
    assert set(aborted.handled) == {machine.ABORT, machine.PROMOTE}
    back = run(TIMED, state, 310, rollback_to="rev-abc")
    assert (back.outcome, back.traffic_percent, back.handled) == ("abort", 0, (machine.ROLLBACK_TO,))
    assert "rev-abc" in back.reason


def test_failures_past_the_limit_roll_back_with_the_failing_check() -> None:
    state = run(TIMED, None, 0).state
    first = run(TIMED, state, 60, "fail")
    assert (first.outcome, first.traffic_percent) == ("hold", None)
    second = run(TIMED, first.state, 120, "fail")
    assert (second.outcome, second.traffic_percent) == ("rollback", 0)
    assert "error_rate 0.12 > max 0.01" in second.reason
    assert "analysis failed 2 times (limit 1)" in second.reason


def test_without_automatic_rollback_a_failed_rollout_waits_for_a_human() -> None:
    manual = api.RollbackSpec(automatic=False)
    state = run(TIMED, None, 0, rollback=manual).state
    state = run(TIMED, state, 60, "fail", rollback=manual).state
    held = run(TIMED, state, 120, "fail", rollback=manual)
    assert (held.outcome, held.traffic_percent) == ("hold", None)
    assert held.reason.startswith(machine.MANUAL_DECISION)
    # Passing later changes nothing and the message does not grow.
    again = run(TIMED, held.state, 300, "pass", rollback=manual)
    assert (again.outcome, again.state.step, again.reason) == ("hold", 0, held.reason)
    retried = run(TIMED, again.state, 360, "pass", rollback=manual, resume=True)
    assert (retried.outcome, retried.traffic_percent, retried.state.failed_checks) == ("continue", 50, 0)


def test_no_data_holds_then_fails_after_the_limit() -> None:
    state = run(TIMED, None, 0).state
    for n, seconds in enumerate((60, 120), start=1):
        decision = run(TIMED, state, seconds, "inconclusive")
        assert (decision.outcome, decision.state.inconclusive_checks) == ("hold", n)
        assert "error_rate no data" in decision.reason
        state = decision.state
    # A passing check resets the consecutive count.
    state = run(TIMED, state, 180, "pass").state
    assert state.inconclusive_checks == 0
    for seconds in (240, 300):
        state = run(TIMED, state, seconds, "inconclusive").state
    failed = run(TIMED, state, 360, "inconclusive")
    assert (failed.outcome, failed.traffic_percent) == ("rollback", 0)
    assert "no data in 3 checks in a row (limit 2)" in failed.reason


def test_restart_resumes_at_the_same_step_and_replays_count_once() -> None:
    spec = rollout(step(10), step(20), step(30))
    state = run(spec, run(spec, None, 0).state, 60, "pass").state
    assert state.step == 1
    # The operator restarts: status goes through the API server as JSON and comes back.
    wire = api_status.PlanetPipelineStatus(rollout=state).model_dump(mode="json", by_alias=True)
    restored = api_status.PlanetPipelineStatus.model_validate(wire).rollout
    assert restored == state
    assert machine.canary_weight(spec=spec, state=restored) == 20
    # The same analysis replayed (same time) after the restart does not skip step 2.
    replay = run(spec, restored, 60, "pass")
    assert (replay.outcome, replay.traffic_percent, replay.state.step) == ("continue", None, 1)
    # Nor does a reconcile without analysis; the step's own analysis is due an interval later.
    assert machine.requeue_after(spec=spec, state=restored, now=at(61)) == 59
    later = run(spec, restored, 120, "pass")
    assert (later.traffic_percent, later.state.step) == (30, 2)


def test_decide_does_not_mutate_its_input() -> None:
    state = run(TIMED, None, 0).state
    before = state.model_copy(deep=True)
    run(TIMED, state, 60, "fail", pause=True)
    assert state == before


def test_empty_steps_promote_at_once() -> None:
    decision = run(rollout(), None, 0)
    assert (decision.outcome, decision.traffic_percent) == ("promote", 100)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        machine.decide(
            spec=TIMED, rollback=AUTO, state=None, now=datetime.datetime(2025, 1, 1), analysis=None
        )


def test_commands_from_annotations() -> None:
    found = machine.commands_from_annotations(
        {machine.PROMOTE: "true", machine.PAUSE: "false", machine.ROLLBACK_TO: "rev-1", "other": "x"}
    )
    assert found == machine.Commands(promote=True, rollback_to="rev-1")
    assert machine.commands_from_annotations(None) == machine.Commands()
    assert found.annotations() == (machine.PROMOTE, machine.ROLLBACK_TO)

"""The canary rollout state machine: pure (no I/O, no clock), Flagger / Argo Rollouts style.

On every reconcile of a pipeline with a canary, a handler:

1. runs an analysis only when :func:`analysis_due` says so, and passes the result (else None);
2. calls :func:`decide` with the persisted ``status.rollout``, the time and the annotation commands;
3. applies ``traffic_percent`` (None: leave it), persists ``state`` (clearing it after
   ``promote``/``rollback``/``abort``), removes the ``handled`` annotations;
4. requeues after :func:`requeue_after`.

Counting rules: ``failed_checks`` counts failed analyses over the whole rollout, and more than
``failureLimit`` of them ends it; ``inconclusive_checks`` counts *consecutive* checks without data,
and more than ``inconclusiveLimit`` ends it. While paused, the canary still takes traffic, so failed
checks still count and still roll back; checks without data do not count (a human is looking).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Literal

from planet_contracts.api import spec as api
from planet_contracts.api import status as api_status
from planet_operator.rollout import analysis as analysis_mod
from planet_operator.rollout import durations

Outcome = Literal["continue", "promote", "rollback", "abort", "hold"]

PROMOTE = "planetgen.io/promote"
PAUSE = "planetgen.io/pause"
RESUME = "planetgen.io/resume"
ABORT = "planetgen.io/abort"
ROLLBACK_TO = "planetgen.io/rollback-to"
#: Prefix of the message persisted while a failed rollout waits for a human (rollback.automatic false).
MANUAL_DECISION = "analysis failed, waiting for a manual decision"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Commands:
    """Manual commands, read from annotations by :func:`commands_from_annotations`."""

    promote: bool = False
    pause: bool = False
    resume: bool = False
    abort: bool = False
    #: Revision to restore; the machine aborts the canary, the handler restores that revision.
    rollback_to: str | None = None

    def annotations(self) -> tuple[str, ...]:
        """The annotation keys these commands came from."""
        flags = ((PROMOTE, self.promote), (PAUSE, self.pause), (RESUME, self.resume), (ABORT, self.abort))
        keys = [key for key, on in flags if on]
        return (*keys, ROLLBACK_TO) if self.rollback_to else tuple(keys)


def commands_from_annotations(annotations: Mapping[str, str] | None) -> Commands:
    """Commands present in ``annotations``; ``"false"``, ``"0"`` or an empty value means absent."""
    found = annotations or {}

    def on(key: str) -> bool:
        return key in found and found[key].strip().lower() not in ("", "false", "0")

    target = found.get(ROLLBACK_TO, "").strip()
    return Commands(
        promote=on(PROMOTE), pause=on(PAUSE), resume=on(RESUME), abort=on(ABORT), rollback_to=target or None
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do now."""

    outcome: Outcome
    #: Percent of traffic the canary gets from now on; None leaves it as it is.
    traffic_percent: int | None
    #: The next ``status.rollout``.
    state: api_status.RolloutState
    #: For events and conditions, e.g. ``analysis failed 3 times (limit 2): error_rate 0.12 > max 0.01``.
    reason: str
    #: Annotation keys acted on: remove them so they act once.
    handled: tuple[str, ...] = ()


def decide(
    *,
    spec: api.RolloutSpec,
    rollback: api.RollbackSpec,
    state: api_status.RolloutState | None,
    now: datetime.datetime,
    analysis: analysis_mod.AnalysisResult | None,
    commands: Commands | None = None,
) -> Decision:
    """The next step of a rollout. ``state`` None (or never started) starts it at step 1.

    An analysis counts once: one not newer than the step's start or the last counted analysis is
    ignored, so replaying a reconcile cannot advance two steps.
    """
    _require_aware(now)
    commands = commands or Commands()
    handled = commands.annotations()
    current = state.model_copy() if state is not None else api_status.RolloutState()
    steps = spec.steps

    def make(outcome: Outcome, traffic: int | None, reason: str, **update: object) -> Decision:
        new = current.model_copy(update={"message": reason, **update})
        return Decision(outcome=outcome, traffic_percent=traffic, state=new, reason=reason, handled=handled)

    # 1. Manual exits win over everything, analysis included.
    if commands.abort or commands.rollback_to:
        reason = (
            f"rollback to {commands.rollback_to} requested" if commands.rollback_to else "aborted by user"
        )
        return make("abort", 0, reason)
    if commands.promote:
        return make("promote", 100, "promoted by user", step=len(steps), paused=False)

    # 2. Resume also retries a rollout held after failing (rollback.automatic false).
    if commands.resume:
        current.paused = False
        if _breach(spec.analysis, current):
            current.failed_checks = current.inconclusive_checks = 0
    elif commands.pause:
        current.paused = True

    # 3. Start at the first step.
    if current.step_started is None:
        if not steps:
            return make("promote", 100, "no canary steps", step=0)
        reason = _step_message(spec, 0)
        fresh = {"step": 0, "step_started": now.isoformat(), "failed_checks": 0, "inconclusive_checks": 0}
        return make("continue", steps[0].weight, reason, last_analysis=None, **fresh)
    index = min(current.step, len(steps) - 1)  # the spec lost steps mid-rollout: stay on the last
    current.step = index

    # 4. Count a new analysis.
    verdict = None
    if analysis is not None and _is_new(analysis.time, current):
        verdict = analysis.verdict
        current.last_analysis = analysis.time.isoformat()
        if verdict == "fail":
            current.failed_checks += 1
            current.inconclusive_checks = 0
        elif verdict == "pass":
            current.inconclusive_checks = 0
        elif not current.paused:
            current.inconclusive_checks += 1

    # 5. Past a limit: roll back, or wait for a human.
    breach = _breach(spec.analysis, current)
    if breach is not None:
        detail = f"{breach}: {analysis.reason}" if verdict is not None and analysis is not None else breach
        if rollback.automatic:
            return make("rollback", 0, detail)
        if current.message.startswith(MANUAL_DECISION):
            return make("hold", None, current.message)
        return make("hold", None, f"{MANUAL_DECISION}: {detail}")

    # 6. Hold, wait or advance.
    limits = spec.analysis
    if current.paused:
        return make("hold", None, "paused by user")
    if verdict == "fail" and analysis is not None:
        reason = (
            f"analysis failed ({current.failed_checks}/{limits.failure_limit} tolerated): {analysis.reason}"
        )
        return make("hold", None, reason)
    if verdict == "inconclusive" and analysis is not None:
        count = f"{current.inconclusive_checks}/{limits.inconclusive_limit} tolerated"
        return make("hold", None, f"no data ({count}): {analysis.reason}")
    step = steps[index]
    if step.pause is not None and step.pause.duration is None:
        return make("hold", None, f"{_step_message(spec, index)}, waiting for promote")
    if verdict is None:
        return make("continue", None, current.message)  # nothing new: no status write
    pause_end = _pause_end(spec, current)
    if pause_end is not None and now < pause_end:
        left = (pause_end - now).total_seconds()
        return make("continue", None, f"{_step_message(spec, index)}, paused {left:.0f}s more")
    if index + 1 == len(steps):
        return make("promote", 100, f"promoted: {len(steps)} steps passed analysis", step=len(steps))
    return make(
        "continue",
        steps[index + 1].weight,
        _step_message(spec, index + 1),
        step=index + 1,
        step_started=now.isoformat(),
        inconclusive_checks=0,
    )


def canary_weight(*, spec: api.RolloutSpec, state: api_status.RolloutState | None) -> int:
    """The canary's percent for ``state``: 0 before the start, 100 after the last step (level-based apply)."""
    if state is None or state.step_started is None:
        return 0
    if not spec.steps or state.step >= len(spec.steps):
        return 100
    return spec.steps[state.step].weight


def next_analysis_at(
    *, spec: api.RolloutSpec, state: api_status.RolloutState | None
) -> datetime.datetime | None:
    """When the next analysis is due: an interval after the step start or last analysis, or the pause end."""
    if state is None or state.step_started is None:
        return None
    started = _parse_time(state.step_started)
    last = _parse_time(state.last_analysis) if state.last_analysis else None
    due = max(started, last or started) + datetime.timedelta(
        seconds=durations.parse_duration(spec.analysis.interval)
    )
    pause_end = _pause_end(spec, state)
    # A pause ending between two analyses: check once more at its end instead of an interval later.
    if pause_end is not None and (last is None or last < pause_end):
        due = min(due, pause_end)
    return due


def analysis_due(
    *, spec: api.RolloutSpec, state: api_status.RolloutState | None, now: datetime.datetime
) -> bool:
    """Whether the handler should run an analysis before calling :func:`decide`."""
    _require_aware(now)
    due = next_analysis_at(spec=spec, state=state)
    return due is not None and now >= due


def requeue_after(
    *, spec: api.RolloutSpec, state: api_status.RolloutState | None, now: datetime.datetime
) -> float:
    """Seconds until the next analysis or pause end; 0 when :func:`decide` should run now."""
    _require_aware(now)
    due = next_analysis_at(spec=spec, state=state)
    return 0.0 if due is None else max(0.0, (due - now).total_seconds())


def _breach(limits: api.AnalysisSpec, state: api_status.RolloutState) -> str | None:
    if state.failed_checks > limits.failure_limit:
        return f"analysis failed {state.failed_checks} times (limit {limits.failure_limit})"
    if state.inconclusive_checks > limits.inconclusive_limit:
        return f"no data in {state.inconclusive_checks} checks in a row (limit {limits.inconclusive_limit})"
    return None


def _is_new(time: datetime.datetime, state: api_status.RolloutState) -> bool:
    _require_aware(time)
    if state.step_started is not None and time <= _parse_time(state.step_started):
        return False
    return state.last_analysis is None or time > _parse_time(state.last_analysis)


def _pause_end(spec: api.RolloutSpec, state: api_status.RolloutState) -> datetime.datetime | None:
    if state.step_started is None or not spec.steps:
        return None
    pause = spec.steps[min(state.step, len(spec.steps) - 1)].pause
    if pause is None or pause.duration is None:
        return None
    return _parse_time(state.step_started) + datetime.timedelta(
        seconds=durations.parse_duration(pause.duration)
    )


def _step_message(spec: api.RolloutSpec, index: int) -> str:
    return f"step {index + 1}/{len(spec.steps)}: {spec.steps[index].weight}% to the canary"


def _parse_time(text: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _require_aware(time: datetime.datetime) -> None:
    if time.tzinfo is None:
        raise ValueError("times must be timezone-aware (datetime.now(datetime.UTC))")

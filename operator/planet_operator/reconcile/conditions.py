"""Kubernetes-style conditions that keep their transition time while nothing changes."""

from __future__ import annotations

from typing import Literal

from planet_contracts.api.status import Condition


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: bool | None,
    reason: str,
    message: str = "",
    now: str,
    generation: int | None,
) -> list[Condition]:
    """A copy of ``conditions`` with ``type`` set; ``lastTransitionTime`` moves only when status does."""
    value: Literal["True", "False", "Unknown"] = (
        "Unknown" if status is None else ("True" if status else "False")
    )

    def made(transition: str | None) -> Condition:
        return Condition(
            type=type,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=transition,
            observed_generation=generation,
        )

    out: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.type != type:
            out.append(condition)
            continue
        found = True
        out.append(made(now if condition.status != value else condition.last_transition_time))
    if not found:
        out.append(made(now))
    return out


def get(conditions: list[Condition], type: str) -> Condition | None:
    """The condition of ``type``, if any."""
    return next((c for c in conditions if c.type == type), None)

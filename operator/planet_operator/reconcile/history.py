"""Revision history: ControllerRevisions (exact specs, for rollback) and ``status.history``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from planet_contracts.api import validation
from planet_contracts.api.spec import PlanetPipelineSpec
from planet_contracts.api.status import HistoryEntry
from planet_operator.builders import names
from planet_operator.reconcile.observe import Body


def controller_revision(
    *,
    pipeline: str,
    namespace: str,
    revision: str,
    spec: Mapping[str, Any],
    version: str | None,
    number: int,
    owner: dict[str, Any],
) -> dict[str, Any]:
    """An apps/v1 ControllerRevision holding the spec of ``revision`` exactly as the user wrote it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": names.controller_revision(pipeline, revision),
            "namespace": namespace,
            "labels": names.labels(pipeline, revision),
            "ownerReferences": [owner],
        },
        "data": {"spec": dict(spec), "version": version},
        "revision": number,
    }


def raw_spec_of(revision: Body) -> dict[str, Any]:
    """The spec stored in a ControllerRevision, as written."""
    data = revision.get("data") or {}
    if isinstance(data, str):  # some clients store data as a JSON string
        data = json.loads(data)
    return dict(data["spec"])


def spec_of(revision: Body) -> PlanetPipelineSpec:
    """The validated spec stored in a ControllerRevision."""
    return validation.parse_spec(raw_spec_of(revision))


def next_number(revisions: Mapping[str, Body]) -> int:
    """ControllerRevision numbers grow by one per new revision."""
    return 1 + max((int(r.get("revision") or 0) for r in revisions.values()), default=0)


def prunable(revisions: Mapping[str, Body], *, keep: int, protected: set[str]) -> list[str]:
    """Revisions beyond the newest ``keep``, never the stable or canary one."""
    ordered = sorted(revisions.items(), key=lambda item: int(item[1].get("revision") or 0), reverse=True)
    return [rev for rev, _ in ordered[keep:] if rev not in protected]


def begin(history: list[HistoryEntry], *, revision: str, version: str | None, now: str) -> list[HistoryEntry]:
    """Add a Progressing entry for ``revision`` unless it is already the open one."""
    if history and history[-1].revision == revision and history[-1].result == "Progressing":
        return history
    return [*history, HistoryEntry(revision=revision, version=version, started=now, result="Progressing")]


def finish(
    history: list[HistoryEntry], *, revision: str, result: str, reason: str, now: str
) -> list[HistoryEntry]:
    """Close the open entry of ``revision`` with ``result``."""
    out = list(history)
    for index in range(len(out) - 1, -1, -1):
        entry = out[index]
        if entry.revision == revision and entry.result == "Progressing":
            out[index] = entry.model_copy(update={"result": result, "reason": reason, "finished": now})
            break
    return out


def last_result(history: list[HistoryEntry], revision: str) -> str | None:
    """How the latest attempt at ``revision`` ended, if it did."""
    for entry in reversed(history):
        if entry.revision == revision:
            return entry.result
    return None


def trim(history: list[HistoryEntry], keep: int) -> list[HistoryEntry]:
    """The newest ``keep`` entries."""
    return history[-keep:]

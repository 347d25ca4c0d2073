"""apply.ensure on build Jobs: fixed at create; the only write adds an owner."""

from __future__ import annotations

import copy
from typing import Any

from planet_operator.kube import apply
from planet_operator.kube.client import Conflict


def _owner(uid: str) -> dict[str, Any]:
    return {"apiVersion": "planetgen.io/v1alpha1", "kind": "PlanetPipeline", "name": uid, "uid": uid}


LIVE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "planet-engine-k",
        "namespace": "t",
        "resourceVersion": "7",
        "labels": {"planetgen.io/engine-key": "k"},
        "ownerReferences": [_owner("a")],
    },
    "spec": {"template": {"spec": {"containers": [{"name": "build", "image": "old"}]}}},
}


class Recorder:
    """A client that records patches and answers a GET with ``fresh``."""

    def __init__(self, *, conflicts: int = 0, fresh: dict[str, Any] | None = None) -> None:
        self.patches: list[Any] = []
        self.conflicts, self.fresh = conflicts, fresh

    async def patch(self, resource: Any, namespace: str, name: str, patch: Any, **_: Any) -> dict[str, Any]:
        self.patches.append(patch)
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(409, "Conflict", "the object has been modified", verb="patch")
        return {}

    async def get(self, *_: Any) -> dict[str, Any]:
        assert self.fresh is not None
        return self.fresh


async def test_a_live_job_is_never_relabelled_nor_respecified() -> None:
    desired = copy.deepcopy(LIVE)
    desired["metadata"]["labels"]["planetgen.io/pipeline"] = "b"
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "new"  # immutable on the server
    recorder = Recorder()
    assert await apply.ensure(recorder, desired, live=LIVE) == "unchanged"  # type: ignore[arg-type]
    assert recorder.patches == []


async def test_a_second_pipeline_joins_as_an_owner_and_nothing_else() -> None:
    desired = copy.deepcopy(LIVE)
    desired["metadata"]["ownerReferences"] = [_owner("b")]
    desired["metadata"]["labels"]["planetgen.io/pipeline"] = "b"
    recorder = Recorder()
    assert await apply.ensure(recorder, desired, live=LIVE) == "updated"  # type: ignore[arg-type]
    assert recorder.patches == [
        {"metadata": {"resourceVersion": "7", "ownerReferences": [_owner("a"), _owner("b")]}}
    ]


async def test_an_owner_added_meanwhile_is_kept() -> None:
    desired = copy.deepcopy(LIVE)
    desired["metadata"]["ownerReferences"] = [_owner("b")]
    fresh = copy.deepcopy(LIVE)
    fresh["metadata"]["resourceVersion"] = "8"
    fresh["metadata"]["ownerReferences"].append(_owner("c"))
    recorder = Recorder(conflicts=1, fresh=fresh)
    assert await apply.ensure(recorder, desired, live=LIVE) == "updated"  # type: ignore[arg-type]
    assert recorder.patches[-1] == {
        "metadata": {"resourceVersion": "8", "ownerReferences": [_owner("a"), _owner("c"), _owner("b")]}
    }


async def test_a_job_being_deleted_is_left_alone() -> None:
    live = copy.deepcopy(LIVE)
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    desired = copy.deepcopy(LIVE)
    desired["metadata"]["ownerReferences"] = [_owner("b")]
    recorder = Recorder()
    assert await apply.ensure(recorder, desired, live=live) == "unchanged"  # type: ignore[arg-type]
    assert recorder.patches == []

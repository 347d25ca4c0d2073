"""The rollout traffic both the demo and the gate's e2e test send: scores by revision, errors kept."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
from typing import Any

import pytest

from planet_harness.traffic import Traffic, rolled_back_on_quality


def test_scores_are_kept_by_revision_and_failed_posts_by_status() -> None:
    lock, calls = threading.Lock(), []

    def post(body: dict[str, Any]) -> dict[str, Any]:
        seed = body["seed"]
        with lock:
            calls.append(seed)
        if seed == 3:  # a revision going away mid-rollout: the client goes on
            raise urllib.error.HTTPError("http://x", 503, "unavailable", {}, io.BytesIO())  # type: ignore[arg-type]
        if seed == 4:
            raise ConnectionRefusedError
        time.sleep(0.01)
        return {"predictions": [{"revision": "r1" if seed % 2 else "r2", "quality": {"score": 0.5}}]}

    with Traffic(post, lambda seed: {"seed": seed}) as sent:
        while len(calls) < 10:
            time.sleep(0.01)
    assert sorted(sent.errors) == [0, 503]
    assert sent.scores.keys() == {"r1", "r2"} and Traffic.mean(sent.scores["r1"]) == 0.5
    assert set(calls) >= set(range(8))  # two clients, seeds interleaved


def test_a_client_bug_is_raised_when_the_traffic_stops() -> None:
    sent = Traffic(lambda body: {"predictions": [{}]}, lambda seed: {})
    time.sleep(0.05)
    with pytest.raises(KeyError):
        sent.stop()


@pytest.mark.parametrize(
    ("record", "gate"),
    [
        (
            {
                "result": "RolledBack",
                "reason": "analysis failed 2 times (limit 1): quality_score 0.2816 < min 0.7",
            },
            True,
        ),
        ({"result": "RolledBack", "reason": "analysis: quality_score no data in 6 checks in a row"}, False),
        ({"result": "RolledBack", "reason": "error_rate 0.2 > max 0.01"}, False),
        ({"result": "Promoted", "reason": "quality_score 0.9 < min 0.7"}, False),
    ],
)
def test_only_a_measured_score_under_the_floor_is_the_gates_rollback(
    record: dict[str, str], gate: bool
) -> None:
    assert rolled_back_on_quality(record) is gate

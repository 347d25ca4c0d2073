"""Clients that keep a pipeline busy while a rollout is judged, and what its revisions answered.

The quality gate judges a canary on the scores of the images it served, so a rollout needs traffic
while its analysis runs: ``make demo`` and the gate's e2e test both send it through this.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.error
from collections.abc import Callable
from typing import Any

Post = Callable[[dict[str, Any]], dict[str, Any]]
#: How the operator's analysis words a measured score under the floor (``quality_score 0.36 < min
#: 0.7``); "quality_score no data" is a rollback too, but not the gate's verdict.
_UNDER_FLOOR = re.compile(r"\bquality_score [0-9.e+-]+ < min\b")


def rolled_back_on_quality(record: dict[str, Any]) -> bool:
    """Whether a ``status.history`` entry is a rollback on a measured quality score."""
    return record.get("result") == "RolledBack" and bool(_UNDER_FLOOR.search(str(record.get("reason", ""))))


class Traffic:
    """``clients`` threads posting ``body(seed)`` until stopped (seeds interleave: 0, 1, ... per client).

    ``scores`` holds each answer's quality score under the revision that drew it; ``errors`` the HTTP
    status of each failed post (0 when no connection was made). A failed post is retried after a
    pause: a route not published yet, or a revision going away, is what a rollout looks like.
    """

    def __init__(self, post: Post, body: Callable[[int], dict[str, Any]], *, clients: int = 2) -> None:
        self.scores: dict[str, list[float]] = {}
        self.errors: list[int] = []
        self._post, self._body, self._clients = post, body, clients
        self._stopping = False
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=clients, thread_name_prefix="traffic")
        self._futures = [self._pool.submit(self._client, i) for i in range(clients)]

    def _client(self, seed: int) -> None:
        while not self._stopping:
            body = self._body(seed)
            seed += self._clients
            try:
                prediction = self._post(body)["predictions"][0]
            except OSError as exc:  # HTTPError is one, with the status
                self.errors.append(exc.code if isinstance(exc, urllib.error.HTTPError) else 0)
                time.sleep(0.5)
                continue
            score = float(prediction["quality"]["score"])
            self.scores.setdefault(str(prediction["revision"]), []).append(score)

    def stop(self, timeout: float = 300.0) -> None:
        """Let the requests in flight finish; a client's unexpected error is raised here."""
        self._stopping = True
        try:
            for future in self._futures:
                future.result(timeout=timeout)
        finally:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def mean(scores: list[float]) -> float:
        """The mean score, NaN for none (comparisons with NaN are false, so a floor check fails)."""
        return sum(scores) / len(scores) if scores else float("nan")

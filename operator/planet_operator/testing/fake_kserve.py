"""A stand-in for KServe's controller: marks InferenceServices and InferenceGraphs Ready.

KServe cannot run on a machine without a cluster; for operator tests and the scale benchmark this
writes KServe-shaped status (conditions, url, observedGeneration) the way KServe would once
the predictors are up. The local KServe runtime (``planet dev up``) runs real predictors instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from kubernetes import client

GROUP = "serving.kserve.io"
KINDS = (("v1beta1", "inferenceservices"), ("v1alpha1", "inferencegraphs"))


def ready_status(body: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    """KServe-shaped status for ``body``."""
    meta = body["metadata"]
    host = f"{meta['name']}.{meta['namespace']}.example.com"
    value = "True" if ready else "False"
    conditions = [
        {"type": kind, "status": value, "lastTransitionTime": "2026-01-01T00:00:00Z"}
        for kind in ("PredictorReady", "IngressReady", "Ready")
    ]
    return {
        "url": f"http://{host}",
        "conditions": conditions,
        "observedGeneration": meta.get("generation", 1),
    }


class StatusWriter:
    """Polls KServe objects and marks each Ready (or not, for names in ``failing``)."""

    def __init__(self, api: client.ApiClient, *, interval: float = 0.2) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.interval = interval
        self.failing: set[str] = set()
        self.writes = 0
        self.lists = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-kserve", daemon=True)

    def __enter__(self) -> StatusWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sync_once(self) -> int:
        """One pass over every object; returns the number of status writes."""
        written = 0
        for version, plural in KINDS:
            self.lists += 1
            listed = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, version, plural))
            for body in listed.get("items", []):
                meta = body["metadata"]
                want = ready_status(body, ready=meta["name"] not in self.failing)
                have = body.get("status") or {}
                if all(have.get(k) == v for k, v in want.items()):
                    continue
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, version, meta["namespace"], plural, meta["name"], {"status": want}
                )
                written += 1
        self.writes += written
        return written

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:
                time.sleep(self.interval)
            self._stop.wait(self.interval)

"""A test double for KServe's status writes: marks InferenceServices and InferenceGraphs Ready.

Used only where no kubelet runs pods, so a real KServe could never see a predictor come up: the
operator-logic tests (``tests/operator``) and the 1000-pipeline scale benchmark
(``bench/operator_scale.py``), both on :func:`planet_harness.cluster.running_without_kserve`, which
installs KServe's CRDs but not its controller. It writes KServe-shaped status (conditions, url,
observedGeneration) through the status subresource, as KServe's controller does. The e2e and cluster
suites run the real KServe instead, and nothing in the product imports this module.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from kubernetes import client

GROUP = "serving.kserve.io"
#: (version, plural) of each kind KServe reports on.
KINDS = (("v1beta1", "inferenceservices"), ("v1alpha1", "inferencegraphs"))
CONDITIONS = ("PredictorReady", "IngressReady", "Ready")


def ready_status(body: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    """KServe-shaped status for ``body``: every condition True (or False) at its generation."""
    meta = body["metadata"]
    value = "True" if ready else "False"
    return {
        "url": f"http://{meta['name']}.{meta['namespace']}.example.com",
        "conditions": [
            {"type": kind, "status": value, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for kind in CONDITIONS
        ],
        "observedGeneration": meta.get("generation", 1),
    }


class StatusWriter:
    """Polls KServe objects and marks each Ready (or not Ready, for names in ``failing``).

    Args:
        api: a client allowed to list those kinds and patch their ``status`` subresource.
        namespace: only this namespace (tests sharing a control plane); every namespace if None.
        interval: seconds between passes.
    """

    def __init__(self, api: client.ApiClient, *, namespace: str | None = None, interval: float = 0.2) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.interval = interval
        self.failing: set[str] = set()
        #: Requests made so far, so a benchmark can tell them from the operator's.
        self.writes = 0
        self.lists = 0
        #: The last error a pass hit (the pass is retried), for a test's failure message.
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kserve-status", daemon=True)

    def __enter__(self) -> StatusWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _list(self, version: str, plural: str) -> list[dict[str, Any]]:
        self.lists += 1
        if self.namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, version, plural)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, version, self.namespace, plural)
        return cast(list[dict[str, Any]], cast(dict[str, Any], found).get("items", []))

    def sync_once(self) -> int:
        """One pass over every object; returns the number of status writes."""
        written = 0
        for version, plural in KINDS:
            for body in self._list(version, plural):
                meta = body["metadata"]
                want = ready_status(body, ready=meta["name"] not in self.failing)
                have = body.get("status") or {}
                if all(have.get(k) == v for k, v in want.items()):
                    continue
                try:
                    self.custom.patch_namespaced_custom_object_status(
                        GROUP, version, meta["namespace"], plural, meta["name"], {"status": want}
                    )
                except client.ApiException as exc:
                    if exc.status != 404:  # deleted since the list: nothing to report on
                        raise
                    continue
                written += 1
                self.writes += 1
        return written

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # the API server restarting, a conflict: the next pass retries
                self.error = exc
            self._stop.wait(self.interval)

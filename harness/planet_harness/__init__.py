"""planetgen's test harness: the real Kubernetes and KServe components, built and run on one machine.

Only what no project provides is ours: the build of pinned Go modules (:mod:`.components`), a
throwaway CA (:mod:`.pki`), process supervision (:mod:`.processes`), the launcher that starts the
control plane (:mod:`.controlplane`) and KServe (:mod:`.kserve`) with their real configuration, a
kubelet whose containers are processes (:mod:`.kubelet`), the gateway (:mod:`.gateway`) and the whole
stack (:mod:`.stack`), and a way to run one pod's container with the pod's identity (:mod:`.pods`).
Where no kubelet runs pods (the operator-logic tests, the scale benchmark), :mod:`.kserve_status`
stands in for KServe's status writes and :mod:`.prometheus` for the predictors' metrics.
No product package imports this one (an import-linter contract says so).

The names below load on first use, so ``python -m planet_harness.components`` runs without importing
the rest of the harness first.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ControlPlane": "planet_harness.controlplane",
    "KServe": "planet_harness.kserve",
    "PodProcess": "planet_harness.pods",
    "running": "planet_harness.cluster",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'planet_harness' has no attribute {name!r}")

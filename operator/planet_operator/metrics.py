"""The operator's own Prometheus metrics (served by ``planet operator --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_SECONDS = Histogram(
    "planet_operator_reconcile_duration_seconds",
    "Time to reconcile one pipeline.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PIPELINES = Gauge("planet_operator_pipelines", "Pipelines by phase.", ["phase"])
PHASE_CHANGES = Counter(
    "planet_operator_phase_changes_total", "Phase transitions, by the phase entered.", ["phase"]
)
ROLLOUTS = Counter(
    "planet_operator_rollouts_total", "Canary rollouts by result (started, promoted).", ["result"]
)
ROLLBACKS = Counter(
    "planet_operator_rollbacks_total", "Rollbacks by kind (automatic, abort, manual).", ["kind"]
)
RECONCILE_ERRORS = Counter(
    "planet_operator_reconcile_errors_total", "Reconciles that raised, by error.", ["error"]
)

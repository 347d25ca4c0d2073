"""The level-based reconcile of one pipeline: observe children, decide, apply, report.

Handlers (``planet_operator.handlers``) call :func:`planet_operator.reconcile.core.reconcile`; it
reads children from Kopf's in-memory indexes and writes only what differs from what is live, so a
pipeline in a steady state costs no API requests at all.
"""

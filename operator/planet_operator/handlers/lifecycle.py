"""Operator start-up and shutdown: Kopf settings, the shared context, the metrics endpoint."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import prometheus_client

from planet_contracts.api import resource
from planet_operator.handlers import children, options
from planet_operator.kube import client as kube
from planet_operator.kube.events import EventRecorder
from planet_operator.reconcile.context import Context


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Kopf settings and the clients every reconcile shares."""
    opts = options.current or options.Options.from_env()
    tune(settings)
    client = kube.Client(kube.load_connection(), reload=kube.load_connection)
    memo["events"] = recorder = EventRecorder(client)
    memo["context"] = Context(
        client=client,
        emit=recorder.emit,
        settings=opts,  # the reconcile settings are a part of the process's options
    )
    if opts.metrics_port is not None:
        prometheus_client.start_http_server(opts.metrics_port, addr=opts.metrics_host)
        logger.info("metrics on %s:%d/metrics", opts.metrics_host, opts.metrics_port)


def tune(settings: kopf.OperatorSettings) -> None:
    """Kopf's settings for this operator (no I/O: the chart's RBAC test reads them too)."""
    # Our own finalizer and annotation names, not Kopf's defaults, so users see whose they are.
    settings.persistence.finalizer = f"{resource.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=resource.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=resource.GROUP, key="last-handled-configuration"
    )
    # Only warnings become Events by themselves; the operator posts its own phase and rollout events.
    settings.posting.level = logging.WARNING
    # Watches are re-established every few minutes, so a silently dropped connection heals.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Kopf's labels= filters run client-side, after it has listed and watched every ConfigMap, Job and
    # ControllerRevision in the cluster: ask the API server for only the children instead. Never on
    # PlanetPipelines: the operator must see every one of them.
    for (group, version, plural), labels in children.FILTERS.items():
        settings.watching.label_selectors[group, version, plural] = children.label_selector(labels)
    # No cluster-wide list/watch of CRDs, nor of namespaces when serving some. `planet operator` runs
    # with --all-namespaces or exact --namespace names (the chart makes a Role in each; Kopf would
    # skip a pattern), and the CRDs it serves (ours, KServe's) are prerequisites that discovery finds
    # at start-up: one installed after the operator is served from its next restart.
    settings.scanning.disabled = True


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    """Close connection pools."""
    recorder = memo.get("events")
    if isinstance(recorder, EventRecorder):
        await recorder.flush()
    context = memo.get("context")
    if isinstance(context, Context):
        await context.close()

"""``planet operator``: run the Kopf operator (namespace-scoped or cluster-wide, standalone or peered)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import zlib
from typing import Any

from planet_operator.cli import errors

NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def add_parser(sub: Any) -> None:
    """Register ``operator``."""
    parser = sub.add_parser("operator", help="run the PlanetPipeline operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="no peering: the only operator replica")
    peering.add_argument("--peering", metavar="NAME", help="Kopf peering object shared by HA replicas")
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority of this replica (default: $PLANET_PEERING_PRIORITY, else derived from "
        "$POD_NAME or the host name, so that replicas of one Deployment differ)",
    )
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--metrics-host", default="0.0.0.0", help="address for the metrics port")
    parser.add_argument(
        "--liveness", metavar="URL", help="Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--resync", type=float, default=60.0, help="seconds between resyncs of an idle pipeline"
    )
    parser.add_argument(
        "--no-namespace-label", action="store_true", help="analysis queries without a namespace matcher"
    )
    parser.add_argument("--analysis-window", type=float, default=60.0, help="shortest PromQL rate window (s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Configure the handlers, then hand the process to Kopf until SIGINT/SIGTERM."""
    import kopf

    from planet_operator.handlers import options

    if args.resync <= 0:
        raise errors.UsageError("--resync must be > 0")
    for namespace in args.namespace:
        # Kopf's dynamic namespace discovery is off (no cluster-wide list/watch), so it would skip a
        # pattern silently; an exact DNS label is the only thing that works.
        if not NAMESPACE.fullmatch(namespace):
            raise errors.UsageError(
                f"--namespace={namespace!r}: give an exact namespace name (lowercase letters, digits "
                "and '-', at most 63 characters); patterns are not supported"
            )
    options.current = options.Options(
        resync_seconds=args.resync,
        namespace_label=not args.no_namespace_label,
        min_window_seconds=args.analysis_window,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    import planet_operator.handlers  # noqa: F401  (registers the handlers)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kopf.run(
        standalone=args.standalone or not args.peering,
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else default_priority(),
        liveness_endpoint=args.liveness,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
    )
    return 0


def default_priority() -> int:
    """A priority unique to this pod with overwhelming odds, stable for the pod's life.

    Kopf pauses every peer that shares the highest priority (it cannot tell which should lead), so
    replicas of one Deployment, which get the same flags, must not share a fixed default.
    """
    explicit = os.environ.get("PLANET_PEERING_PRIORITY")
    if explicit:
        try:
            return int(explicit)
        except ValueError:
            raise errors.UsageError(f"PLANET_PEERING_PRIORITY must be an integer, not {explicit!r}") from None
    identity = os.environ.get("POD_NAME") or socket.gethostname()
    return zlib.crc32(identity.encode()) & 0x7FFFFFFF

"""``planet release-finalizers``: let PlanetPipelines be deleted once the operator is gone.

Kopf puts a finalizer on every pipeline (the per-pipeline daemon needs one to be stopped) and puts
it back on any event while it runs, so the operator is stopped first. The chart's pre-delete hook
runs this, or ``helm uninstall`` would leave pipelines (and their namespaces) that never delete.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from planet_operator.cli import errors
from planet_operator.cli.operator import NAMESPACE
from planet_operator.kube import client as kube
from planet_operator.kube import resources

DEPLOYMENTS = kube.Resource(group="apps", version="v1", plural="deployments")
PODS = kube.Resource(group="", version="v1", plural="pods")
#: Tries per pipeline when its finalizers moved between the read and the patch.
ATTEMPTS = 3
EXIT_FAILED = 1


def add_parser(sub: Any) -> None:
    """Register ``release-finalizers``."""
    parser = sub.add_parser(
        "release-finalizers",
        help="stop the operator, then remove its finalizer from every PlanetPipeline it watches",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (the default)")
    parser.add_argument(
        "--stop-deployment",
        metavar="NAMESPACE/NAME",
        help="first scale the operator's Deployment to 0 and wait until its pods are gone "
        "(a running operator adds the finalizer back)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pods to go")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Stop the operator if asked, release every pipeline, print what was released."""
    for namespace in args.namespace:
        if not NAMESPACE.fullmatch(namespace):
            raise errors.UsageError(f"--namespace={namespace!r}: give an exact namespace name")
    stop: tuple[str, str] | None = None
    if args.stop_deployment:
        namespace, _, name = str(args.stop_deployment).partition("/")
        if not (NAMESPACE.fullmatch(namespace) and name):
            raise errors.UsageError(f"--stop-deployment={args.stop_deployment!r}: give NAMESPACE/NAME")
        stop = (namespace, name)
    try:
        released = asyncio.run(_run(args.namespace or None, stop=stop, wait=args.timeout))
    except (kube.APIError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for name in released:
        print(f"released {name}")
    print(f"{len(released)} PlanetPipeline(s) released")
    return 0


async def _run(namespaces: Sequence[str] | None, *, stop: tuple[str, str] | None, wait: float) -> list[str]:
    client = kube.Client(kube.load_connection(), reload=kube.load_connection)
    try:
        if stop is not None:
            try:
                async with asyncio.timeout(wait):
                    await stop_operator(client, *stop)
            except TimeoutError:
                raise TimeoutError(f"the operator's pods were still there after {wait:.0f} s") from None
        return await release(client, namespaces=namespaces, finalizer=finalizer())
    finally:
        await client.close()


def finalizer() -> str:
    """The finalizer the operator's Kopf settings name (one source: ``handlers.lifecycle.tune``)."""
    import kopf

    from planet_operator.handlers import lifecycle

    settings = kopf.OperatorSettings()
    lifecycle.tune(settings)
    return str(settings.persistence.finalizer)


async def stop_operator(client: kube.Client, namespace: str, name: str) -> None:
    """Scale the Deployment to 0 and wait until none of its pods is left, terminating ones included."""
    try:
        deployment = await client.patch(DEPLOYMENTS, namespace, name, {"spec": {"replicas": 0}})
    except kube.NotFound:
        return  # no operator runs from it
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    while True:
        listed = await client.list_objects(PODS, namespace, labels=labels)
        if not listed.get("items"):
            return
        await asyncio.sleep(1.0)


async def release(client: kube.Client, *, namespaces: Sequence[str] | None, finalizer: str) -> list[str]:
    """Remove ``finalizer`` from every pipeline in ``namespaces`` (None: all); ``ns/name`` of each."""
    released: list[str] = []
    scopes: Sequence[str | None] = namespaces or [None]
    for namespace in scopes:
        try:
            listed = await client.list_objects(resources.PIPELINES, namespace)
        except kube.NotFound:
            continue  # no PlanetPipeline CRD (any more): nothing holds a finalizer
        for item in listed.get("items") or []:
            meta = item["metadata"]
            if await _release_one(client, str(meta["namespace"]), str(meta["name"]), item, finalizer):
                released.append(f"{meta['namespace']}/{meta['name']}")
    return released


async def _release_one(
    client: kube.Client, namespace: str, name: str, body: kube.Body, finalizer: str
) -> bool:
    for attempt in range(ATTEMPTS):
        held = list((body.get("metadata") or {}).get("finalizers") or [])
        if finalizer not in held:
            return False
        path = f"/metadata/finalizers/{held.index(finalizer)}"
        # The test op makes the remove exact: another finalizer that moved meanwhile stays.
        patch = [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]
        try:
            await client.patch(resources.PIPELINES, namespace, name, patch, kind="json")
            return True
        except kube.NotFound:
            return False
        except (kube.Invalid, kube.Conflict):
            if attempt == ATTEMPTS - 1:
                raise
        try:
            body = await client.get(resources.PIPELINES, namespace, name)
        except kube.NotFound:
            return False
    return False

"""Create-or-update with no write when nothing changed, the core of a level-based reconcile."""

from __future__ import annotations

from typing import Any, Literal

from planet_operator.kube import quantity, resources
from planet_operator.kube.client import Body, Client, Conflict, NotFound

Result = Literal["created", "updated", "unchanged"]


#: Maps whose values are resource quantities, which the server rewrites into canonical form.
_QUANTITIES = frozenset({"requests", "limits"})


def contains(live: Any, desired: Any, *, quantities: bool = False) -> bool:
    """True when every field of ``desired`` is in ``live`` with the same value.

    Servers add fields (defaults, status, uid); those do not make a child out of date, so the
    comparison is one-way. Lists must match element by element; quantities match by value.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and contains(live[k], v, quantities=quantities or k in _QUANTITIES)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    if quantities:
        return quantity.equal(live, desired)
    return bool(live == desired)


#: Keys the operator sets only sometimes: when the desired object lacks them, the live one must too.
_REMOVABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "InferenceService": (("spec", "canary"), ("spec", "predictor", "canaryTrafficPercent")),
}


def _stale_keys(live: Body, desired: Body) -> list[tuple[str, ...]]:
    stale = []
    for path in _REMOVABLE.get(str(desired.get("kind")), ()):
        if _has(live, path) and not _has(desired, path):
            stale.append(path)
    return stale


def _has(body: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return False
        body = body[key]
    return True


#: Kinds whose spec the API server refuses to change once created; named by their content, so only
#: their metadata (labels, owners) is kept up to date. A build Job is keyed by its engine key.
_FIXED_SPEC = ("Job",)


def _wanted(body: Body) -> Body:
    """The parts of a manifest the operator owns: everything but status (only metadata when fixed)."""
    if body.get("kind") in _FIXED_SPEC:
        return {k: v for k, v in body.items() if k in ("apiVersion", "kind", "metadata")}
    return {k: v for k, v in body.items() if k not in ("status",)}


async def ensure(client: Client, desired: Body, *, live: Body | None = None, indexed: bool = False) -> Result:
    """Make the object look like ``desired``.

    ``live`` (from a Kopf index) saves a GET; with ``indexed`` an object missing from the index is
    created straight away, and only a 409 (the index lagging) costs a GET.
    """
    resource = resources.of(desired)
    namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
    if live is None and not indexed:
        try:
            live = await client.get(resource, namespace, name)
        except NotFound:
            live = None
    if live is None:
        try:
            await client.create(resource, namespace, desired)
            return "created"
        except Conflict:
            # Created meanwhile (an index lagging behind, another replica): compare and patch instead.
            try:
                live = await client.get(resource, namespace, name)
            except NotFound:
                # Taken, and gone again (it was being deleted): its deletion wakes the next pass,
                # which creates it. Not a refusal.
                return "unchanged"
    stale = _stale_keys(live, desired)
    if contains(live, _wanted(desired)) and not stale:
        return "unchanged"
    if desired.get("kind") == "ConfigMap" and live.get("immutable"):
        return "unchanged"  # named by content: same name, same data
    patch = _wanted(desired)
    patch["metadata"] = {
        k: v for k, v in desired["metadata"].items() if k in ("labels", "annotations", "ownerReferences")
    }
    for path in stale:
        # A merge patch removes a key only when it names it with null.
        node = patch
        for key in path[:-1]:
            node[key] = dict(node.get(key, {}))
            node = node[key]
        node[path[-1]] = None
    await client.patch(resource, namespace, name, patch)
    return "updated"

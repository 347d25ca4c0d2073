"""Create-or-update with no write when nothing changed, the core of a level-based reconcile."""

from __future__ import annotations

from typing import Any, Literal

from planet_contracts.api import resource
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
    # KServe's own canary fields (older planetgen versions set them), and the retire deadline of an
    # InferenceService the graph wants again.
    "InferenceService": (
        ("spec", "canary"),
        ("spec", "predictor", "canaryTrafficPercent"),
        ("metadata", "annotations", resource.RETIRE_AFTER),
    ),
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


#: Kinds fixed at create: a Job's pod template is immutable, and a build Job is named by its engine
#: key and shared by every pipeline with that key, so no pipeline's labels or spec may win a patch.
#: The only write to a live one adds an owner (see :func:`_join`).
_FIXED = ("Job",)


def _wanted(body: Body) -> Body:
    """The parts of a manifest the operator owns: everything but status."""
    return {k: v for k, v in body.items() if k not in ("status",)}


def _uids(body: Body) -> list[str]:
    return [str(ref.get("uid")) for ref in (body.get("metadata") or {}).get("ownerReferences") or []]


async def _join(client: Client, desired: Body, live: Body) -> Result:
    """Add ``desired``'s owners that ``live`` lacks, keeping every other owner and all else as it is.

    Several owners and no controller among them: the garbage collector deletes the object only when
    the last owner is gone. Changing ownerReferences needs ``delete`` on the object under
    OwnerReferencesPermissionEnforcement (the chart grants it).
    """
    meta = live.get("metadata") or {}
    have = set(_uids(live))
    wanted = desired["metadata"].get("ownerReferences") or []
    missing = [ref for ref in wanted if str(ref.get("uid")) not in have]
    if not missing or meta.get("deletionTimestamp"):
        return "unchanged"
    # The whole list (a merge patch replaces lists), guarded by the resourceVersion it was read at:
    # an owner another pass added meanwhile is a 409, and the next pass reads it and tries again.
    patch = {
        "metadata": {
            "resourceVersion": meta.get("resourceVersion"),
            "ownerReferences": [*(meta.get("ownerReferences") or []), *missing],
        }
    }
    resource = resources.of(desired)
    await client.patch(resource, str(meta.get("namespace")), str(meta.get("name")), patch)
    return "updated"


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
    if desired.get("kind") in _FIXED:
        try:
            return await _join(client, desired, live)
        except Conflict:
            # Read at an older version (the index lags, another pipeline joined): once more, fresh.
            try:
                live = await client.get(resource, namespace, name)
            except NotFound:
                return "unchanged"  # gone meanwhile: the next pass creates it
            return await _join(client, desired, live)
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

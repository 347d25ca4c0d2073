"""An in-memory stand-in for :class:`planet_operator.kube.client.Client`: a unit-test seam.

It is not a Kubernetes imitation. It keeps objects in a dict by (resource, namespace, name), hands
out copies, and answers the verbs the operator uses with the errors the real client raises
(:class:`NotFound`, :class:`Conflict`, :class:`Invalid`). There is no admission, no defaulting, no
schema, no garbage collection, no watch and no controller: nothing writes a child's status unless a
test does (:meth:`FakeClient.set_status`). The real API server is what ``tests/cluster`` and
``tests/e2e`` run against; this one only lets a test call ``reconcile`` directly and see, call by
call, what it read and wrote.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from planet_contracts.api.resource import KIND as PIPELINE_KIND
from planet_operator.kube import resources
from planet_operator.kube.client import Body, Conflict, Invalid, NotFound, PatchType, Resource

#: Pods are not a resource the operator writes, but tests put some in for the pod index.
PODS = Resource(group="", version="v1", plural="pods")
_KINDS: dict[Resource, str] = {
    **{res: kind for (_, kind), res in resources.BY_KIND.items()},
    resources.PIPELINES: PIPELINE_KIND,
    resources.EVENTS: "Event",
    PODS: "Pod",
}
#: The verbs that change something.
WRITES = frozenset({"create", "replace", "patch", "delete"})
_Key = tuple[Resource, str, str]


def kind_of(resource: Resource) -> str:
    """The kind a resource holds (its plural when the fake does not know it)."""
    return _KINDS.get(resource, resource.plural)


@dataclasses.dataclass(frozen=True)
class Call:
    """One request: the verb (as the real client names it), the kind and the object's name."""

    verb: str
    kind: str
    name: str = ""
    #: ``"status"`` for a status patch.
    subresource: str | None = None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``None`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: Body, ops: list[Body]) -> Body:
    """RFC 6902 ``add``, ``replace`` and ``remove`` (the operations the operator sends)."""
    out = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = out
        for part in parents:
            node = node[part]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and last not in node:
                raise Invalid(422, "Invalid", f"replace {op['path']}: no such path", verb="patch")
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            if last not in node:
                raise Invalid(422, "Invalid", f"remove {op['path']}: no such path", verb="patch")
            del node[last]
        else:
            raise NotImplementedError(f"json patch op {op['op']!r}")
    return out


def _selected(body: Body, labels: Mapping[str, str] | None, fields: Mapping[str, str] | None) -> bool:
    have = (body.get("metadata") or {}).get("labels") or {}
    if any(have.get(k) != v for k, v in (labels or {}).items()):
        return False
    for path, wanted in (fields or {}).items():
        node: Any = body
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node) != wanted:
            return False
    return True


class FakeClient:
    """The verbs of :class:`planet_operator.kube.client.Client`, on a dict, with every call recorded.

    ``calls`` lists each request as a :class:`Call`, refused ones too; :meth:`writes` those that
    would change something.
    The helpers that are not client verbs (:meth:`seed`, :meth:`set_status`, :meth:`stored`,
    :meth:`refuse_next_create`) are the test's hands and are not recorded.
    """

    def __init__(self, *, clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.objects: dict[_Key, Body] = {}
        self.calls: list[Call] = []
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self._refusals: dict[str, list[str]] = {}

    # --- the client's verbs ---------------------------------------------------------------------

    async def close(self) -> None:
        """Nothing to release."""

    async def get(self, resource: Resource, namespace: str, name: str) -> Body:
        """A copy of the object, or :class:`NotFound`."""
        self._record("get", resource, name)
        return copy.deepcopy(self._live(resource, namespace, name, verb="get"))

    async def list_objects(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> Body:
        """Copies of the objects in ``namespace`` (None: all) that match equality selectors."""
        self._record("list", resource)
        items = [
            copy.deepcopy(body)
            for (res, ns, _), body in sorted(self.objects.items(), key=lambda kv: kv[0][1:])
            if res == resource and (namespace is None or ns == namespace) and _selected(body, labels, fields)
        ]
        return {"apiVersion": resource.api_version, "kind": f"{kind_of(resource)}List", "items": items}

    async def create(self, resource: Resource, namespace: str, body: Body) -> Body:
        """Store a copy with uid, resourceVersion, generation; :class:`Conflict` when the name is taken."""
        name = str(body["metadata"]["name"])
        self._record("create", resource, name)
        refusals = self._refusals.get(kind_of(resource))
        if refusals:
            raise Invalid(422, "Invalid", refusals.pop(0), verb="create", path=resource.path(namespace))
        return copy.deepcopy(self._admit(resource, namespace, body))

    async def replace(self, resource: Resource, namespace: str, name: str, body: Body) -> Body:
        """PUT: :class:`Conflict` on a stale ``metadata.resourceVersion``; the status stays as stored."""
        self._record("replace", resource, name)
        live = self._live(resource, namespace, name, verb="update")
        self._check_version(resource, live, body, verb="update")
        new = copy.deepcopy(dict(body))
        new["metadata"] = {**live["metadata"], **new.get("metadata", {})}
        if "status" in live:
            new["status"] = copy.deepcopy(live["status"])
        else:
            new.pop("status", None)
        return copy.deepcopy(self._store(resource, namespace, name, live, new))

    async def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Body | list[Body],
        *,
        kind: PatchType = "merge",
        subresource: str | None = None,
    ) -> Body:
        """A merge or JSON patch of the object, or (``subresource="status"``) of its status only.

        As on a resource with a status subresource, a patch of the object leaves its status alone
        and a status patch changes nothing else. A merge patch naming ``metadata.resourceVersion``
        is a precondition (:class:`Conflict` when stale), as on the server.
        """
        self._record("patch", resource, name, subresource)
        live = self._live(resource, namespace, name, verb="patch")
        base = copy.deepcopy(live)
        if subresource not in (None, "status"):
            raise NotImplementedError(f"subresource {subresource!r}")
        if kind == "json":
            assert isinstance(patch, list), "a JSON patch is a list of operations"
            new = json_patch(base, patch)
            # The status (or, for a status patch, all else) is what it was.
            for key in ("status",) if subresource is None else [k for k in live if k != "status"]:
                new.pop(key, None)
                if key in live:
                    new[key] = copy.deepcopy(live[key])
        elif kind == "merge":
            assert isinstance(patch, dict), "a merge patch is an object"
            self._check_version(resource, live, patch, verb="patch")
            if subresource == "status":
                new = merge_patch(base, {"status": patch.get("status")})
            else:
                new = merge_patch(base, {k: v for k, v in patch.items() if k != "status"})
        else:
            raise NotImplementedError(f"{kind} patch: the operator does not send one")
        return copy.deepcopy(self._store(resource, namespace, name, live, new))

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        """Remove the object at once (no finalizers, no garbage collection); missing is fine."""
        self._record("delete", resource, name)
        self.objects.pop((resource, namespace, name), None)

    # --- the test's hands -----------------------------------------------------------------------

    def writes(self) -> list[Call]:
        """The recorded calls that change something, in order."""
        return [call for call in self.calls if call.verb in WRITES]

    def seed(self, resource: Resource, body: Body) -> Body:
        """Put an object in as if created (uid, resourceVersion, generation), without recording it."""
        namespace = str(body["metadata"].get("namespace") or "")
        return copy.deepcopy(self._admit(resource, namespace, body))

    def stored(self, resource: Resource, namespace: str, name: str) -> Body | None:
        """A copy of the object as stored, or None."""
        body = self.objects.get((resource, namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def names(self, resource: Resource, namespace: str) -> list[str]:
        """The names of the stored objects of ``resource`` in ``namespace``, sorted."""
        return sorted(n for res, ns, n in self.objects if res == resource and ns == namespace)

    def set_status(self, resource: Resource, namespace: str, name: str, status: Body) -> None:
        """Replace an object's status, as its controller (Job, KServe) would; not recorded."""
        live = self._live(resource, namespace, name, verb="patch")
        new = {**copy.deepcopy(live), "status": copy.deepcopy(dict(status))}
        self._store(resource, namespace, name, live, new)

    def refuse_next_create(self, kind: str, message: str) -> None:
        """The next create of ``kind`` fails with 422 Invalid and the server's ``message``."""
        self._refusals.setdefault(kind, []).append(message)

    # --- internals ------------------------------------------------------------------------------

    def _record(self, verb: str, resource: Resource, name: str = "", subresource: str | None = None) -> None:
        self.calls.append(Call(verb=verb, kind=kind_of(resource), name=name, subresource=subresource))

    def _live(self, resource: Resource, namespace: str, name: str, *, verb: str) -> Body:
        ns = namespace if resource.namespaced else ""
        body = self.objects.get((resource, ns, name))
        if body is None:
            what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise NotFound(
                404, "NotFound", f'{what} "{name}" not found', verb=verb, path=resource.path(namespace, name)
            )
        return body

    def _check_version(self, resource: Resource, live: Body, body: Body, *, verb: str) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        have = live["metadata"].get("resourceVersion")
        if wanted is not None and str(wanted) != have:
            name = live["metadata"]["name"]
            raise Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                verb=verb,
                path=resource.path(live["metadata"].get("namespace"), name),
            )

    def _admit(self, resource: Resource, namespace: str, body: Body) -> Body:
        ns = namespace if resource.namespaced else ""
        name = str(body["metadata"]["name"])
        if (resource, ns, name) in self.objects:
            what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise Conflict(
                409, "AlreadyExists", f'{what} "{name}" already exists', verb="create", path=resource.path(ns)
            )
        new = copy.deepcopy(dict(body))
        meta = new.setdefault("metadata", {})
        if resource.namespaced:
            meta["namespace"] = ns
        meta["uid"] = f"uid-{next(self._uids)}"
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        meta["creationTimestamp"] = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.objects[(resource, ns, name)] = new
        return new

    def _store(self, resource: Resource, namespace: str, name: str, live: Body, new: Body) -> Body:
        """Keep what the server owns (identity); bump resourceVersion, and generation when anything
        but metadata and status changed (the server bumps it on a spec change)."""
        meta = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if key in live["metadata"]:
                meta[key] = live["metadata"][key]
        if new == live:
            return new  # a no-op write: the server keeps the resourceVersion too
        outside = ("metadata", "status")
        if {k: v for k, v in new.items() if k not in outside} != {
            k: v for k, v in live.items() if k not in outside
        }:
            meta["generation"] = int(live["metadata"].get("generation") or 0) + 1
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(resource, namespace if resource.namespaced else "", name)] = new
        return new

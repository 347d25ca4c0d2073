"""Objects in memory with the API server's bookkeeping.

uid, resourceVersion, generation, the status subresource, finalizers, ownerReference garbage
collection, and an event history for watches that resume from a resourceVersion.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from planet_operator.kubeapi import errors, patching, selectors
from planet_operator.kubeapi.registry import ResourceInfo
from planet_operator.schemas import strict

Body = dict[str, Any]
#: (group, plural, namespace, name): one object, whatever version it is read through.
Key = tuple[str, str, str, str]
#: Events kept for watches that resume from a resourceVersion; older ones answer 410 Gone.
HISTORY = 20000
#: apimachinery's SimpleNameGenerator alphabet.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """RFC 3339 in seconds, as Kubernetes writes timestamps."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Event:
    """One change, as a watch sends it."""

    rv: int
    info: ResourceInfo
    namespace: str
    type: str
    object: Body


@dataclasses.dataclass(eq=False)
class Watcher:
    """A watch stream's subscription."""

    info: ResourceInfo
    namespace: str | None
    match: Callable[[Body], bool]
    queue: asyncio.Queue[Event] = dataclasses.field(default_factory=asyncio.Queue)


class Store:
    """Every object of every resource, with one global resourceVersion counter."""

    def __init__(self) -> None:
        self.objects: dict[Key, Body] = {}
        self.infos: dict[Key, ResourceInfo] = {}
        self.rv = 0
        self.history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self.watchers: set[Watcher] = set()
        #: Called after a CustomResourceDefinition is stored, to serve its resources at once.
        self.on_crd: Callable[[Body], None] | None = None
        #: OpenAPI schemas of custom kinds (for /openapi/v3) and the ones objects are validated against.
        self.schemas: dict[str, Body] = {}
        self.validators: dict[tuple[str, str], Body] = {}

    # --- reading ---

    def get(self, info: ResourceInfo, namespace: str, name: str) -> Body:
        """A copy of one object, or NotFound."""
        body = self.objects.get(self._key(info, namespace, name))
        if body is None:
            raise errors.not_found(info, name)
        return self._view(info, body)

    def list_objects(
        self, info: ResourceInfo, namespace: str | None, *, labels: str = "", fields: str = ""
    ) -> tuple[list[Body], str]:
        """Matching objects (all namespaces when ``namespace`` is None) and the list's resourceVersion."""
        match = selectors.matcher(labels, fields)
        items = [
            self._view(info, body)
            for key, body in self.objects.items()
            if key[:2] == (info.group, info.plural)
            and (namespace is None or key[2] == namespace)
            and match(body)
        ]
        items.sort(key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]))
        return items, str(self.rv)

    # --- writing ---

    def create(self, info: ResourceInfo, namespace: str, body: Body, *, dry_run: bool = False) -> Body:
        """Store a new object; AlreadyExists when the name is taken."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(info, namespace, str(meta["generateName"]))
        name = meta.get("name")
        if not name:
            raise errors.invalid(info, "", "metadata.name: Required value: name or generateName is required")
        if info.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the object does not match the namespace of the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = self._key(info, namespace, name)
        if key in self.objects:
            raise errors.already_exists(info, name)
        if info.status:
            body.pop("status", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        for field in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(field, None)
        body["apiVersion"], body["kind"] = info.api_version, info.kind
        self._validate(info, body)
        if dry_run:
            return body
        return self._commit(info, key, body, "ADDED")

    def _generate_name(self, info: ResourceInfo, namespace: str, prefix: str) -> str:
        # Kubernetes' suffix alphabet (no vowels, no look-alikes), retried on a collision the way
        # the API server does since 1.32 (RetryGenerateName) rather than answering 409.
        for _ in range(8):
            name = prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            if self._key(info, namespace, name) not in self.objects:
                return name
        return name

    def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        change: Callable[[Body], Body],
        *,
        subresource: str | None = None,
        expected_rv: str | None = None,
    ) -> Body:
        """Apply ``change`` to the current object (PUT and every PATCH type go through here)."""
        key = self._key(info, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise errors.not_found(info, name)
        new = change(copy.deepcopy(current))
        if not isinstance(new, dict):
            raise errors.bad_request("the object must be a JSON object")
        meta = new.setdefault("metadata", {})
        sent_rv = expected_rv if expected_rv is not None else meta.get("resourceVersion")
        if sent_rv and str(sent_rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(info, name)
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"metadata.name: the name of the object ({meta.get('name')}) does not match {name}"
            )
        if subresource == "status":
            # Only .status moves through /status; everything else stays as it was.
            new = {**copy.deepcopy(current), "status": new.get("status")}
            if new["status"] is None:
                new.pop("status")
        elif info.status:
            # Writes to the main resource never change status.
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        fixed = (
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "namespace",
            "deletionTimestamp",
        )
        for field in fixed:
            if field in current["metadata"]:
                new["metadata"][field] = current["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        new["metadata"]["name"] = name
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        self._validate(info, new)
        if _spec_changed(current, new):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if _same(current, new):
            return self._view(info, current)  # no-op writes do not bump resourceVersion (as in Kubernetes)
        stored = self._commit(info, key, new, "MODIFIED")
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            self._remove(info, key)
        return stored

    def patch(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        patch: Any,
        kind: str,
        *,
        subresource: str | None = None,
    ) -> Body:
        """PATCH of any supported content type."""
        expected = None
        if isinstance(patch, dict):
            expected = (patch.get("metadata") or {}).get("resourceVersion")
        return self.update(
            info, namespace, name, lambda body: patching.apply_patch(body, patch, kind),
            subresource=subresource,
            expected_rv=str(expected) if expected else None,
        )  # fmt: skip

    def delete(self, info: ResourceInfo, namespace: str, name: str) -> Body:
        """Delete now, or mark for deletion while finalizers remain."""
        key = self._key(info, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise errors.not_found(info, name)
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                marked = copy.deepcopy(current)
                marked["metadata"]["deletionTimestamp"] = now()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._commit(info, key, marked, "MODIFIED")
            return self._view(info, current)
        return self._remove(info, key)

    # --- internals ---

    def _key(self, info: ResourceInfo, namespace: str | None, name: str) -> Key:
        return (info.group, info.plural, namespace or "" if info.namespaced else "", name)

    def _validate(self, info: ResourceInfo, body: Body) -> None:
        """Custom resources must match their CRD's schema, unknown fields included (strict)."""
        schema = self.validators.get((info.group, info.plural))
        if schema is None:
            return
        problems = strict.validate(body, schema)
        if problems:
            name = body.get("metadata", {}).get("name", "")
            shown = problems[:20]
            message = "; ".join(str(p) for p in shown)
            raise errors.invalid(
                info, name, message, [(p.path, f"Invalid value: {p.message}") for p in shown]
            )

    def _view(self, info: ResourceInfo, body: Body) -> Body:
        out = copy.deepcopy(body)
        out["apiVersion"] = info.api_version
        return out

    def _commit(self, info: ResourceInfo, key: Key, body: Body, kind: str) -> Body:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = body
        self.infos[key] = info
        self._notify(info, key, kind, body)
        if info.kind == "CustomResourceDefinition" and self.on_crd is not None:
            self.on_crd(body)
        return self._view(info, body)

    def _remove(self, info: ResourceInfo, key: Key) -> Body:
        body = self.objects.pop(key)
        self.infos.pop(key, None)
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self._notify(info, key, "DELETED", body)
        self._collect_garbage(body["metadata"]["uid"])
        return self._view(info, body)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background cascading deletion: dependents whose every owner is gone go too."""
        alive = {b["metadata"]["uid"] for b in self.objects.values()}
        for key, body in list(self.objects.items()):
            refs = body["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            if any(ref.get("uid") in alive for ref in refs):
                continue
            if key in self.objects:
                self.delete(self.infos[key], key[2], key[3])

    def _notify(self, info: ResourceInfo, key: Key, kind: str, body: Body) -> None:
        event = Event(rv=self.rv, info=info, namespace=key[2], type=kind, object=copy.deepcopy(body))
        self.history.append(event)
        for watcher in list(self.watchers):
            if _matches(watcher, event):
                watcher.queue.put_nowait(event)

    def replay(self, watcher: Watcher, since: int) -> list[Event]:
        """History newer than ``since`` for ``watcher``; Gone when it was already dropped."""
        if self.history and since < self.history[0].rv - 1 and len(self.history) == self.history.maxlen:
            raise errors.gone(since)
        return [e for e in self.history if e.rv > since and _matches(watcher, e)]


def _matches(watcher: Watcher, event: Event) -> bool:
    same = (event.info.group, event.info.plural) == (watcher.info.group, watcher.info.plural)
    return (
        same
        and (watcher.namespace is None or watcher.namespace == event.namespace)
        and watcher.match(event.object)
    )


_IGNORED_META = ("resourceVersion", "generation", "managedFields")


def _spec_changed(old: Body, new: Body) -> bool:
    """Generation moves on changes outside metadata and status."""
    strip = ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in old.items() if k not in strip} != {
        k: v for k, v in new.items() if k not in strip
    }


def _same(old: Body, new: Body) -> bool:
    def clean(body: Body) -> str:
        meta = {k: v for k, v in body.get("metadata", {}).items() if k not in _IGNORED_META}
        return json.dumps({**body, "metadata": meta}, sort_keys=True, default=str)

    return clean(old) == clean(new)

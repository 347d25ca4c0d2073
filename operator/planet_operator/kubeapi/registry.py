"""Which resources the server knows: built-ins from a table, custom ones from CRDs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResourceInfo:
    """One REST resource: where it lives and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    columns: tuple[Mapping[str, Any], ...] = ()

    @property
    def api_version(self) -> str:
        """``group/version``, or the bare version for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        """(group, version, plural)."""
        return (self.group, self.version, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries, the resource and its status subresource."""
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.status:
            out.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                        "kind": self.kind, "verbs": ["get", "patch", "update"]})  # fmt: skip
        return out


def _builtin(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceInfo:
    return ResourceInfo(group=group, version=version, plural=plural, kind=kind, **kw)


BUILTINS: tuple[ResourceInfo, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), status=True),
    _builtin("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "services", "Service", short_names=("svc",), status=True),
    _builtin("", "v1", "pods", "Pod", short_names=("po",), status=True, categories=("all",)),
    _builtin("", "v1", "events", "Event", short_names=("ev",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",), status=True),
    _builtin("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    _builtin("apps", "v1", "controllerrevisions", "ControllerRevision"),
    _builtin("apps", "v1", "deployments", "Deployment", short_names=("deploy",), status=True,
             categories=("all",)),
    _builtin("batch", "v1", "jobs", "Job", status=True, categories=("all",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short_names=("crd", "crds"), status=True),
)  # fmt: skip

#: Kopf's peering resources, so ``kopf run`` with peering works against this server.
KOPF_PEERING_CRDS: tuple[ResourceInfo, ...] = (
    _builtin("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    _builtin("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
)


def from_crd(crd: Mapping[str, Any]) -> list[ResourceInfo]:
    """Every served version of a CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        out.append(
            ResourceInfo(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames", [])),
                categories=tuple(names.get("categories", [])),
                status="status" in (version.get("subresources") or {}),
                columns=tuple(version.get("additionalPrinterColumns", [])),
            )
        )
    return out


def read_crds(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """CRD documents from files and folders of YAML."""
    for path in paths:
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
        for file in files:
            for document in yaml.safe_load_all(file.read_text()):
                if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                    yield document


class Registry:
    """Resources by (group, version, plural), with discovery views."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], ResourceInfo] = {}
        for info in (*BUILTINS, *KOPF_PEERING_CRDS):
            self.add(info)

    def add(self, info: ResourceInfo) -> None:
        """Register (or replace) a resource."""
        self._by_key[info.key] = info

    def get(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        """The resource, or None."""
        return self._by_key.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        """The resource serving ``kind`` at ``api_version``."""
        return next(
            (i for i in self._by_key.values() if i.api_version == api_version and i.kind == kind), None
        )

    def groups(self) -> dict[str, list[str]]:
        """Group ▶ versions (the core group is "")."""
        out: dict[str, list[str]] = {}
        for info in self._by_key.values():
            versions = out.setdefault(info.group, [])
            if info.version not in versions:
                versions.append(info.version)
        return out

    def in_version(self, group: str, version: str) -> list[ResourceInfo]:
        """Resources of one group version."""
        return [i for i in self._by_key.values() if i.group == group and i.version == version]

    def all(self) -> list[ResourceInfo]:
        """Every resource."""
        return list(self._by_key.values())

"""Just enough OpenAPI v3 for kubectl: an index and one document per group version.

kubectl (1.27+) reads the PATCH operations to learn that the server validates fields itself
(``fieldValidation``); the documents also carry each CRD's schema so ``kubectl explain`` has
something to show.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from planet_operator.kubeapi.registry import Registry, ResourceInfo


def _prefix(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(registry: Registry) -> dict[str, Any]:
    """GET /openapi/v3."""
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            prefix = _prefix(group, version)
            digest = hashlib.sha256(json.dumps(document(registry, group, version), sort_keys=True).encode())
            paths[prefix] = {
                "serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest.hexdigest()[:16].upper()}"
            }
    return {"paths": paths}


def document(
    registry: Registry, group: str, version: str, schemas: dict[str, Any] | None = None
) -> dict[str, Any]:
    """GET /openapi/v3/apis/GROUP/VERSION."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for info in registry.in_version(group, version):
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("dryRun", "fieldManager", "fieldValidation")
            ],
            "responses": {"200": {"description": "OK"}},
        }
        base = "/" + _prefix(group, version) + ("/namespaces/{namespace}" if info.namespaced else "")
        paths[f"{base}/{info.plural}/{{name}}"] = {"patch": operation, "put": operation}
        paths[f"{base}/{info.plural}"] = {"post": operation}
        schema = (schemas or {}).get(_schema_key(info))
        if schema is not None:
            components[_schema_key(info)] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": components},
    }


def _schema_key(info: ResourceInfo) -> str:
    group = ".".join(reversed(info.group.split("."))) if info.group else "io.k8s.api.core"
    return f"{group}.{info.version}.{info.kind}"


def schema_key(info: ResourceInfo) -> str:
    """The components/schemas key of a kind (reverse-DNS group, version, kind)."""
    return _schema_key(info)

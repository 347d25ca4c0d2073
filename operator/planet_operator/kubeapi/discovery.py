"""Discovery documents: /api, /apis, group and group-version resource lists, /version."""

from __future__ import annotations

from typing import Any

from planet_operator.kubeapi.registry import Registry

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+planetgen",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions() -> dict[str, Any]:
    """GET /api."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def group_list(registry: Registry) -> dict[str, Any]:
    """GET /apis."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [group(registry, name) for name in sorted(registry.groups()) if name],
    }


def group(registry: Registry, name: str) -> dict[str, Any]:
    """GET /apis/GROUP."""
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in registry.groups().get(name, [])]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions,
            "preferredVersion": versions[0] if versions else {}}  # fmt: skip


def resource_list(registry: Registry, group_name: str, version: str) -> dict[str, Any]:
    """GET /api/v1 or /apis/GROUP/VERSION."""
    resources = [entry for info in registry.in_version(group_name, version) for entry in info.discovery()]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version}" if group_name else version,
        "resources": resources,
    }

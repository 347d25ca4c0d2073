"""``kubectl get`` tables (``meta.k8s.io/v1 Table``) from a CRD's printer columns."""

from __future__ import annotations

import datetime
import re
from typing import Any

from planet_operator.kubeapi.registry import ResourceInfo

_FILTER = re.compile(r'^\?\(@\.([\w.]+)\s*==\s*["\']([^"\']*)["\']\)$')


def jsonpath(body: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: ``.a.b``, ``.a[0]``, ``.a[?(@.k=="v")].b``."""
    value = body
    for part in re.findall(r"\.?([^.\[]+)|\[([^\]]+)\]", path):
        name, index = part
        if name:
            value = value.get(name) if isinstance(value, dict) else None
        elif index.isdigit():
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            found = _FILTER.match(index)
            if not found or not isinstance(value, list):
                return None
            key, expected = found.groups()
            value = next(
                (
                    item
                    for item in value
                    if isinstance(item, dict) and str(jsonpath(item, "." + key)) == expected
                ),
                None,
            )
        if value is None:
            return None
    return value


def age(timestamp: Any) -> str:
    """``5m``, ``3h``, ``2d``: what kubectl shows for date columns."""
    try:
        then = datetime.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def table(info: ResourceInfo, items: list[dict[str, Any]], resource_version: str) -> dict[str, Any]:
    """A Table with Name, the printer columns (or Age alone) and the objects."""
    columns = list(info.columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    for column in columns:
        definitions.append({
            "name": column["name"],
            "type": "string" if column.get("type") == "date" else column.get("type", "string"),
            "format": "", "description": column.get("description", ""), "priority": column.get("priority", 0),
        })  # fmt: skip
    rows = []
    for item in items:
        cells: list[Any] = [item["metadata"]["name"]]
        for column in columns:
            value = jsonpath(item, column["jsonPath"])
            if column.get("type") == "date" and value is not None:
                value = age(value)
            cells.append("" if value is None else value)
        partial = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": item["metadata"],
        }
        rows.append({"cells": cells, "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }

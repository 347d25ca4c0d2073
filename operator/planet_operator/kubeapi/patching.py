"""Merge, JSON, strategic-merge and apply patches.

Strategic merge here is JSON merge patch plus merging of lists of objects by their ``name`` (or
``type``, for conditions; ``uid`` for ownerReferences) key, which covers what kubectl apply sends
for the resources this server is used with; ``$patch`` directives are not interpreted.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from planet_operator.kubeapi import errors

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
_LIST_KEYS = ("name", "type", "uid", "containerPort", "mountPath")


def merge(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch (``strategic`` merges keyed lists instead of replacing them)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif strategic and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value)
        else:
            out[key] = merge(out.get(key), value, strategic=strategic)
    return out


def _merge_list(current: list[Any], patch: list[Any]) -> list[Any]:
    key = next(
        (k for k in _LIST_KEYS if patch and all(isinstance(i, dict) and k in i for i in [*current, *patch])),
        None,
    )
    if key is None:
        return copy.deepcopy(patch)
    merged = {item[key]: item for item in copy.deepcopy(current)}
    for item in patch:
        merged[item[key]] = merge(merged.get(item[key]), item, strategic=True)
    return list(merged.values())


def apply_patch(body: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """The patched object."""
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.bad_request("a JSON patch must be a list of operations")
        try:
            result = jsonpatch.apply_patch(body, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise errors.APIError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from None
        return dict(result)
    if not isinstance(patch, dict):
        raise errors.bad_request("a merge patch must be a JSON object")
    return dict(merge(body, patch, strategic=content_type in (STRATEGIC, APPLY)))

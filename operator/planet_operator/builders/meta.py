"""Object metadata shared by every child."""

from __future__ import annotations

from typing import Any

from planet_operator.builders import names
from planet_operator.builders.plan import Plan, Release


def object_meta(
    plan: Plan,
    *,
    name: str,
    release: Release,
    component: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Name, namespace, labels, owner: what makes a child findable and garbage-collected."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": plan.namespace,
        "labels": names.labels(plan.pipeline, release.revision, component),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if plan.owner:
        meta["ownerReferences"] = [dict(plan.owner)]
    return meta

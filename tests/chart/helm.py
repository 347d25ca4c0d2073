"""Render and inspect the chart with the real Helm engine (helm-python-sdk embeds Helm's Go SDK)."""

from __future__ import annotations

import ast
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tests.conftest import EXAMPLES, ROOT

CHART = ROOT / "charts" / "planetgen"
RELEASE, NAMESPACE = "planetgen", "planetgen-system"
KUBE_VERSION = "1.32.0"

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object of an install with ``values``, after the schema check an install makes."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The only object of ``kind``."""
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def granted(rules: list[dict[str, Any]]) -> set[Rule]:
    """(group, resource, verb) triples a list of RBAC rules grants."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


# --- What the operator uses, read from its code -------------------------------------------------

#: kube.client.Client methods ▶ the RBAC verb each one needs.
CLIENT_VERBS = {
    "get": "get",
    "list_objects": "list",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
}
#: Packages that run inside the operator process (the CLI, local stack and API server do not).
OPERATOR_PACKAGES = ("handlers", "reconcile", "rollout", "kube")


def _client_calls() -> Iterator[tuple[Path, str | None, str, str | None]]:
    """(file, resources constant or None for a variable, verb, subresource) of every client call."""
    base = ROOT / "operator" / "planet_operator"
    for package in OPERATOR_PACKAGES:
        for path in sorted((base / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                receiver = node.func.value
                name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
                if name != "client" or node.func.attr not in CLIENT_VERBS or not node.args:
                    continue
                first = node.args[0]
                constant = first.attr if isinstance(first, ast.Attribute) else None
                sub = next(
                    (
                        k.value.value
                        for k in node.keywords
                        if k.arg == "subresource" and isinstance(k.value, ast.Constant)
                    ),
                    None,
                )
                yield path, constant, CLIENT_VERBS[node.func.attr], sub


def _rendered_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every child ``planet render`` builds for the examples (both modes)."""
    from planet_operator.cli import main as cli

    kinds: set[tuple[str, str]] = set()
    for example in EXAMPLES:
        for mode in ("standard", "knative"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert cli.main(["render", "-f", str(example), "--mode", mode]) == 0
            kinds |= {(d["apiVersion"], d["kind"]) for d in yaml.safe_load_all(out.getvalue()) if d}
    return kinds


def operator_api_use(*, peered: bool, clusterwide: bool) -> set[Rule]:
    """Every (group, resource, verb) the operator process needs, derived from its code and Kopf's."""
    import kopf
    from kopf._cogs.structs import references

    import planet_operator.handlers  # noqa: F401  (registers the Kopf handlers)
    from planet_operator.kube import resources

    needed: set[Rule] = set()
    registry = kopf.get_default_registry()
    # Kopf lists and watches every resource a handler or index names.
    for handlers in (registry._indexing, registry._watching, registry._spawning, registry._changing):
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            needed |= {(selector.group or "", selector.any_name, v) for v in ("list", "watch")}
    # On resources with change handlers or daemons, Kopf patches its finalizer and annotations in.
    for handlers in (registry._spawning, registry._changing):
        for handler in handlers.get_all_handlers():
            needed.add((handler.selector.group or "", handler.selector.any_name, "patch"))

    # The operator's own REST calls; a call with a variable resource is apply.ensure, applied to
    # every kind the builders produce.
    variable_verbs: set[str] = set()
    for _path, constant, verb, sub in _client_calls():
        if constant is None:
            variable_verbs.add(verb)
            continue
        resource = getattr(resources, constant)
        plural = f"{resource.plural}/{sub}" if sub else resource.plural
        needed.add((resource.group, plural, verb))
    # apply.ensure's patch may change a child's ownerReferences (a takeover, a re-created pipeline,
    # a shared Job's next owner): OwnerReferencesPermissionEnforcement then checks ``delete`` on it.
    if "patch" in variable_verbs:
        variable_verbs.add("delete")
    for api_version, kind in _rendered_kinds():
        resource = resources.BY_KIND[(api_version, kind)]
        needed |= {(resource.group, resource.plural, verb) for verb in variable_verbs}

    # Children name their pipeline with blockOwnerDeletion: the API server then requires the right
    # to update the owner's finalizers (OwnerReferencesPermissionEnforcement).
    needed.add((resources.PIPELINES.group, f"{resources.PIPELINES.plural}/finalizers", "update"))

    # Kopf itself: events it posts, CRDs it scans and namespaces it resolves (unless the operator's
    # settings turn scanning off), the peering it keeps.
    from planet_operator.handlers import lifecycle

    settings = kopf.OperatorSettings()
    lifecycle.tune(settings)
    needed.add((references.EVENTS.group or "", references.EVENTS.any_name, "create"))
    if not settings.scanning.disabled:
        needed |= {(references.CRDS.group or "", references.CRDS.any_name, v) for v in ("list", "watch")}
    if not settings.scanning.disabled and not clusterwide:
        group = references.NAMESPACES.group or ""
        needed |= {(group, references.NAMESPACES.any_name, v) for v in ("list", "watch")}
    if peered:
        peering = references.CLUSTER_PEERINGS_K if clusterwide else references.NAMESPACED_PEERINGS_K
        needed |= {(peering.group or "", peering.any_name, v) for v in ("list", "watch", "patch")}
    return needed

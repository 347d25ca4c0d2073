"""The operator asks the API server for its children only: server-side label selectors, no scanning."""

from __future__ import annotations

import logging
import time
import urllib.parse
from pathlib import Path

import kopf
import pytest
from kopf._cogs.structs import references
from tests.operator.cluster import Cluster, Operator
from tests.operator.test_render import run_cli

import planet_operator.handlers  # noqa: F401  (registers the handlers)
from planet_operator.handlers import children, lifecycle
from planet_operator.kube import client as kube

OWNED = "app.kubernetes.io/managed-by=planetgen"
#: Every child resource the operator watches ▶ the selector the API server must get.
EXPECTED = {
    ("serving.kserve.io", "v1beta1", "inferenceservices"): OWNED,
    ("serving.kserve.io", "v1alpha1", "inferencegraphs"): OWNED,
    ("apps", "v1", "controllerrevisions"): OWNED,
    ("", "v1", "configmaps"): OWNED,
    # The children's pods (build Jobs' and predictors'): why a child fails.
    ("", "v1", "pods"): OWNED,
    # "exists" is the bare key.
    ("batch", "v1", "jobs"): "planetgen.io/engine-key",
}
PIPELINES = ("planetgen.io", "v1alpha1", "planetpipelines")
READS = ("get", "list", "watch")


def _resource(group: str, version: str, plural: str) -> references.Resource:
    return references.Resource(group=group, version=version, plural=plural, namespaced=True, preferred=True)


async def test_configure_puts_the_handlers_filters_on_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "load_connection", lambda: kube.Connection(server="http://127.0.0.1:9"))
    monkeypatch.delenv("PLANET_METRICS_PORT", raising=False)
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    await lifecycle.configure(settings=settings, memo=memo, logger=logging.getLogger("test"))
    try:
        for key, selector in EXPECTED.items():
            assert settings.watching.label_selectors.collect(_resource(*key)) == [selector], key
        assert settings.watching.label_selectors.collect(_resource(*PIPELINES)) == []
        # Some other ConfigMap-like kind in another group is not touched.
        assert settings.watching.label_selectors.collect(_resource("example.com", "v1", "configmaps")) == []
        assert settings.scanning.disabled
    finally:
        await lifecycle.close(memo=memo)


def test_every_child_handler_filters_on_what_the_server_selects() -> None:
    registry = kopf.get_default_registry()
    handlers = [
        handler
        for registered in (registry._indexing, registry._watching, registry._spawning, registry._changing)
        for handler in registered.get_all_handlers()
    ]
    watched: set[tuple[str, str, str]] = set()
    for handler in handlers:
        selector = handler.selector
        key = (selector.group or "", selector.version or "", str(selector.any_name))
        watched.add(key)
        if key == PIPELINES:
            continue
        # A handler with a wider filter than the server-side selector would miss objects silently.
        assert key in children.FILTERS, f"{handler.id} watches {key} with no server-side selector"
        assert handler.labels == children.FILTERS[key], handler.id
    assert watched == {*EXPECTED, PIPELINES}
    assert {key: children.label_selector(f) for key, f in children.FILTERS.items()} == EXPECTED


def test_label_selector_syntax() -> None:
    assert children.label_selector({"a": "b", "c": kopf.PRESENT, "d": kopf.ABSENT}) == "a=b,c,!d"
    with pytest.raises(TypeError):
        children.label_selector({"a": lambda value, **_: True})


Request = tuple[str, str, dict[str, str]]


def requests_of(cluster: Cluster, *, since: int) -> list[Request]:
    """(verb, path, query) of every request the operator made, from the API server's audit log."""
    seen: dict[str, Request] = {}
    for event in list(cluster.control_plane.audit_events())[since:]:
        if event.get("user", {}).get("username") != cluster.operator_user:
            continue
        uri = urllib.parse.urlsplit(event["requestURI"])
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(uri.query).items()}
        # A watch is audited when its response starts and again when it ends: one request.
        seen[event["auditID"]] = (event["verb"], uri.path, query)
    return list(seen.values())


def test_operator_lists_and_watches_children_with_selectors(cluster: Cluster, tmp_path: Path) -> None:
    since = sum(1 for _ in cluster.control_plane.audit_events())
    operator = Operator(cluster.operator_kubeconfig, tmp_path / "operator.log", cluster.namespace)
    operator.start()
    try:
        plurals = {key[2]: selector for key, selector in EXPECTED.items()}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            requests = requests_of(cluster, since=since)
            watches = {path.rsplit("/", 1)[-1] for verb, path, _ in requests if verb == "watch"}
            if {*plurals, "planetpipelines"} <= watches:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"the operator did not watch every child: {requests}\n{operator.output()[-3000:]}"
            )
    finally:
        operator.stop()
    reads = [(path, query) for verb, path, query in requests_of(cluster, since=since) if verb in READS]
    for path, query in reads:
        plural = path.rsplit("/", 1)[-1]
        if plural in plurals:
            assert query.get("labelSelector") == plurals[plural], (path, query)
            assert f"/namespaces/{cluster.namespace}/" in path, path
        if plural == "planetpipelines":
            assert "labelSelector" not in query, (path, query)
    # No scanning: neither CRDs nor namespaces are listed or watched.
    assert not [p for p, _ in reads if p.endswith(("/customresourcedefinitions", "/namespaces"))], reads


@pytest.mark.parametrize("pattern", ["team-*", "team-?", "!kube-system", "a,b", "Team-A"])
def test_operator_refuses_namespace_patterns(pattern: str) -> None:
    # Without Kopf's namespace discovery a pattern would be skipped silently: refuse it up front.
    result = run_cli("operator", f"--namespace={pattern}")
    assert result.returncode == 2, result.stderr
    assert "exact namespace name" in result.stderr and "Traceback" not in result.stderr

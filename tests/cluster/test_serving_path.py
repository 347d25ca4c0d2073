"""Requests reach pods the way they would in a cluster: gateway ▶ KServe's HTTPRoute ▶ pod, and
KServe's real router ▶ each step's Service, with KServe's storage initializer filling /mnt/models."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.polling import log_tails, until

from planet_harness import stack as harness
from planet_harness.kubelet import Images

ECHO = "test.planetgen.io/echo"
#: A KServe-style predictor: V1 predict appends its hop, and the weights the initializer copied.
PREDICTOR = """
import http.server, json, pathlib, sys
weights = pathlib.Path('/mnt/models/weights.txt').read_text().strip()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._send(200, {"name": sys.argv[1], "ready": True})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        hops = body.get("hops", []) + [sys.argv[1] + ":" + weights]
        self._send(200, {"hops": hops, "path": self.path})
    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Stack]:
    store = tmp_path_factory.mktemp("models")
    (store / "hf" / "test" / "echo").mkdir(parents=True)
    (store / "hf" / "test" / "echo" / "weights.txt").write_text("w1")
    extra = Images(entrypoints={ECHO: [sys.executable, "-c", PREDICTOR]})
    with harness.running(tmp_path_factory.mktemp("stack"), model_store=store, extra=extra) as running:
        yield running


def ready(stack: harness.Stack, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    found = stack.cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if found.returncode:
        return None
    body: dict[str, Any] = json.loads(found.stdout)
    conditions = body.get("status", {}).get("conditions", [])
    return body if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def post(proxy: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with opener.open(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_inference_service_and_graph_through_the_gateway(stack: harness.Stack) -> None:
    cluster = stack.cluster
    cluster.kubectl("create", "namespace", "serve")
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "echo", "namespace": "serve"},
        "spec": {
            "predictor": {
                "storageUris": [{"uri": "hf://test/echo", "mountPath": "/mnt/models"}],
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": ECHO,
                        "args": ["echo"],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }
                ],
            }
        },
    }
    cluster.apply([isvc])
    served = until(
        "InferenceService Ready",
        lambda: ready(stack, "isvc", "echo", "serve"),
        timeout=120,
        describe=log_tails(cluster.logs),
    )
    # KServe's pod mutator added the storage initializer; it copied the weights from the local store.
    pod = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", "serve", "-l", "serving.kserve.io/inferenceservice=echo", "-o", "json"
        ).stdout
    )["items"][0]
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["storage-initializer"]
    url = served["status"]["url"]
    answer = post(stack.proxy, f"{url}/v1/models/echo:predict", {"hops": []})
    assert answer["hops"] == ["echo:w1"]

    graph = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {
            "name": "chain",
            "namespace": "serve",
            "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"name": "first", "serviceName": "echo"},
                        {"name": "second", "serviceName": "echo", "data": "$response"},
                    ],
                }
            }
        },
    }
    cluster.apply([graph])
    until(
        "InferenceGraph Ready",
        lambda: ready(stack, "ig", "chain", "serve"),
        timeout=120,
        describe=log_tails(cluster.logs),
    )

    # In Standard mode KServe gives a graph a Service but no HTTPRoute (its status.url has no route),
    # and reports it Ready from its Deployment before the Service has ready endpoints: a client in the
    # cluster calls the Service, as this one does through the gateway, once it answers.
    def answered() -> dict[str, Any] | None:
        try:
            return post(stack.proxy, "http://chain.serve.svc.cluster.local/", {"hops": []})
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise AssertionError(exc.read().decode()) from None
            return None

    answer = until("the graph to answer", answered, timeout=60, describe=log_tails(cluster.logs))
    # KServe's router called the step's Service twice, through the gateway, feeding $response on.
    assert answer["hops"] == ["echo:w1", "echo:w1"]

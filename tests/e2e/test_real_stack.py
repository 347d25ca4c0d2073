"""The user's journey on the real stack: kubectl apply ▶ build Job ▶ KServe Ready ▶ images ▶ new revision.

Everything here is real except the harness's parts (the process kubelet, the gateway, the local
model store): the operator runs as the pod the chart's Deployment made, KServe's controller writes
the Deployments, Services, HTTPRoutes and status, its pod mutator injects the storage initializer,
and its router serves the InferenceGraph.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from tests.e2e.stack import answer, kubectl, kubectl_json, post, running, until

from planet_harness import devstack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NS = "default"
MANIFEST: dict[str, Any] = {
    "apiVersion": "planetgen.io/v1alpha1",
    "kind": "PlanetPipeline",
    "metadata": {"name": "e2e-planets", "namespace": NS},
    "spec": {
        "version": "v1",
        "model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}},
        # 21:9-ish and tiny, so a CPU answers in seconds.
        "generation": {"width": 152, "height": 64, "steps": 2, "maxSteps": 8},
        # The reference chain, scaled down: x2 ▶ resize ▶ img2img ▶ x2 ▶ resize, 21:9 kept.
        "upscale": {
            "model": {"uri": "s3://planetgen-models/upscalers/realesrgan-x2plus.pth"},
            "tileSize": 128,
            "tileOverlap": 16,
            "stages": [
                {"type": "upscale", "factor": 2},
                {"type": "resize", "width": 224, "height": 96, "filter": "lanczos"},
                {"type": "img2img", "strength": 0.3, "steps": 2},
                {"type": "upscale", "factor": 2},
                {"type": "resize", "width": 336, "height": 144, "filter": "lanczos"},
            ],
        },
        # The reference spec's engine: TensorRT for an H100. The build Job (a pod on the node) fetches
        # the weights with the storage initializer; this node has no CUDA, so its declared fallback
        # compiles ONNX Runtime engines under the operator's key and the generate predictor serves them.
        "engine": {
            "backend": "tensorrt",
            "precision": "fp16",
            "batchSizes": [1],
            "gpuProduct": "NVIDIA-H100-80GB-HBM3",
        },
        "serving": {
            "maxBatchWaitMs": 10,
            "lanes": {"final": {"steps": 2, "priority": 10}, "draft": {"steps": 1}},
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        },
        "rollout": {"steps": []},
    },
}


#: Values the tiny preset's prompt vocabulary has (the predictor refuses others with a 400).
PROMPT = {"color": "deep blue", "atmosphere": "frosted cloudy zones", "moons": "no moons",
          "sky": "distant stars dark sky"}  # fmt: skip


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.DevStack]:
    with running(tmp_path_factory.mktemp("dev")) as dev:
        yield dev


def get(dev: devstack.DevStack, kind: str, name: str) -> dict[str, Any] | None:
    return kubectl_json(dev, "get", kind, name, "-n", NS)


def ready_status(dev: devstack.DevStack) -> dict[str, Any] | None:
    body = get(dev, "pp", "e2e-planets")
    status = (body or {}).get("status") or {}
    return status if status.get("phase") == "Ready" and status.get("url") else None


def test_env_file_is_the_contract_with_the_host(dev: devstack.DevStack) -> None:
    values = dict(
        line.split("=", 1) for line in dev.env_file.read_text().splitlines() if "=" in line and line[0] != "#"
    )
    assert Path(values["KUBECONFIG"]) == dev.cluster.kubeconfig.resolve()
    assert values["PLANET_PROXY"] == dev.stack.proxy
    # The operator is the chart's pod, on the node, under the chart's ServiceAccount.
    pod = dev.operator_pod()
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["nodeName"] and pod["spec"]["serviceAccountName"] == devstack.RELEASE


def test_user_journey(dev: devstack.DevStack) -> None:
    kubectl(dev, "apply", "-f", "-", input=yaml.safe_dump(MANIFEST))
    status = until(dev, "Ready", lambda: ready_status(dev), timeout=900)
    first = status["currentRevision"]

    # The build Job ran as a pod: KServe's storage initializer image fetched the weights first.
    [job] = json.loads(kubectl(dev, "get", "jobs", "-n", NS, "-o", "json"))["items"]
    assert job["status"].get("succeeded") == 1
    init = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["storage-initializer"]
    # KServe's controller made the predictors' Deployments and its mutator added the initializer.
    pods = json.loads(
        kubectl(dev, "get", "pods", "-n", NS, "-l", "serving.kserve.io/inferenceservice", "-o", "json")
    )["items"]
    assert {c["name"] for p in pods for c in p["spec"].get("initContainers", [])} == {"storage-initializer"}
    args = " ".join(a for p in pods for c in p["spec"]["containers"] for a in c.get("args", []))
    assert args.count("--backend=tensorrt") == 2 and "--engine-dir=" in args
    # The fallback is said, not silent: in the build's log and the generate predictor's.
    logs = dev.cluster.workdir / "kubelet" / "pods"
    [build_log] = logs.glob(f"{NS}_{job['metadata']['name']}-*/build.log")
    assert "PLANET_ENGINE_FALLBACK=onnxruntime builds onnxruntime fp32 engines" in build_log.read_text()
    [generate_log] = logs.glob(f"{NS}_e2e-planets-generate-predictor-*/kserve-container.log")
    assert "built as a fallback for tensorrt" in generate_log.read_text()

    # Through status.url: generate ▶ KServe's router ▶ upscale chain ▶ the final 21:9 image.
    answer = until(dev, "the pipeline answers", lambda: _answer(dev, status["url"], PROMPT), timeout=180)
    [prediction] = answer["predictions"]
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image"])))
    assert image.size == (336, 144)
    assert prediction["revision"] == first
    assert [stage["type"] for stage in prediction["stages"]] == [
        "upscale", "resize", "img2img", "upscale", "resize",
    ]  # fmt: skip
    table = kubectl(dev, "get", "pp")
    assert "e2e-planets" in table and "Ready" in table

    # A spec change ▶ a new revision serves.
    changed = json.loads(json.dumps(MANIFEST))
    changed["spec"]["version"] = "v2"
    changed["spec"]["generation"]["guidanceScale"] = 3.0
    kubectl(dev, "apply", "-f", "-", input=yaml.safe_dump(changed))

    def second_ready() -> Any:
        s = ready_status(dev)
        return s if s and s.get("stableRevision") not in (None, first) else None

    second = until(dev, "new revision", second_ready)["stableRevision"]
    until(dev, "the new revision answers", lambda: _revision_answering(dev, status["url"], second))

    # Delete ▶ KServe's objects, their Deployments and pods are garbage-collected.
    kubectl(dev, "delete", "pp", "e2e-planets", "-n", NS, "--wait=false")

    def gone() -> bool:
        left = json.loads(kubectl(dev, "get", "isvc,ig,deployments,pods", "-n", NS, "-o", "json"))["items"]
        return not [o for o in left if o["metadata"].get("labels", {}).get("planetgen.io/pipeline")]

    until(dev, "children gone", gone, timeout=180)


def test_a_killed_operator_comes_back(dev: devstack.DevStack) -> None:
    pod = dev.operator_pod()
    before = pod["status"]["containerStatuses"][0].get("restartCount", 0)
    # The kubelet reports each container as process://PID (its process group).
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))
    os.killpg(pid, signal.SIGKILL)

    def restarted() -> bool:
        now = dev.operator_pod()["status"]
        statuses = now.get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) > before and bool(statuses[0].get("ready"))

    until(dev, "the operator restarted by the kubelet", restarted, timeout=180)


#: A second, lighter pipeline for the traffic split: generate only, torch, one step.
SPLIT: dict[str, Any] = {
    "apiVersion": "planetgen.io/v1alpha1",
    "kind": "PlanetPipeline",
    "metadata": {"name": "e2e-split", "namespace": NS},
    "spec": {
        "version": "v1",
        "model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}},
        "generation": {"width": 152, "height": 64, "steps": 1, "maxSteps": 2},
        "engine": {"backend": "torch", "precision": "fp32"},
        "serving": {
            "maxBatchWaitMs": 5,
            "lanes": {"final": {"steps": 1, "maxConcurrency": 4}},
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
        },
        # One step held until promoted; no analysis falls due while the split is measured.
        "rollout": {"steps": [{"weight": 20, "pause": {}}], "analysis": {"interval": "30m"}},
    },
}
#: Requests through the graph while split. At 20 %, 600 draws put 5 points at 3 standard deviations.
SPLIT_REQUESTS = 600


def test_canary_gets_its_weight_through_the_graph(dev: devstack.DevStack) -> None:
    kubectl(dev, "apply", "-f", "-", input=yaml.safe_dump(SPLIT))
    first = until(dev, "v1 Ready", lambda: _status_if(dev, "e2e-split", phase="Ready"), timeout=600)
    url = first["url"]
    changed = json.loads(json.dumps(SPLIT))
    changed["spec"]["version"] = "v2"
    changed["spec"]["generation"]["guidanceScale"] = 3.0
    kubectl(dev, "apply", "-f", "-", input=yaml.safe_dump(changed))
    rolling = until(
        dev, "canary at 20 %", lambda: _status_if(dev, "e2e-split", trafficPercent=20), timeout=600
    )
    canary, stable = rolling["canaryRevision"], rolling["stableRevision"]
    # The canary runs beside the primary, as InferenceServices of its own.
    assert get(dev, "isvc", f"e2e-split-generate-{canary}") is not None
    # The router rolls out with the new graph: measure once only the new router serves.
    kubectl(dev, "rollout", "status", "deployment/e2e-split", "-n", NS, "--timeout=300s")
    until(
        dev,
        "the canary answers through the graph",
        lambda: _revision_answering(dev, url, canary),
    )

    def one(seed: int) -> str:
        body = {"instances": [{"prompt": PROMPT, "seed": seed}]}
        return str(post(dev, url, body)["predictions"][0]["revision"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        counts = collections.Counter(pool.map(one, range(SPLIT_REQUESTS)))
    assert set(counts) == {stable, canary}, counts
    share = counts[canary] / SPLIT_REQUESTS
    print(f"canary share through the graph: {share:.3f} of {SPLIT_REQUESTS} at weight 20")
    assert abs(share - 0.20) <= 0.05, counts

    # Promote: the warm canary takes all traffic, the primary rolls to its revision, the canary goes.
    kubectl(dev, "annotate", "pp", "e2e-split", "-n", NS, "planetgen.io/promote=true", "--overwrite")

    def promoted() -> Any:
        status = _status_if(dev, "e2e-split", phase="Ready", stableRevision=canary)
        left = get(dev, "isvc", f"e2e-split-generate-{canary}")
        return status if status and left is None else None

    until(dev, "promotion handed over to the primary", promoted, timeout=600)
    primary = get(dev, "isvc", "e2e-split-generate")
    assert primary is not None and primary["metadata"]["labels"]["planetgen.io/revision"] == canary
    # The hand-over waited for the primary's pods: KServe put the revision label on them.
    pods = json.loads(
        kubectl(
            dev,
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "serving.kserve.io/inferenceservice=e2e-split-generate",
            "-o",
            "json",
        )
    )["items"]
    ready = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert ready and all(p["metadata"]["labels"].get("planetgen.io/revision") == canary for p in ready)
    until(
        dev,
        "the primary answers with the new revision",
        lambda: _revision_answering(dev, url, canary),
    )
    kubectl(dev, "delete", "pp", "e2e-split", "-n", NS, "--wait=false")


def _status_if(dev: devstack.DevStack, name: str, **expected: Any) -> dict[str, Any] | None:
    status = ((get(dev, "pp", name) or {}).get("status")) or {}
    return status if all(status.get(k) == v for k, v in expected.items()) and status.get("url") else None


def _answer(dev: devstack.DevStack, url: str, prompt: dict[str, str]) -> dict[str, Any] | None:
    return answer(dev, url, {"instances": [{"prompt": prompt, "seed": 7}]})


def _revision_answering(dev: devstack.DevStack, url: str, revision: str) -> bool:
    answer = _answer(dev, url, PROMPT)
    return bool(answer) and answer["predictions"][0]["revision"] == revision  # type: ignore[index]

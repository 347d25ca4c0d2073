"""The local stack driven as a user would: kubectl apply ▶ Ready ▶ images ▶ new revision ▶ delete."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from PIL import Image
from tests.conftest import KSERVE_SCHEMAS, ROOT

from planet_operator.devstack.stack import LocalStack, StackOptions
from planet_operator.kube import resources
from planet_operator.kube.client import Client, Connection, NotFound

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MANIFEST = {
    "apiVersion": "planetgen.io/v1alpha1",
    "kind": "PlanetPipeline",
    "metadata": {"name": "e2e-planets", "namespace": "default"},
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
        # A compiled backend: the operator's build Job runs `python -m planet_build` (tiny preset,
        # ONNX Runtime here) and both predictors serve the engines it wrote.
        "engine": {"backend": "onnxruntime", "precision": "fp32", "batchSizes": [1, 2]},
        "serving": {
            "maxBatchWaitMs": 10,
            "lanes": {"final": {"steps": 2, "priority": 10}, "draft": {"steps": 1}},
        },
        "rollout": {"steps": []},
    },
}


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[LocalStack]:
    pytest.importorskip("planet_operator.kubeapi")
    crds = [ROOT / "crds"] + ([KSERVE_SCHEMAS] if KSERVE_SCHEMAS.exists() else [])
    options = StackOptions(state_dir=tmp_path / "state", crd_paths=crds, resync_seconds=2.0)
    # Share built presets between runs: building the tiny pipeline is the slow part of a cold start.
    preset_cache = Path(os.environ.get("PLANET_PRESET_DIR", ROOT / ".planet" / "presets"))
    preset_cache.mkdir(parents=True, exist_ok=True)
    (options.state_dir).mkdir(parents=True)
    (options.state_dir / "presets").symlink_to(preset_cache.resolve(), target_is_directory=True)
    async with LocalStack(options) as running:
        yield running


def kubectl(stack: LocalStack, *args: str, stdin: str | None = None) -> str:
    path = shutil.which("kubectl")
    assert path is not None
    result = subprocess.run(
        [path, "--kubeconfig", str(stack.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def apply(stack: LocalStack, client: Client, manifest: dict[str, Any]) -> None:
    if shutil.which("kubectl"):
        kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        return
    meta = manifest["metadata"]
    try:
        live = await client.get(resources.PIPELINES, meta["namespace"], meta["name"])
        await client.patch(resources.PIPELINES, meta["namespace"], meta["name"], {"spec": manifest["spec"]})
        del live
    except NotFound:
        await client.create(resources.PIPELINES, meta["namespace"], manifest)


async def until(what: str, check: Any, stack: LocalStack, timeout: float = 240.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    log = (stack.options.state_dir / "operator.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"timed out waiting for {what}; last {last!r}\noperator log:\n{log}")


async def predict(url: str, instances: list[dict[str, Any]]) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.post(url, json={"instances": instances}) as reply:
            assert reply.status == 200, await reply.text()
            return dict(await reply.json())


async def test_user_journey(stack: LocalStack) -> None:
    client = Client(Connection(server=stack.server.url))
    try:
        await apply(stack, client, MANIFEST)

        async def ready() -> Any:
            try:
                body = await client.get(resources.PIPELINES, "default", "e2e-planets")
            except NotFound:
                return None
            status = body.get("status") or {}
            return status if status.get("phase") == "Ready" and status.get("url") else None

        status = await until("Ready", ready, stack)
        first = status["currentRevision"]
        jobs = (await client.list_objects(resources.JOBS, "default"))["items"]
        assert [j["status"]["succeeded"] for j in jobs] == [1]
        argv = " ".join(stack.child_commands())
        assert argv.count("--backend=onnxruntime") == 2 and "--engine-dir=" in argv

        # Through status.url (the InferenceGraph): generate ▶ upscale chain ▶ the final 21:9 image.
        answer = await predict(
            status["url"],
            [
                {
                    "prompt": {
                        "color": "deep blue",
                        "atmosphere": "frosted cloudy zones",
                        "moons": "no moons",
                        "sky": "distant stars dark sky",
                    },
                    "seed": 7,
                }
            ],
        )
        [prediction] = answer["predictions"]
        image = Image.open(io.BytesIO(base64.b64decode(prediction["image"])))
        assert image.size == (336, 144)
        assert prediction["revision"] == first
        assert [stage["type"] for stage in prediction["stages"]] == [
            "upscale", "resize", "img2img", "upscale", "resize",
        ]  # fmt: skip

        if shutil.which("kubectl"):
            table = kubectl(stack, "get", "pp")
            assert "PHASE" in table and "REVISION" in table and "e2e-planets" in table and "Ready" in table

        # Spec change ▶ a new revision serves.
        changed = {
            **MANIFEST,
            "spec": {
                **MANIFEST["spec"],
                "version": "v2",
                "generation": {**MANIFEST["spec"]["generation"], "guidanceScale": 3.0},
            },
        }
        await apply(stack, client, changed)

        async def new_revision() -> Any:
            s = await ready()
            return s if s and s.get("stableRevision") not in (None, first) else None

        status = await until("new revision", new_revision, stack)
        second = status["stableRevision"]

        async def served_by_second() -> Any:
            try:
                answer = await predict(status["url"], [{"prompt": "a pale gold planet", "seed": 1}])
            except AssertionError:
                return None  # the new revision is still loading
            return answer["predictions"][0]["revision"] == second

        await until("new revision answers", served_by_second, stack)

        # Delete ▶ children and their processes are gone.
        pids = stack.child_pids()[1:]  # predictors only; [0] is the operator
        assert pids
        await client.delete(resources.PIPELINES, "default", "e2e-planets")

        async def gone() -> Any:
            listed = await client.list_objects(resources.INFERENCE_SERVICES, "default")
            alive = [pid for pid in pids if _alive(pid)]
            return not listed.get("items") and not alive

        await until("children and processes gone", gone, stack, timeout=90)
    finally:
        await client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_stack_stops_every_child(tmp_path: Path) -> None:
    pytest.importorskip("planet_operator.kubeapi")
    options = StackOptions(state_dir=tmp_path / "state", crd_paths=[ROOT / "crds"])
    running = LocalStack(options)
    await running.start()
    pids = running.child_pids()
    assert pids
    await running.stop()
    assert not [pid for pid in pids if _alive(pid)]

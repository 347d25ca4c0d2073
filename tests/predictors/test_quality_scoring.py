"""Each image is scored by the verifier: ``quality`` in V1 and V2 answers, ``planet_quality_score``,
``planetgen:quality`` in the provenance, and nothing of it with ``generation.verify: false``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse
from PIL import Image, ImageDraw
from prometheus_client import CollectorRegistry
from scipy import ndimage
from tests.predictors.conftest import upscale_config

from planet_contracts.api.spec import CompositionSpec, PlanetPipelineSpec
from planet_predictors import config, imaging
from planet_predictors.backends.base import Backend, BackendSettings, BatchParams, Generated, Item, Stop
from planet_predictors.quality import palette
from planet_predictors.quality import spec as quality
from planet_predictors.quality.region import Region
from planet_predictors.quality.verifier import Verifier
from planet_predictors.sdxl.model import SDXLModel, ServeSettings
from planet_predictors.serving import metrics as metrics_module
from planet_predictors.serving import protocol
from planet_predictors.serving.metrics import Metrics
from planet_predictors.upscaler.factory import build_model, build_parser

LABELS = {"pipeline": "p", "revision": "r", "component": "generate"}
SPEC: dict[str, Any] = {
    "model": {"base": {"uri": "/mnt/models"}},
    "engine": {"backend": "torch", "precision": "fp32"},
}


# -- the spec ▶ the verifier -------------------------------------------------------------------


def test_region_of_the_default_spec_is_the_default_region() -> None:
    assert quality.region_of(CompositionSpec()) == Region()


def test_region_of_copies_every_field() -> None:
    composition = CompositionSpec(
        left=0.1, right=0.8, top=0.2, bottom=0.7, min_diameter=0.3, max_diameter=0.6
    )
    assert quality.region_of(composition) == Region(
        left=0.1, right=0.8, top=0.2, bottom=0.7, min_diameter=0.3, max_diameter=0.6
    )


def pipeline_spec(**extra: Any) -> PlanetPipelineSpec:
    return PlanetPipelineSpec.model_validate({**SPEC, **extra})


def test_no_verifier_when_verify_is_false() -> None:
    assert quality.verifier_of(pipeline_spec(generation={"verify": False})) is None
    verifier = quality.verifier_of(pipeline_spec(generation={"composition": {"minDiameter": 0.2}}))
    assert verifier is not None and verifier.region.min_diameter == 0.2


def test_sharpness_is_judged_on_final_images_only() -> None:
    chain = {"upscale": {"model": {"uri": "/mnt/up"}, "stages": [{"type": "upscale", "factor": 2}]}}
    alone, native, upscaled = (
        quality.verifier_of(pipeline_spec(), final=False),
        quality.verifier_of(pipeline_spec(**chain), final=False),
        quality.verifier_of(pipeline_spec(**chain), final=True),
    )
    assert alone is not None and native is not None and upscaled is not None
    assert (alone.sharpness, native.sharpness, upscaled.sharpness) == (True, False, True)
    soft = np.zeros((160, 384, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:160, 0:384]
    soft[np.hypot(xx - 192, yy - 80) < 45] = palette.COLORS["crimson"]
    soft = ndimage.gaussian_filter(soft, sigma=(3, 3, 0))  # a smudged limb
    assert "sharpness" in alone.verify(soft, "crimson planet").failed
    verdict = native.verify(soft, "crimson planet")
    assert verdict.failed == [] and "sharpness" not in {c.name for c in verdict.checks}


def test_a_failing_verifier_gives_no_verdict(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Verifier):
        def verify(self, image: Any, prompt: str) -> Any:
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="planet_predictors.quality.spec"):
        assert quality.judge(Broken(), Image.new("RGB", (64, 32)), "a planet") is None
    assert "verifier failed" in caplog.text


# -- metrics ------------------------------------------------------------------------------------


def test_observe_quality_exports_a_histogram_per_lane() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(pipeline="p", revision="r", registry=registry)
    metrics.prime(["final", "draft"])
    lane = {**LABELS, "lane": "final"}
    # Primed: the series exist with no observation.
    assert registry.get_sample_value("planet_quality_score_count", lane) == 0
    assert registry.get_sample_value("planet_quality_score_count", {**LABELS, "lane": "draft"}) == 0
    metrics.observe_quality("final", 0.73)
    metrics.observe_quality("final", 0.15)
    assert registry.get_sample_value("planet_quality_score_count", lane) == 2
    assert registry.get_sample_value("planet_quality_score_sum", lane) == pytest.approx(0.88)
    assert registry.get_sample_value("planet_quality_score_bucket", {**lane, "le": "0.2"}) == 1
    assert registry.get_sample_value("planet_quality_score_bucket", {**lane, "le": "0.8"}) == 2
    assert registry.get_sample_value("planet_quality_score_bucket", {**lane, "le": "+Inf"}) == 2
    buckets = {
        s.labels["le"]
        for family in registry.collect()
        if family.name == "planet_quality_score"
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["lane"] == "final"
    }
    assert buckets == {*(str(b) for b in metrics_module.QUALITY_BUCKETS), "+Inf"}
    assert metrics_module.QUALITY_BUCKETS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# -- protocol -----------------------------------------------------------------------------------


class _Answered:
    format, seed, prompt, lane = "png", 1, "a planet", "final"


def test_prediction_carries_quality_only_when_given() -> None:
    common: dict[str, Any] = {
        "data": b"x",
        "size": (1, 1),
        "revision": "r",
        "timings": {"total": 0.1},
        "keys": ["total"],
    }
    assert "quality" not in protocol.prediction(_Answered(), **common)
    verdict = {"score": 0.5, "failed": [], "checks": {}}
    scored = protocol.prediction(_Answered(), quality=verdict, **common)
    assert scored["quality"] == verdict
    assert list(scored)[-2:] == ["quality", "timings"]


# -- SDXL, in process with a backend that draws a planet ----------------------------------------


class PlanetBackend(Backend):
    """A teal disc, 60 % of the height, centred on a black sky: what the verifier should pass."""

    name = "fake"

    def __init__(self) -> None:
        super().__init__(BackendSettings(model_dir=Path("/nowhere")))

    def load(self) -> None:
        pass

    def generate(
        self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
    ) -> list[Generated]:
        out = []
        for _ in items:
            image = Image.new("RGB", (params.width, params.height))
            radius = params.height * 0.3
            cx, cy = params.width / 2, params.height / 2
            ImageDraw.Draw(image).ellipse(
                (cx - radius, cy - radius, cx + radius, cy + radius), fill=(40, 170, 170)
            )
            out.append(Generated(image, {"denoise": 0.0}))
        return out


def make_sdxl(backend: Backend | None = None, **generation: Any) -> tuple[SDXLModel, CollectorRegistry]:
    registry = CollectorRegistry()
    spec = {**SPEC, "generation": {"width": 384, "height": 160, **generation}}
    model = SDXLModel(
        "sdxl",
        config=config.parse(
            {
                "apiVersion": config.API_VERSION,
                "kind": config.KIND,
                "pipeline": "p",
                "revision": "r",
                "spec": spec,
            }
        ),
        backend=backend or PlanetBackend(),
        serve=ServeSettings(max_batch_wait_ms=0, warmup=False),
        metrics=Metrics(pipeline="p", revision="r", registry=registry),
    )
    model.load()
    return model, registry


def count(registry: CollectorRegistry, lane: str) -> float:
    return registry.get_sample_value("planet_quality_score_count", {**LABELS, "lane": lane}) or 0.0


async def test_sdxl_v1_prediction_carries_its_quality() -> None:
    model, registry = make_sdxl()
    assert count(registry, "draft") == 0
    response, _ = await model({"instances": [{"prompt": "a teal planet", "seed": 1, "lane": "draft"}]})
    [prediction] = response["predictions"]
    verdict = prediction["quality"]
    assert 0.0 <= verdict["score"] <= 1.0
    assert isinstance(verdict["failed"], list)
    assert {"planet", "composition", "color", "sharpness"} <= set(verdict["checks"])
    assert verdict["checks"]["planet"]["passed"] and verdict["checks"]["composition"]["passed"]
    assert count(registry, "draft") == 1
    assert count(registry, "final") == 0
    total = registry.get_sample_value("planet_quality_score_sum", {**LABELS, "lane": "draft"})
    assert total == pytest.approx(verdict["score"], abs=1e-4)
    provenance = imaging.read_provenance(base64.b64decode(prediction["image"]))
    assert provenance["planetgen:quality"] == f"{verdict['score']:.3f}"


async def test_sdxl_composition_comes_from_the_spec() -> None:
    # The drawn planet is 60 % of the height: too big for a region that allows at most 30 %.
    model, _ = make_sdxl(composition={"minDiameter": 0.1, "maxDiameter": 0.3})
    response, _ = await model({"instances": [{"prompt": "a teal planet", "seed": 1}]})
    assert "composition" in response["predictions"][0]["quality"]["failed"]


async def test_sdxl_v2_answer_carries_quality_in_the_metadata() -> None:
    model, registry = make_sdxl()
    prompt = InferInput("prompt", [2], "BYTES", data=["a teal planet", "a crimson planet"])
    seed = InferInput("seed", [2], "INT64", data=[1, 2])
    answer = await model.predict(await model.preprocess(InferRequest("sdxl", infer_inputs=[prompt, seed])))
    assert isinstance(answer, InferResponse)
    outputs = {o.name: o for o in answer.outputs}
    meta = [json.loads(m) for m in outputs["metadata"].data]
    for entry in meta:
        assert 0.0 <= entry["quality"]["score"] <= 1.0
        assert isinstance(entry["quality"]["failed"], list)
    assert "color" in meta[1]["quality"]["failed"]  # a teal disc, a crimson prompt
    assert count(registry, "final") == 2


async def test_sdxl_without_verify_has_no_quality() -> None:
    model, registry = make_sdxl(verify=False)
    assert model.verifier is None
    response, _ = await model({"instances": [{"prompt": "a teal planet", "seed": 1}]})
    [prediction] = response["predictions"]
    assert "quality" not in prediction
    assert "planetgen:quality" not in imaging.read_provenance(base64.b64decode(prediction["image"]))
    assert count(registry, "final") == 0


async def test_sdxl_verifier_failure_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    model, registry = make_sdxl()

    def broken(image: Any, prompt: str) -> Any:
        raise ValueError("cannot measure")

    assert model.verifier is not None
    monkeypatch.setattr(model.verifier, "verify", broken)
    response, _ = await model({"instances": [{"prompt": "a teal planet", "seed": 1}]})
    [prediction] = response["predictions"]
    assert "quality" not in prediction and prediction["image"]
    assert count(registry, "final") == 0


async def test_sdxl_tiny_preset_is_scored(preset_dir: Path) -> None:
    """Random weights draw no planet: a low score, but a verdict all the same."""
    from planet_predictors import backends
    from planet_predictors.presets import tiny

    backend = backends.create(BackendSettings(model_dir=tiny.ensure(preset_dir), device="cpu"))
    model, registry = make_sdxl(backend, steps=1)
    body = {"instances": [{"prompt": "a teal planet", "seed": 3, "width": 128, "height": 56, "steps": 1}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response, _ = await model(body)
    [prediction] = response["predictions"]
    assert 0.0 <= prediction["quality"]["score"] <= 1.0
    assert isinstance(prediction["quality"]["failed"], list)
    assert count(registry, "final") == 1


# -- the upscaler, in process with the tiny preset ----------------------------------------------

LOOP = asyncio.new_event_loop()
CHAIN = [{"type": "upscale", "factor": 2}]


def upscaler(tmp: Path, preset: Path, **generation: Any) -> Any:
    document = upscale_config(CHAIN)
    document["spec"]["generation"].update(generation)
    (tmp / "upscale.json").write_text(json.dumps(document))
    args = build_parser().parse_args(
        [
            "--model_name=upscale",
            f"--pipeline-config={tmp / 'upscale.json'}",
            "--preset=tiny",
            f"--preset-dir={preset}",
            "--max-batch-wait-ms=0",
        ]
    )
    registry = CollectorRegistry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(args, registry=registry)
        model.load()
    return model, registry


@pytest.fixture(scope="module")
def upscalers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[bool, tuple[Any, CollectorRegistry]]]:
    preset = tmp_path_factory.mktemp("upscalers")
    made = {
        verify: upscaler(tmp_path_factory.mktemp("model"), preset, verify=verify) for verify in (True, False)
    }
    yield made
    for model, _ in made.values():
        LOOP.run_until_complete(model.batcher.close())


def planet_png(width: int = 168, height: int = 72) -> str:
    image = Image.new("RGB", (width, height))
    radius = height * 0.3
    ImageDraw.Draw(image).ellipse(
        (width / 2 - radius, height / 2 - radius, width / 2 + radius, height / 2 + radius), fill=(200, 60, 40)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def run(model: Any, body: Any) -> Any:
    async def go() -> Any:
        return await model.predict(await model.preprocess(body))

    return LOOP.run_until_complete(go())


def upscaler_count(registry: CollectorRegistry, lane: str) -> float:
    labels = {"pipeline": "planets", "revision": "r1", "component": "upscale", "lane": lane}
    return registry.get_sample_value("planet_quality_score_count", labels) or 0.0


def test_upscaler_v1_and_v2_carry_quality(upscalers: dict[bool, tuple[Any, CollectorRegistry]]) -> None:
    model, registry = upscalers[True]
    before = upscaler_count(registry, "draft")
    answer = run(
        model, {"instances": [{"image": planet_png(), "prompt": "a red planet", "seed": 5, "lane": "draft"}]}
    )
    [prediction] = answer["predictions"]
    assert 0.0 <= prediction["quality"]["score"] <= 1.0
    assert isinstance(prediction["quality"]["failed"], list)
    assert prediction["quality"]["checks"]["planet"]["passed"]
    assert upscaler_count(registry, "draft") == before + 1
    provenance = imaging.read_provenance(base64.b64decode(prediction["image"]))
    assert provenance["planetgen:quality"] == f"{prediction['quality']['score']:.3f}"

    before = upscaler_count(registry, "final")
    image = InferInput("image", [1], "BYTES", data=[planet_png()])
    prompt = InferInput("prompt", [1], "BYTES", data=["a red planet"])
    response = run(model, InferRequest("upscale", infer_inputs=[image, prompt]))
    meta = json.loads({o.name: o for o in response.outputs}["metadata"].data[0])
    assert 0.0 <= meta["quality"]["score"] <= 1.0
    assert upscaler_count(registry, "final") == before + 1


def test_upscaler_without_verify_has_no_quality(upscalers: dict[bool, tuple[Any, CollectorRegistry]]) -> None:
    model, registry = upscalers[False]
    answer = run(model, {"instances": [{"image": planet_png(), "prompt": "a red planet", "seed": 5}]})
    [prediction] = answer["predictions"]
    assert "quality" not in prediction
    assert "planetgen:quality" not in imaging.read_provenance(base64.b64decode(prediction["image"]))
    assert upscaler_count(registry, "final") == 0
    assert np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["image"])))).shape == (144, 336, 3)


async def test_an_sdxl_answer_with_quality_passes_to_the_upscaler(
    upscalers: dict[bool, tuple[Any, CollectorRegistry]],
) -> None:
    from planet_predictors.upscaler import inputs

    sdxl, _ = make_sdxl()
    answer, _ = await sdxl(
        {"instances": [{"prompt": "a teal planet", "seed": 1, "width": 168, "height": 72}]}
    )
    assert "quality" in answer["predictions"][0]
    model, _ = upscalers[True]
    parsed = inputs.parse(answer, model.limits)
    assert parsed.requests[0].seed == 1


# -- generation.regenerate: final renders under the floor are drawn again ------------------------


class SeededBackend(PlanetBackend):
    """Draws the planet in the prompt's colour only for seeds in ``good``; teal otherwise."""

    def __init__(self, good: set[int]) -> None:
        super().__init__()
        self.good = good
        self.batches: list[list[int]] = []

    def generate(
        self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
    ) -> list[Generated]:
        self.batches.append([item.seed for item in items])
        out = []
        for item in items:
            image = Image.new("RGB", (params.width, params.height))
            radius = params.height * 0.3
            cx, cy = params.width / 2, params.height / 2
            fill = (200, 20, 40) if item.seed in self.good else (40, 170, 170)
            ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
            out.append(Generated(image, {"denoise": 0.0}))
        return out


def redraws(registry: CollectorRegistry, lane: str) -> float:
    return registry.get_sample_value("planet_redraws_total", {**LABELS, "lane": lane}) or 0.0


async def test_regenerate_serves_the_first_redraw_that_passes_with_its_seed() -> None:
    from planet_predictors.sdxl.model import redraw_seed

    second = redraw_seed(5, 2)
    backend = SeededBackend(good={second})
    model, registry = make_sdxl(backend, regenerate={"attempts": 3, "minScore": 0.7})
    response, _ = await model({"instances": [{"prompt": "a crimson planet", "seed": 5}]})
    [prediction] = response["predictions"]
    # Seed 5 and its first redraw draw teal; the second redraw draws crimson and is served.
    assert backend.batches == [[5], [redraw_seed(5, 1)], [second]]
    assert prediction["seed"] == second
    assert prediction["quality"]["failed"] == [] or "color" not in prediction["quality"]["failed"]
    assert prediction["quality"]["draws"] == 3
    assert imaging.read_provenance(base64.b64decode(prediction["image"]))["planetgen:seed"] == str(second)
    # Only the served image is scored into the histogram; the redraws are counted apart.
    assert count(registry, "final") == 1
    assert redraws(registry, "final") == 2


async def test_regenerate_keeps_the_best_try_when_none_passes_and_skips_what_passed() -> None:
    backend = SeededBackend(good={1})
    model, registry = make_sdxl(backend, regenerate={"attempts": 2, "minScore": 0.7})
    body = {
        "instances": [{"prompt": "a crimson planet", "seed": 1}, {"prompt": "a crimson planet", "seed": 9}]
    }
    response, _ = await model(body)
    first, second = response["predictions"]
    assert first["seed"] == 1 and "draws" not in first["quality"]
    # Seed 9 never passes: both redraws run (only it is redrawn) and the original stays served.
    assert [len(b) for b in backend.batches] == [2, 1, 1]
    assert second["seed"] == 9 and second["quality"]["draws"] == 3
    assert "color" in second["quality"]["failed"]
    assert redraws(registry, "final") == 2


async def test_regenerate_leaves_drafts_alone() -> None:
    backend = SeededBackend(good=set())
    model, registry = make_sdxl(backend, regenerate={"attempts": 3})
    response, _ = await model({"instances": [{"prompt": "a crimson planet", "seed": 4, "lane": "draft"}]})
    assert backend.batches == [[4]]
    assert response["predictions"][0]["seed"] == 4
    assert redraws(registry, "draft") == 0


def test_regenerate_needs_the_verifier_and_known_lanes() -> None:
    from planet_contracts.api import spec as api

    unverified = api.PlanetPipelineSpec.model_validate(
        {**SPEC, "generation": {"verify": False, "regenerate": {"attempts": 1}}}
    )
    [violation] = api.violations(unverified)
    assert violation.path == "spec.generation.regenerate.attempts"
    assert "verify" in violation.rule.message
    pipeline = api.PlanetPipelineSpec.model_validate(
        {**SPEC, "generation": {"regenerate": {"attempts": 1, "lanes": ["hero"]}}}
    )
    [violation] = api.violations(pipeline)
    assert violation.path == "spec.generation.regenerate.lanes"
    # Off (attempts 0), the default lanes need not exist.
    quiet = api.PlanetPipelineSpec.model_validate(
        {**SPEC, "serving": {"lanes": {"only": {"steps": 4}}, "defaultLane": "only"}}
    )
    assert api.violations(quiet) == []


async def test_regenerate_checks_redraw_only_on_the_named_failures() -> None:
    from planet_predictors.sdxl.model import redraw_seed

    first = redraw_seed(5, 1)
    backend = SeededBackend(good={first})
    # Every disc is too big for this region, so every image fails composition and scores under 0.7;
    # with checks: [color] the first crimson one is served and no more are drawn.
    model, registry = make_sdxl(
        backend,
        composition={"minDiameter": 0.1, "maxDiameter": 0.3},
        regenerate={"attempts": 3, "checks": ["color"]},
    )
    response, _ = await model({"instances": [{"prompt": "a crimson planet", "seed": 5}]})
    [prediction] = response["predictions"]
    assert backend.batches == [[5], [first]]
    assert prediction["seed"] == first and prediction["quality"]["draws"] == 2
    assert prediction["quality"]["failed"] == ["composition"]
    assert redraws(registry, "final") == 1


async def test_regenerate_checks_redraw_an_image_with_no_planet_at_all() -> None:
    from planet_predictors.sdxl.model import redraw_seed

    class Empty(SeededBackend):
        """An empty sky for seeds outside ``good``: no planet, so no colour can be right."""

        def generate(
            self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
        ) -> list[Generated]:
            drawn = super().generate(params, items, stop=stop)
            return [
                d if item.seed in self.good else Generated(Image.new("RGB", d.image.size), d.timings)
                for d, item in zip(drawn, items, strict=True)
            ]

    first = redraw_seed(5, 1)
    backend = Empty(good={first})
    model, _ = make_sdxl(backend, regenerate={"attempts": 3, "checks": ["color"]})
    response, _ = await model({"instances": [{"prompt": "a crimson planet", "seed": 5}]})
    [prediction] = response["predictions"]
    assert backend.batches == [[5], [first]]
    assert prediction["seed"] == first and "color" not in prediction["quality"]["failed"]

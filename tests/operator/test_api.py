"""The PlanetPipeline API: what is accepted, and what a user is told when it is not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES

from planet_operator.api import validation
from planet_operator.api.spec import PlanetPipelineSpec


def manifest(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}}}
    body.update(spec)
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": "p"},
        "spec": body,
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Any) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        pipeline = validation.parse(document)
        assert pipeline.spec.generation.width % 8 == 0


def test_defaults_are_the_reference_workload_shape() -> None:
    spec = validation.parse(manifest()).spec
    assert (spec.generation.width, spec.generation.height) == (1536, 640)
    assert spec.engine.backend == "tensorrt"
    assert set(spec.serving.lanes) == {"draft", "final"}
    assert spec.serving.lanes["final"].priority > spec.serving.lanes["draft"].priority
    assert [s.weight for s in spec.rollout.steps] == [10, 50]


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas", "<= maxReplicas"),
    ({"autoscaling": {"minReplicas": 0}}, "spec.autoscaling.minReplicas", "scaleToZero"),
    ({"rollout": {"steps": [{"weight": 50}, {"weight": 10}]}}, "spec.rollout.steps", "strictly increasing"),
    ({"rollout": {"steps": [{"weight": 20}, {"weight": 20}]}}, "spec.rollout.steps", "strictly increasing"),
    ({"rollout": {"steps": [{"weight": 0}]}}, "spec.rollout.steps[0].weight", "greater than 0"),
    ({"rollout": {"steps": [{"weight": 101}]}}, "spec.rollout.steps[0].weight", "less than or equal to 100"),
    ({"generation": {"width": 1530}}, "spec.generation.width", "multiples of 8"),
    ({"generation": {"height": 8192}}, "spec.generation.height", "less than or equal to 4096"),
    (
        {"engine": {"backend": "onnxruntime", "precision": "int8"}},
        "spec.engine.precision",
        "valid for the backend",
    ),
    ({"engine": {"backend": "torch", "precision": "fp8"}}, "spec.engine.precision", "valid for the backend"),
    ({"engine": {"backend": "cuda"}}, "spec.engine.backend", "supported values"),
    ({"serving": {"deploymentMode": "serverless"}}, "spec.serving.deploymentMode", "'knative' or 'standard'"),
    ({"serving": {"defaultLane": "vip"}}, "spec.serving.defaultLane", "one of lanes"),
    ({"generation": {"steps": 80}}, "spec.generation.steps", "<= maxSteps"),
    ({"upscale": {"stages": [{"type": "upscale"}]}}, "spec.upscale.stages[0].factor", "needs factor"),
    (
        {"upscale": {"stages": [{"type": "resize", "width": 100}]}},
        "spec.upscale.stages[0].width",
        "width and height",
    ),
    ({"upscale": {"stages": [{"type": "sharpen"}]}}, "spec.upscale.stages[0].type", "supported values"),
    ({"wings": True}, "spec.wings", "Unknown field"),
    ({"model": {}}, "spec.model.base", "Required value"),
    ({"model": {"base": {"uri": "ftp://x"}}}, "spec.model.base.uri", "should match pattern"),
]


@pytest.mark.parametrize(("spec", "path", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_invalid_manifests_name_the_field_and_what_is_allowed(
    spec: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(manifest(**spec))
    lines = [str(error) for error in caught.value.errors]
    assert any(line.startswith(path + ":") and words in line for line in lines), lines
    assert caught.value.render().startswith('The PlanetPipeline "p" is invalid:')


def test_every_problem_is_reported_at_once() -> None:
    bad = manifest(autoscaling={"minReplicas": 3, "maxReplicas": 1}, generation={"width": 1001})
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(bad)
    paths = {error.path for error in caught.value.errors}
    # Shape errors come first; a manifest with only rule errors reports all of them together.
    assert "spec.generation.width" in paths
    bad = manifest(
        autoscaling={"minReplicas": 3, "maxReplicas": 1}, engine={"backend": "torch", "precision": "int8"}
    )
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(bad)
    assert {e.path for e in caught.value.errors} == {"spec.autoscaling.minReplicas", "spec.engine.precision"}


def test_parse_spec_matches_parse() -> None:
    body = manifest(autoscaling={"minReplicas": 5, "maxReplicas": 2})
    with pytest.raises(validation.InvalidPipeline) as whole:
        validation.parse(body)
    with pytest.raises(validation.InvalidPipeline) as spec_only:
        validation.parse_spec(body["spec"], name="p")
    assert [str(e) for e in whole.value.errors] == [str(e) for e in spec_only.value.errors]


def test_spec_round_trips_through_json() -> None:
    document = yaml.safe_load((EXAMPLES[0].parent / "ethereal-planets.yaml").read_text())
    spec = validation.parse(document).spec
    again = PlanetPipelineSpec.model_validate(spec.model_dump(mode="json", by_alias=True))
    assert again == spec
    assert copy.deepcopy(spec) == spec

"""The PlanetPipeline API: what is accepted, and what a user is told when it is not."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES

from planet_contracts.api import resource, validation
from planet_contracts.api import spec as spec_models
from planet_contracts.api.spec import PlanetPipelineSpec
from planet_operator.builders import config, names, plan, revision
from planet_operator.crd import generate


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


# --- Conformance with what KServe and Kubernetes accept (issue 16). ---


def named(name: str, **spec: Any) -> dict[str, Any]:
    document = manifest(**spec)
    document["metadata"]["name"] = name
    return document


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("1planet", "must be a DNS-1035 label"),
        ("planet.v2", "must be a DNS-1035 label"),  # a valid Kubernetes name, not for KServe
        ("Planet", "must be a DNS-1035 label"),
        ("planet-", "must be a DNS-1035 label"),
        ("p" * (resource.MAX_NAME_LENGTH + 1), f"at most {resource.MAX_NAME_LENGTH} characters"),
    ],
)
def test_names_kserve_would_refuse_are_refused(name: str, words: str) -> None:
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(named(name))
    assert any(
        line.startswith("metadata.name: Invalid value") and words in line
        for line in map(str, caught.value.errors)
    )


def test_the_longest_name_leaves_every_derived_name_within_63() -> None:
    assert resource.MAX_NAME_LENGTH == 27
    pipeline = "p" * resource.MAX_NAME_LENGTH
    validation.parse(named(pipeline))
    rev = "f" * revision.REVISION_LENGTH
    isvcs = [names.generate_service(pipeline), names.upscale_service(pipeline)]
    isvcs += [names.generate_service(pipeline, rev), names.upscale_service(pipeline, rev)]  # the canaries
    derived = [names.graph(pipeline), f"isvc.{names.graph(pipeline)}"]
    for isvc in isvcs:
        predictor = f"{isvc}-predictor"  # KServe: Deployment, Service, HPA/ScaledObject, Knative Service
        derived += [isvc, predictor, f"isvc.{predictor}", f"{predictor}-00001"]
    assert max(map(len, derived)) == 63
    assert all(re.fullmatch(resource.NAME_PATTERN, n) or n.startswith("isvc.") for n in derived)


@pytest.mark.parametrize("product", ["NVIDIA H100 80GB", "NVIDIA-H100-", "g" * 64, "nvidia.com/h100"])
def test_gpu_product_must_be_a_label_value(product: str) -> None:
    # The build Job's nodeSelector carries it: the API server would refuse the Job, not the pipeline.
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(manifest(engine={"gpuProduct": product}))
    assert [e.path for e in caught.value.errors] == ["spec.engine.gpuProduct"]


def test_a_real_gpu_product_is_accepted() -> None:
    spec = validation.parse(manifest(engine={"gpuProduct": "NVIDIA-H100-80GB-HBM3"})).spec
    assert spec.engine.gpu_product == "NVIDIA-H100-80GB-HBM3"


def test_scale_to_zero_needs_knative_mode() -> None:
    zero = {"minReplicas": 0, "scaleToZero": True}
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(manifest(autoscaling=zero))  # Standard is the default mode
    [error] = caught.value.errors
    assert error.path == "spec.autoscaling.scaleToZero"
    assert "knative" in error.message and "activator" in error.message
    spec = validation.parse(manifest(autoscaling=zero, serving={"deploymentMode": "knative"})).spec
    assert spec.autoscaling.scale_to_zero


def test_a_spec_too_big_for_its_config_map_names_the_field() -> None:
    # Within every CRD bound, but each emoji takes 12 bytes as JSON escapes (\ud83e\ude90).
    values = ["\U0001fa90" * 120 for _ in range(200)]
    prompt = {"template": "{color}", "attributes": [{"name": "color", "values": values}]}
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(manifest(generation={"prompt": prompt}))
    [error] = caught.value.errors
    assert (error.path, error.reason) == ("spec.generation.prompt.attributes[0].values", "Too long")
    assert f"more than {validation.MAX_CONFIG_BYTES}" in str(error)
    with pytest.raises(validation.InvalidPipeline):
        validation.parse_spec(manifest(generation={"prompt": prompt})["spec"])


#: Map keys the schema cannot bound; the rules named here bound them.
KEY_BOUNDS = {".serving.lanes": 63, ".serving.resources.requests": 317, ".serving.resources.limits": 317}
#: Lists bounded together by a rule rather than one by one.
SHARED_BOUNDS = {".generation.prompt.attributes[].values": spec_models.MAX_PROMPT_VALUES}


def _worst(node: dict[str, Any], path: str, depth: int, shared: dict[str, int]) -> int:
    """Most bytes ``node`` can take in ``json.dumps(indent=2)`` at ``depth``, escaping every character."""
    pad, close = 2 * (depth + 1), 3 + 2 * depth  # an item's indent; the brackets and closing indent

    def text(length: int) -> int:
        return 2 + 2 * length  # quotes; `"` and `\` escape to two bytes

    if node.get("x-kubernetes-int-or-string"):
        return max(24, text(node["maxLength"]))
    kind = node.get("type")
    if kind == "string":
        return text(max(map(len, node["enum"])) if "enum" in node else node["maxLength"])
    if kind in ("integer", "number", "boolean"):
        return 24
    if kind == "array":
        item = pad + _worst(node["items"], f"{path}[]", depth + 1, shared) + 2
        if path in SHARED_BOUNDS:
            shared[path] = SHARED_BOUNDS[path] * item
            return close
        return close + node["maxItems"] * item
    if kind == "object" and "properties" in node:
        fields = node["properties"].items()
        return close + sum(
            pad + text(len(k)) + 2 + _worst(c, f"{path}.{k}", depth + 1, shared) + 2 for k, c in fields
        )
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        value = _worst(node["additionalProperties"], f"{path}.<key>", depth + 1, shared)
        return close + node["maxProperties"] * (pad + text(KEY_BOUNDS[path]) + 2 + value + 2)
    raise AssertionError(f"spec{path} is unbounded: {node}")


def test_the_largest_spec_the_crd_admits_fits_its_config_map() -> None:
    schema = generate.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    shared: dict[str, int] = {}
    # As validation.config_bytes measures it: {"spec": ...}, so the spec sits one level deep.
    worst = len('{\n  "spec": ') + _worst(schema, "", 1, shared) + len("\n}") + sum(shared.values())
    assert worst <= validation.MAX_CONFIG_BYTES
    # The ConfigMap holds the spec twice, plus a few hundred bytes of names and hashes.
    assert 2 * worst + 4096 < 1024 * 1024 // 2 + 4096


def test_the_real_config_map_matches_what_validation_measures() -> None:
    # A big but ordinary spec: the prompt at its bound, in plain ASCII.
    values = [f"{i:03d}" + "x" * 117 for i in range(spec_models.MAX_PROMPT_VALUES)]
    prompt = {"template": "{color}", "attributes": [{"name": "color", "values": values}]}
    parsed = validation.parse(manifest(generation={"prompt": prompt})).spec
    measured = validation.config_bytes(parsed.model_dump(mode="json", by_alias=True, exclude_none=True))
    made = plan.single("p", "default", parsed, "0" * revision.REVISION_LENGTH)
    data = config.config_map(made, made.stable)["data"]
    assert len(data) == 2
    for text in data.values():
        # Each copy is the spec plus a few fields, one level deeper than validation measures.
        assert measured <= len(text) < measured + 4096
    assert sum(len(text) for text in data.values()) < 2 * validation.MAX_CONFIG_BYTES

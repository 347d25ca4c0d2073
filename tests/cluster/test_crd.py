"""The PlanetPipeline CRD on a real kube-apiserver: installable, defaulting, and enforcing every rule."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from tests.cluster.conftest import CRD
from tests.conftest import EXAMPLES, ROOT

from planet_contracts.api import resource, rules, spec, validation
from planet_harness.controlplane import ControlPlane

BASE: dict[str, Any] = {"model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}}}
RESIZE = {"type": "resize", "width": 128, "height": 128}
UPSCALER = {"uri": "hf://org/realesrgan-x2"}

#: One spec that breaks each rule (merged into BASE), and the field path the server must name.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "LoRA names must be unique": (
        {"model": {"loras": [{"name": "a", "uri": "hf://o/a"}, {"name": "a", "uri": "hf://o/b"}]}},
        "spec.model.loras",
    ),
    "default must be one of values": (
        {
            "generation": {
                "prompt": {
                    "template": "{color} planet",
                    "attributes": [{"name": "color", "values": ["red"], "default": "blue"}],
                }
            }
        },
        "spec.generation.prompt.attributes[0].default",
    ),
    "contrast needs at most 8 values (the rest would be cut off)": (
        {
            "generation": {
                "prompt": {
                    "template": "{color} planet",
                    "attributes": [
                        {"name": "color", "values": [f"c{i}" for i in range(9)], "contrast": True}
                    ],
                }
            }
        },
        "spec.generation.prompt.attributes[0].contrast",
    ),
    "attribute names must be unique": (
        {
            "generation": {
                "prompt": {
                    "template": "{color} planet",
                    "attributes": [
                        {"name": "color", "values": ["red"]},
                        {"name": "color", "values": ["blue"]},
                    ],
                }
            }
        },
        "spec.generation.prompt.attributes",
    ),
    "template must use every attribute as {name}": (
        {
            "generation": {
                "prompt": {"template": "a planet", "attributes": [{"name": "color", "values": ["red"]}]}
            }
        },
        "spec.generation.prompt.template",
    ),
    "width and height must be multiples of 8": ({"generation": {"width": 1001}}, "spec.generation.width"),
    "steps must be <= maxSteps": ({"generation": {"steps": 40, "maxSteps": 35}}, "spec.generation.steps"),
    "an upscale stage needs factor": (
        {"upscale": {"stages": [{"type": "upscale"}], "model": UPSCALER}},
        "spec.upscale.stages[0].factor",
    ),
    "a resize stage needs width and height": (
        {"upscale": {"stages": [{"type": "resize", "width": 128}]}},
        "spec.upscale.stages[0].width",
    ),
    "an img2img stage needs strength": (
        {"upscale": {"stages": [{"type": "img2img"}]}},
        "spec.upscale.stages[0].strength",
    ),
    "factor and model apply to upscale stages only": (
        {"upscale": {"stages": [{**RESIZE, "factor": 2}]}},
        "spec.upscale.stages[0].type",
    ),
    "tileOverlap must be less than half of tileSize": (
        {"upscale": {"stages": [RESIZE], "tileSize": 64, "tileOverlap": 32}},
        "spec.upscale.tileOverlap",
    ),
    "each upscale stage needs a model, or upscale.model must be set": (
        {"upscale": {"stages": [{"type": "upscale", "factor": 2}]}},
        "spec.upscale.model",
    ),
    "batchSizes must be unique": ({"engine": {"batchSizes": [1, 1]}}, "spec.engine.batchSizes"),
    "defaultLane must name one of lanes": ({"serving": {"defaultLane": "nope"}}, "spec.serving.defaultLane"),
    "every lane's steps must be <= generation.maxSteps": (
        {"serving": {"lanes": {"final": {"steps": 100}}}},
        "spec.serving.lanes",
    ),
    "minReplicas must be <= maxReplicas": (
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
    ),
    "minReplicas 0 needs scaleToZero: true": (
        {"autoscaling": {"minReplicas": 0}},
        "spec.autoscaling.minReplicas",
    ),
    "steps must be strictly increasing in weight": (
        {"rollout": {"steps": [{"weight": 50}, {"weight": 10}]}},
        "spec.rollout.steps",
    ),
}
PRECISION = next(r for r in spec.EngineSpec.__rules__ if r.field == ".precision")
INVALID[PRECISION.message] = (
    {"engine": {"backend": "onnxruntime", "precision": "int8"}},
    "spec.engine.precision",
)
SCALE_TO_ZERO = next(r for r in spec.PlanetPipelineSpec.__rules__ if r.field == ".autoscaling.scaleToZero")
INVALID[SCALE_TO_ZERO.message] = (
    {"autoscaling": {"minReplicas": 0, "scaleToZero": True}},  # Standard is the default mode
    "spec.autoscaling.scaleToZero",
)
INVALID["attributes may list at most 256 values together"] = (
    {
        "generation": {
            "prompt": {
                "template": "{a} {b} {c}",
                "attributes": [{"name": n, "values": [f"v{i}" for i in range(100)]} for n in "abc"],
            }
        }
    },
    "spec.generation.prompt.attributes",
)
INVALID["regenerate needs verify: true (the verifier's score decides what is redrawn)"] = (
    {"generation": {"verify": False, "regenerate": {"attempts": 2}}},
    "spec.generation.regenerate.attempts",
)
INVALID["generation.regenerate.lanes must name lanes of serving.lanes"] = (
    {"generation": {"regenerate": {"attempts": 2, "lanes": ["hero"]}}},
    "spec.generation.regenerate.lanes",
)
INVALID["left must be < right"] = (
    {"generation": {"composition": {"left": 0.6, "right": 0.4}}},
    "spec.generation.composition.left",
)
INVALID["top must be < bottom"] = (
    {"generation": {"composition": {"top": 0.5, "bottom": 0.5}}},
    "spec.generation.composition.top",
)
INVALID["minDiameter must be <= maxDiameter"] = (
    {"generation": {"composition": {"minDiameter": 0.9, "maxDiameter": 0.5}}},
    "spec.generation.composition.minDiameter",
)
STABILIZATION = next(r for r in spec.PlanetPipelineSpec.__rules__ if r.field == ".autoscaling")
INVALID[STABILIZATION.message] = (
    {"serving": {"deploymentMode": "knative"}, "autoscaling": {"scaleDownStabilizationSeconds": 30}},
    "spec.autoscaling",
)
INVALID["lane names must be at most 63 characters"] = (
    {"serving": {"lanes": {"final": {"steps": 30}, "l" * 64: {"steps": 8}}}},
    "spec.serving.lanes",
)
INVALID["resource names must be at most 317 characters"] = (
    {"serving": {"resources": {"requests": {"example.com/" + "x" * 306: 1}}}},
    "spec.serving.resources.requests",
)


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = (
            merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def manifest(name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": name},
        "spec": body,
    }


def dry_run(cluster: ControlPlane, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    result = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(obj),
        check=False,
    )
    return result.returncode, result.stdout if result.returncode == 0 else result.stderr


def every_rule() -> list[rules.Rule]:
    seen: dict[str, rules.Rule] = {}
    pending: list[type[Any]] = [spec.PlanetPipelineSpec]
    while pending:
        cls = pending.pop()
        for rule in getattr(cls, "__rules__", ()):
            seen[rule.message] = rule
        for field in cls.model_fields.values():
            for arg in [field.annotation, *getattr(field.annotation, "__args__", ())]:
                for inner in [arg, *getattr(arg, "__args__", ())]:
                    if isinstance(inner, type) and issubclass(inner, rules.RuledModel):
                        pending.append(inner)
    return list(seen.values())


def test_committed_and_chart_crds_are_accepted(cluster: ControlPlane) -> None:
    # The session fixture applied crds/; the chart's copy must be the same object, accepted as well.
    chart_copy = ROOT / "charts" / "planetgen" / "crds" / CRD.name
    assert yaml.safe_load(chart_copy.read_text()) == yaml.safe_load(CRD.read_text())
    cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(chart_copy))
    established = cluster.kubectl(
        "get",
        "crd",
        "planetpipelines.planetgen.io",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ).stdout
    assert established == "True"


def test_base_uri_alone_is_valid_and_defaulted(cluster: ControlPlane, namespace: str) -> None:
    code, out = dry_run(cluster, namespace, manifest("minimal", BASE))
    assert code == 0, out
    served = json.loads(out)["spec"]
    # Server-side defaults match the models' defaults, so the operator and kubectl agree.
    expected = spec.PlanetPipelineSpec.model_validate(BASE).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert served == expected


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted(cluster: ControlPlane, namespace: str, path: Any) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        code, out = dry_run(cluster, namespace, document)
        assert code == 0, out


def test_every_rule_has_an_invalid_case() -> None:
    assert {rule.message for rule in every_rule()} == set(INVALID)


@pytest.mark.parametrize("message", sorted(INVALID))
def test_rule_is_enforced_with_its_field_path(cluster: ControlPlane, namespace: str, message: str) -> None:
    patch, path = INVALID[message]
    body = manifest("broken", merged(BASE, patch))
    code, out = dry_run(cluster, namespace, body)
    assert code != 0, f"the server accepted a spec breaking {message!r}"
    assert f"{path}: Invalid value" in out and message in out, out
    # The operator and `planet render` refuse the same spec with the same words.
    with pytest.raises(validation.InvalidPipeline) as refused:
        validation.parse(body)
    assert path in str(refused.value) and message in str(refused.value)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("p" * (resource.MAX_NAME_LENGTH + 1), resource.NAME_RULES[1]),
        ("planet.v2", resource.NAME_RULES[0]),  # a valid Kubernetes name, not a KServe one
        ("1planet", resource.NAME_RULES[0]),
    ],
)
def test_names_kserve_would_refuse_are_refused(
    cluster: ControlPlane, namespace: str, name: str, rule: rules.Rule
) -> None:
    code, out = dry_run(cluster, namespace, manifest(name, BASE))
    assert code != 0 and rule.message in out, out
    with pytest.raises(validation.InvalidPipeline) as refused:
        validation.parse(manifest(name, BASE))
    assert rule.message in str(refused.value)


def test_the_longest_name_is_accepted(cluster: ControlPlane, namespace: str) -> None:
    code, out = dry_run(cluster, namespace, manifest("p" * resource.MAX_NAME_LENGTH, BASE))
    assert code == 0, out


@pytest.mark.parametrize("product", ["NVIDIA H100 80GB", "g" * 64, "nvidia.com/h100"])
def test_gpu_product_must_be_a_label_value(cluster: ControlPlane, namespace: str, product: str) -> None:
    body = manifest("gpu", merged(BASE, {"engine": {"gpuProduct": product}}))
    code, out = dry_run(cluster, namespace, body)
    assert code != 0 and "spec.engine.gpuProduct: " in out, out
    code, out = dry_run(
        cluster, namespace, manifest("gpu", merged(BASE, {"engine": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"}}))
    )
    assert code == 0, out


def test_scale_to_zero_is_accepted_in_knative_mode(cluster: ControlPlane, namespace: str) -> None:
    patch = {"autoscaling": {"minReplicas": 0, "scaleToZero": True}, "serving": {"deploymentMode": "knative"}}
    code, out = dry_run(cluster, namespace, manifest("zero", merged(BASE, patch)))
    assert code == 0, out


def patch_spec(cluster: ControlPlane, namespace: str, name: str, patch: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "patch", "pp", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch}), check=False
    )


def test_rules_hold_on_update(cluster: ControlPlane, namespace: str) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest("live", BASE)))
    bad = patch_spec(cluster, namespace, "live", {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}})
    assert bad.returncode != 0 and "minReplicas must be <= maxReplicas" in bad.stderr, bad.stderr
    # Removing an optional section and adding another keeps the object valid.
    good = patch_spec(cluster, namespace, "live", {"upscale": {"stages": [RESIZE]}, "rollout": None})
    assert good.returncode == 0, good.stderr
    served = json.loads(cluster.kubectl("get", "pp", "live", "-n", namespace, "-o", "json").stdout)["spec"]
    assert served["rollout"]["steps"][0]["weight"] == 10, "rollout was defaulted again after removal"

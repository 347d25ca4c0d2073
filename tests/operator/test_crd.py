"""The generated CRD: structural, in sync with the committed copies, and saying what the models say."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pydantic
import pytest
import yaml
from tests.conftest import EXAMPLES, ROOT

from planet_contracts.api import rules, spec, validation
from planet_operator.crd import cel, generate
from planet_operator.schemas import strict

CRD = generate.crd()
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("folder", ["crds", "charts/planetgen/crds"])
def test_committed_copies_equal_planet_crds(folder: str) -> None:
    committed = (ROOT / folder / generate.CRD_FILE).read_text()
    assert committed == generate.crds_yaml(), f"{folder} drifted: run `make crds` and commit"


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural() -> None:
    for path, node in walk(SCHEMA):
        assert "$ref" not in node and "$defs" not in node, path
        assert "title" not in node, path
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert not ({"anyOf", "oneOf", "allOf"} & node.keys()), f"{path}: unions are not structural"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_crd_is_a_valid_apiextensions_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(CRD, "1.32.0", strict=True)


def test_crd_names_and_columns() -> None:
    names = CRD["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "PlanetPipeline",
        "planetpipelines",
        ["pp", "planet"],
    )
    version = CRD["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Revision",
        "Traffic",
        "Ready",
        "Age",
    ]


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does: fill absent fields from `default`, then recurse."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for key, prop in schema.get("properties", {}).items():
            if key not in out and "default" in prop:
                out[key] = prop["default"]
            if key in out:
                out[key] = apply_defaults(out[key], prop)
        if isinstance(schema.get("additionalProperties"), dict):
            out = {k: apply_defaults(v, schema["additionalProperties"]) for k, v in out.items()}
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_crd_defaults_equal_model_defaults(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    defaulted = apply_defaults(document["spec"], SCHEMA["properties"]["spec"])
    from_models = validation.parse(document).spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert defaulted == from_models


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd(path: Path) -> None:
    index = strict.load_crds(ROOT / "crds")
    for document in yaml.safe_load_all(path.read_text()):
        assert index.validate(document) == []


def test_crd_refuses_what_the_models_refuse() -> None:
    index = strict.load_crds(ROOT / "crds")
    base = {"apiVersion": "planetgen.io/v1alpha1", "kind": "PlanetPipeline", "metadata": {"name": "x"}}
    bad = {
        **base,
        "spec": {"model": {"base": {"uri": "hf://a/b"}}, "engine": {"backend": "cuda"}, "wings": 1},
    }
    problems = {str(p) for p in index.validate(bad)}
    assert any(p.startswith("spec.engine.backend") for p in problems)
    assert any(p.startswith("spec.wings: unknown field") for p in problems)


# --- CEL rules: the CRD's rules must agree with the Python twins that the operator runs. ---

CEL = celpy.Environment()


def _is_sorted(values: Any) -> Any:
    return celpy.celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(values)))


def _sum(values: Any) -> Any:
    return celpy.celtypes.IntType(sum(values))


def cel_says(rule: rules.Rule, model: pydantic.BaseModel) -> bool:
    program = CEL.program(CEL.compile(rule.cel), functions={"isSorted": _is_sorted, "sum": _sum})
    document = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return bool(program.evaluate({"self": celpy.json_to_cel(document)}))


def nested(model: pydantic.BaseModel) -> Iterator[pydantic.BaseModel]:
    yield model
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, pydantic.BaseModel):
                yield from nested(item)


def specs_to_check() -> Iterator[spec.PlanetPipelineSpec]:
    for path in EXAMPLES:
        yield validation.parse(yaml.safe_load(path.read_text())).spec
    # Shape-valid specs that break one rule each; model_validate skips rules, so they construct.
    base = {"model": {"base": {"uri": "hf://a/b"}}}
    breakers: list[dict[str, Any]] = [
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        {"autoscaling": {"minReplicas": 0}},
        {"rollout": {"steps": [{"weight": 50}, {"weight": 10}]}},
        {"rollout": {"steps": [{"weight": 20}, {"weight": 20}]}},
        {"generation": {"width": 1530, "steps": 60, "maxSteps": 40}},
        {"engine": {"backend": "onnxruntime", "precision": "int8", "batchSizes": [1, 1]}},
        {"serving": {"defaultLane": "vip", "lanes": {"fast": {"steps": 300 // 2}}}},
        {"upscale": {"stages": [{"type": "upscale"}, {"type": "resize", "factor": 2}, {"type": "img2img"}]}},
        {
            "upscale": {
                "stages": [{"type": "resize", "width": 64, "height": 64}],
                "tileSize": 64,
                "tileOverlap": 40,
            }
        },
        {
            "model": {
                "base": {"uri": "hf://a/b"},
                "loras": [{"name": "x", "uri": "/a"}, {"name": "x", "uri": "/b"}],
            }
        },
        {
            "generation": {
                "prompt": {
                    "template": "{color}",
                    "attributes": [
                        {"name": "color", "values": ["red"], "default": "blue"},
                        {"name": "sky", "values": ["dark"]},
                        {"name": "moons", "values": [f"{n} moons" for n in range(9)], "contrast": True},
                    ],
                }
            }
        },
    ]
    breakers += [
        {"autoscaling": {"minReplicas": 0, "scaleToZero": True}},  # Standard is the default mode
        {
            "generation": {
                "composition": {
                    "left": 0.6,
                    "right": 0.4,
                    "top": 0.9,
                    "bottom": 0.1,
                    "minDiameter": 0.9,
                    "maxDiameter": 0.5,
                }
            }
        },
        {"serving": {"lanes": {"final": {"steps": 8}, "l" * 64: {"steps": 8}}}},
        {"serving": {"resources": {"requests": {"x" * 318: 1}, "limits": {}}}},
        {"generation": {"verify": False, "regenerate": {"attempts": 2, "lanes": ["hero"]}}},
        {
            "generation": {
                "prompt": {
                    "template": "{a} {b} {c}",
                    "attributes": [{"name": name, "values": [f"v{i}" for i in range(100)]} for name in "abc"],
                }
            }
        },
    ]
    for breaker in breakers:
        yield spec.PlanetPipelineSpec.model_validate({**base, **breaker})


def test_cel_rules_agree_with_python_rules() -> None:
    checked = broken = 0
    for planet_spec in specs_to_check():
        for model in nested(planet_spec):
            for rule in getattr(type(model), "__rules__", ()):
                python = rule.check(model)
                assert cel_says(rule, model) == python, f"{type(model).__name__}: {rule.cel}"
                checked += 1
                broken += not python
    # Every rule must have been seen failing at least once, or this test proves little.
    all_rules = {r.cel for cls in rules.RuledModel.__subclasses__() for r in cls.__rules__}
    assert broken >= len(all_rules) - 1, (checked, broken, len(all_rules))


def test_every_rule_is_in_the_crd() -> None:
    emitted = {
        entry["rule"] for _, node in walk(SCHEMA) for entry in node.get("x-kubernetes-validations", [])
    }
    # Each rule goes out behind the has() guards derived for it from its model (crd/cel.py).
    declared = {cel.guard(r.cel, cls) for cls in rules.RuledModel.__subclasses__() for r in cls.__rules__}
    assert declared <= emitted

"""The CRD's CEL rules hold wherever the API server evaluates them, and each still rejects its case.

A kube-apiserver evaluates every rule on its node's `default` at CRD creation (with no nested defaults
applied), and on every object, whatever optional fields it leaves out. In CEL, reading an absent
field is an error, and so is `has(self.a.b)` when `self.a` is absent. cel-python is laxer about the
latter (its `has()` answers false), so these tests run it with a strict `has()`.

What cel-python cannot check: `isSorted()` and `sum()` from the Kubernetes lists library (supplied
here as Python functions of the same meaning), and what the API server does at CRD creation besides running
rules on defaults: type-checking each rule against the schema and estimating its cost. Those were
checked with k8s.io/apiextensions-apiserver v0.34's own CRD validation when the guards were added;
`test_what_the_rules_read_is_bounded` keeps the inputs of the cost estimate bounded.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import re
from collections.abc import Iterator
from typing import Any

import celpy
import lark
import pydantic
import pytest
import yaml
from celpy import evaluation
from tests.conftest import EXAMPLES
from tests.operator.test_crd import apply_defaults, specs_to_check, walk

from planet_contracts.api import resource, spec
from planet_operator.crd import cel, generate

CRD = generate.crd()
ROOT = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC = ROOT["properties"]["spec"]
BASE_URI = "hf://stabilityai/stable-diffusion-xl-base-1.0"


# --- cel-python, made as strict as the API server where it matters. ---


class _StrictEvaluator(evaluation.Evaluator):
    """`has(e.f)` is an error when `e` is (cel-python answers false)."""

    def macro_has_eval(self, exprlist: lark.Tree) -> Any:
        node: Any = exprlist
        while isinstance(node, lark.Tree) and node.data != "member_dot" and len(node.children) == 1:
            node = node.children[0]
        if isinstance(node, lark.Tree) and node.data == "member_dot":
            receiver = self.visit(node.children[0])
            if isinstance(receiver, evaluation.CELEvalError):
                return receiver
        return super().macro_has_eval(exprlist)

    def sub_evaluator(self, ast: lark.Tree) -> evaluation.Evaluator:
        return _StrictEvaluator(ast, activation=self.activation)


class _StrictRunner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        return _StrictEvaluator(ast=self.ast, activation=self.new_activation()).evaluate(context)


def _is_sorted(values: Any) -> Any:
    """Kubernetes' `<list>.isSorted()`, which cel-python lacks."""
    return celpy.celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(values)))


def _sum(values: Any) -> Any:
    """Kubernetes' `<list>.sum()`, which cel-python lacks."""
    return celpy.celtypes.IntType(sum(values))


ENV = celpy.Environment(runner_class=_StrictRunner)


@functools.cache
def program(rule: str) -> celpy.Runner:
    return ENV.program(ENV.compile(rule), functions={"isSorted": _is_sorted, "sum": _sum})


def run(rule: str, value: Any) -> bool | Exception:
    """The rule's verdict on `value` as `self`, or the error CEL would report."""
    try:
        result = program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except evaluation.CELEvalError as error:
        return error
    if isinstance(result, Exception):
        return result
    assert isinstance(result, celpy.celtypes.BoolType), (rule, result)
    return bool(result)


@dataclasses.dataclass(frozen=True)
class Outcome:
    path: str
    message: str
    rule: str
    result: bool | Exception

    @property
    def where(self) -> str:
        """Where the API server (and `spec.violations`) points: `spec.upscale.stages[0].factor`."""
        return self.path.lstrip(".")


def outcomes(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[Outcome]:
    """Every rule of `schema` and the nodes under it, on the matching parts of `value`."""
    for entry in schema.get("x-kubernetes-validations", []):
        where = path + entry.get("fieldPath", "")
        yield Outcome(where, entry["message"], entry["rule"], run(entry["rule"], value))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            if child is not None:
                yield from outcomes(item, child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from outcomes(item, schema["items"], f"{path}[{index}]")


def errors(found: list[Outcome]) -> list[str]:
    return [f"{o.where}: {o.rule}: {o.result}" for o in found if isinstance(o.result, Exception)]


def failed(found: list[Outcome]) -> set[tuple[str, str]]:
    return {(o.where, o.message) for o in found if o.result is False}


def manifest(name: str = "p", **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": name},
        "spec": {"model": {"base": {"uri": BASE_URI}}, **fields},
    }


# --- 1. Each node's own `default`, as the API server checks it at CRD creation. ---

DEFAULTED = [(path, node) for path, node in walk(ROOT) if "default" in node]


def test_the_defaults_that_refused_the_crd_are_checked() -> None:
    with_rules = {path for path, node in DEFAULTED if next(outcomes(node["default"], node), None)}
    assert {".spec.generation", ".spec.engine", ".spec.serving", ".spec.autoscaling", ".spec.rollout"} <= (
        with_rules
    )
    # Users rely on server-side defaulting: the sections keep `default: {}`.
    assert SPEC["properties"]["serving"]["default"] == {}


@pytest.mark.parametrize(("path", "node"), DEFAULTED, ids=[path for path, _ in DEFAULTED])
def test_every_rule_holds_on_its_nodes_default(path: str, node: dict[str, Any]) -> None:
    found = list(outcomes(node["default"], node, path))
    assert errors(found) == []
    assert failed(found) == set()


# --- 2. Partial objects: a full spec with optional fields left out, at any depth. ---


def full_manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for example in EXAMPLES:
        for document in yaml.safe_load_all(example.read_text()):
            yield example.name, apply_defaults(document, ROOT)


def optional_paths(value: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """Paths of the fields in `value` that its schema does not require, depth first."""
    if isinstance(value, dict) and "properties" in schema:
        required = set(schema.get("required", []))
        for key, item in value.items():
            if key in schema["properties"]:
                if key not in required:
                    yield (*path, key)
                yield from optional_paths(item, schema["properties"][key], (*path, key))
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            yield from optional_paths(item, schema["additionalProperties"], (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from optional_paths(item, schema["items"], (*path, index))


def schema_at(path: tuple[Any, ...]) -> dict[str, Any]:
    node = ROOT
    for key in path:
        if isinstance(key, int):
            node = node["items"]
        elif key in node.get("properties", {}):
            node = node["properties"][key]
        else:
            node = node["additionalProperties"]
    return node


def without(document: dict[str, Any], paths: list[tuple[Any, ...]]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    for path in sorted(paths, key=len, reverse=True):
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)
    return out


def python_says(document: dict[str, Any]) -> set[tuple[str, str]]:
    model = spec.PlanetPipelineSpec.model_validate(document["spec"])
    return {(v.path, v.rule.message) for v in spec.violations(model)}


def partial_cases() -> Iterator[Any]:
    for name, document in full_manifests():
        # metadata is not in the root's `required`, but the API server always has metadata.name.
        paths = list(optional_paths(document["spec"], SPEC, ("spec",)))
        for path in paths:
            yield pytest.param(document, [path], id=f"{name}-{'.'.join(map(str, path[1:]))}")
        defaulted = [p for p in paths if "default" in schema_at(p)]
        yield pytest.param(document, defaulted, id=f"{name}-every-defaulted-field")
        yield pytest.param(document, paths, id=f"{name}-every-optional-field")


@pytest.mark.parametrize(("document", "removed"), partial_cases())
def test_rules_evaluate_without_error_on_partial_objects(
    document: dict[str, Any], removed: list[tuple[Any, ...]]
) -> None:
    assert failed(list(outcomes(document, ROOT))) == set(), "the full object must be valid"
    partial = without(document, removed)
    found = list(outcomes(partial, ROOT))
    assert errors(found) == []
    if all("default" in schema_at(path) for path in removed):
        # Leaving out what the server would default never fails a rule: the guard skips it.
        assert failed(found) == set()
    elif not any("default" in schema_at(path) for path in removed):
        # Left-out optional fields may break a rule (a stage without `factor`): as Python says.
        assert failed(found) == python_says(partial)


def test_the_minimal_spec_is_valid_before_and_after_defaulting() -> None:
    document = manifest()
    for candidate in (document, apply_defaults(document, ROOT)):
        found = list(outcomes(candidate, ROOT))
        assert errors(found) == []
        assert failed(found) == set()
    defaulted = apply_defaults(document, ROOT)["spec"]
    assert {"generation", "engine", "serving", "autoscaling", "rollout", "rollback"} <= defaulted.keys()
    assert defaulted["serving"]["lanes"]["final"]["steps"] == 30


# --- 3. The guarded rules still agree with their Python twins. ---


def _spec_ids() -> list[str]:
    return [f"spec{index}" for index, _ in enumerate(specs_to_check())]


@pytest.mark.parametrize("planet_spec", list(specs_to_check()), ids=_spec_ids())
def test_guarded_rules_agree_with_python_twins(planet_spec: spec.PlanetPipelineSpec) -> None:
    python = {(v.path, v.rule.message) for v in spec.violations(planet_spec)}
    full = planet_spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    # What the user wrote, then what the API server makes of it before it runs the rules.
    written = planet_spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for document in (full, apply_defaults(written, SPEC)):
        found = list(outcomes(document, SPEC, ".spec"))
        assert errors(found) == []
        assert failed(found) == python


# --- 4. One invalid manifest per rule, rejected by that rule with its message. ---

NAME_PATTERN, NAME_LENGTH = resource.NAME_RULES
SCALE_TO_ZERO = next(r for r in spec.PlanetPipelineSpec.__rules__ if r.field == ".autoscaling.scaleToZero")
STABILIZATION = next(r for r in spec.PlanetPipelineSpec.__rules__ if r.field == ".autoscaling")
PROMPT = {"template": "{color} planet", "attributes": [{"name": "color", "values": ["red", "blue"]}]}
INVALID: dict[str, tuple[str, dict[str, Any]]] = {
    NAME_PATTERN.message: ("", manifest(name="1planet")),
    NAME_LENGTH.message: ("", manifest(name="p" * (resource.MAX_NAME_LENGTH + 1))),
    SCALE_TO_ZERO.message: (
        "spec.autoscaling.scaleToZero",
        manifest(autoscaling={"minReplicas": 0, "scaleToZero": True}),  # Standard is the default
    ),
    STABILIZATION.message: (
        "spec.autoscaling",
        manifest(serving={"deploymentMode": "knative"}, autoscaling={"scaleUpStabilizationSeconds": 0}),
    ),
    "attributes may list at most 256 values together": (
        "spec.generation.prompt.attributes",
        manifest(
            generation={
                "prompt": {
                    "template": "{a} {b} {c}",
                    "attributes": [{"name": n, "values": [f"v{i}" for i in range(100)]} for n in "abc"],
                }
            }
        ),
    ),
    "lane names must be at most 63 characters": (
        "spec.serving.lanes",
        manifest(serving={"lanes": {"final": {"steps": 30}, "l" * 64: {"steps": 8}}}),
    ),
    "resource names must be at most 317 characters": (
        "spec.serving.resources.requests",
        manifest(serving={"resources": {"requests": {"example.com/" + "x" * 306: 1}}}),
    ),
    "regenerate needs verify: true (the verifier's score decides what is redrawn)": (
        "spec.generation.regenerate.attempts",
        manifest(generation={"verify": False, "regenerate": {"attempts": 2}}),
    ),
    "generation.regenerate.lanes must name lanes of serving.lanes": (
        "spec.generation.regenerate.lanes",
        manifest(generation={"regenerate": {"attempts": 2, "lanes": ["hero"]}}),
    ),
    "LoRA names must be unique": (
        "spec.model.loras",
        manifest(
            model={
                "base": {"uri": BASE_URI},
                "loras": [{"name": "x", "uri": "/a"}, {"name": "x", "uri": "/b"}],
            }
        ),
    ),
    "default must be one of values": (
        "spec.generation.prompt.attributes[0].default",
        manifest(
            generation={
                "prompt": {**PROMPT, "attributes": [{"name": "color", "values": ["red"], "default": "x"}]}
            }
        ),
    ),
    "contrast needs at most 8 values (the rest would be cut off)": (
        "spec.generation.prompt.attributes[0].contrast",
        manifest(
            generation={
                "prompt": {
                    **PROMPT,
                    "attributes": [
                        {"name": "color", "values": [f"c{i}" for i in range(9)], "contrast": True}
                    ],
                }
            }
        ),
    ),
    "attribute names must be unique": (
        "spec.generation.prompt.attributes",
        manifest(generation={"prompt": {**PROMPT, "attributes": [PROMPT["attributes"][0]] * 2}}),
    ),
    "template must use every attribute as {name}": (
        "spec.generation.prompt.template",
        manifest(generation={"prompt": {**PROMPT, "template": "a planet"}}),
    ),
    "width and height must be multiples of 8": (
        "spec.generation.width",
        manifest(generation={"width": 1530}),
    ),
    "steps must be <= maxSteps": (
        "spec.generation.steps",
        manifest(generation={"steps": 45, "maxSteps": 40}),
    ),
    "left must be < right": (
        "spec.generation.composition.left",
        manifest(generation={"composition": {"left": 0.95}}),  # right defaults to 0.92
    ),
    "top must be < bottom": (
        "spec.generation.composition.top",
        manifest(generation={"composition": {"top": 0.5, "bottom": 0.5}}),
    ),
    "minDiameter must be <= maxDiameter": (
        "spec.generation.composition.minDiameter",
        manifest(generation={"composition": {"minDiameter": 0.9}}),  # maxDiameter defaults to 0.85
    ),
    "an upscale stage needs factor": (
        "spec.upscale.stages[0].factor",
        manifest(upscale={"model": {"uri": "/x2.pth"}, "stages": [{"type": "upscale"}]}),
    ),
    "a resize stage needs width and height": (
        "spec.upscale.stages[0].width",
        manifest(upscale={"stages": [{"type": "resize", "width": 128}]}),
    ),
    "an img2img stage needs strength": (
        "spec.upscale.stages[0].strength",
        manifest(upscale={"stages": [{"type": "img2img"}]}),
    ),
    "factor and model apply to upscale stages only": (
        "spec.upscale.stages[0].type",
        manifest(upscale={"stages": [{"type": "resize", "width": 128, "height": 128, "factor": 2}]}),
    ),
    "tileOverlap must be less than half of tileSize": (
        "spec.upscale.tileOverlap",
        manifest(
            upscale={"stages": [{"type": "img2img", "strength": 0.3}], "tileSize": 64, "tileOverlap": 32}
        ),
    ),
    "precision must be valid for the backend (tensorrt: fp32, fp16, int8, fp8; torch: fp32, fp16, bf16; "
    "onnxruntime: fp32, fp16)": (
        "spec.engine.precision",
        manifest(engine={"backend": "torch", "precision": "int8"}),
    ),
    "batchSizes must be unique": ("spec.engine.batchSizes", manifest(engine={"batchSizes": [1, 2, 2]})),
    "defaultLane must name one of lanes": (
        "spec.serving.defaultLane",
        manifest(serving={"defaultLane": "vip"}),
    ),
    "minReplicas must be <= maxReplicas": (
        "spec.autoscaling.minReplicas",
        manifest(autoscaling={"minReplicas": 6}),  # maxReplicas defaults to 4
    ),
    "minReplicas 0 needs scaleToZero: true": (
        "spec.autoscaling.minReplicas",
        manifest(autoscaling={"minReplicas": 0}),
    ),
    # isSorted() is Kubernetes' (supplied here); a second case below breaks only the exists_one() half.
    "steps must be strictly increasing in weight": (
        "spec.rollout.steps",
        manifest(rollout={"steps": [{"weight": 50}, {"weight": 10}]}),
    ),
    "every lane's steps must be <= generation.maxSteps": (
        "spec.serving.lanes",
        manifest(
            serving={"defaultLane": "slow", "lanes": {"slow": {"steps": 80}}}
        ),  # maxSteps defaults to 50
    ),
    "each upscale stage needs a model, or upscale.model must be set": (
        "spec.upscale.model",
        manifest(upscale={"stages": [{"type": "upscale", "factor": 2}]}),
    ),
}


def test_every_rule_has_an_invalid_manifest() -> None:
    messages = {
        entry["message"] for _, node in walk(ROOT) for entry in node.get("x-kubernetes-validations", [])
    }
    assert messages == set(INVALID)


@pytest.mark.parametrize("message", list(INVALID))
def test_each_rule_rejects_its_invalid_manifest(message: str) -> None:
    where, document = INVALID[message]
    found = list(outcomes(apply_defaults(document, ROOT), ROOT))  # what the API server evaluates
    assert errors(found) == []
    assert failed(found) == {(where, message)}
    if where.startswith("spec."):
        assert python_says(document) == {(where, message)}
    # Not defaulted, a rule may skip what it cannot read (that is the guard), but never errors.
    undefaulted = list(outcomes(document, ROOT))
    assert errors(undefaulted) == []
    assert failed(undefaulted) <= {(where, message)}


def test_equal_rollout_weights_are_rejected_too() -> None:
    document = apply_defaults(manifest(rollout={"steps": [{"weight": 20}, {"weight": 20}]}), ROOT)
    assert failed(list(outcomes(document, ROOT))) == {
        ("spec.rollout.steps", "steps must be strictly increasing in weight")
    }


# --- 5. How guards are derived, on small models; typos fail at generation time. ---


class Leaf(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=pydantic.alias_generators.to_camel)

    weight: int
    note: str | None = None
    size_hint: int = 1


class Tree(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(alias_generator=pydantic.alias_generators.to_camel)

    name: str
    count: int = 3
    leaf: Leaf | None = None
    leaves: list[Leaf] = pydantic.Field(default_factory=list)
    tags: dict[str, Leaf] = pydantic.Field(default_factory=dict)


@pytest.mark.parametrize(
    ("rule", "guarded"),
    [
        ("self.name != ''", "self.name != ''"),
        ("self.count > 0", "!has(self.count) || self.count > 0"),
        ("self.leaf.weight > 0", "!has(self.leaf) || self.leaf.weight > 0"),
        ("self.leaf.sizeHint > 0", "!has(self.leaf) || !has(self.leaf.sizeHint) || self.leaf.sizeHint > 0"),
        ("!has(self.leaf) || self.leaf.weight > 0", "!has(self.leaf) || self.leaf.weight > 0"),
        # has(self.leaf.note) itself errors when self.leaf is absent.
        ("has(self.leaf.note)", "!has(self.leaf) || has(self.leaf.note)"),
        (
            "!has(self.leaf) || self.leaf.sizeHint > 0",
            "!has(self.leaf) || !has(self.leaf.sizeHint) || !has(self.leaf) || self.leaf.sizeHint > 0",
        ),
        ("self.leaves.all(l, l.weight > 0)", "!has(self.leaves) || self.leaves.all(l, l.weight > 0)"),
        (
            "self.leaves.all(l, !has(l.note) || l.note != '')",
            "!has(self.leaves) || self.leaves.all(l, !has(l.note) || l.note != '')",
        ),
        (
            "self.tags.all(k, self.tags[k].weight > 0)",
            "!has(self.tags) || self.tags.all(k, self.tags[k].weight > 0)",
        ),
        (
            "self.leaves.size() <= self.count",
            "!has(self.leaves) || !has(self.count) || self.leaves.size() <= self.count",
        ),
        (
            "self.count > 1 ? self.name != '' : true",
            "!has(self.count) || (self.count > 1 ? self.name != '' : true)",
        ),
        ("self.name.startsWith('self.count')", "self.name.startsWith('self.count')"),
    ],
)
def test_guards_are_derived_from_the_models(rule: str, guarded: str) -> None:
    assert cel.guard(rule, Tree) == guarded
    for value in (
        {"name": "n"},
        {"name": "n", "leaf": {"weight": 1}},
        {"name": "n", "leaves": [{"weight": 1}]},
    ):
        assert not isinstance(run(guarded, value), Exception), value


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ("self.cuont > 0", "has no field `cuont`"),
        ("self.leaves.sizee() > 0", "`sizee` is neither a field"),
        ("self.name.length > 0", "has no field `length`"),
        ("self.leaves.all(l, l.sizeHint > 0)", "reads optional `l.sizeHint`"),
        ("self.leaves.all(l, l.wieght > 0)", "has no field `wieght`"),
        ("self.tags.all(k, self.tags[k].note != '')", "reads optional `self.tags[].note`"),
        ("slef.count > 0", "unknown `slef`"),
        ("frobnicate(self.name)", "unknown `frobnicate()`"),
    ],
)
def test_typos_and_unguardable_reads_fail_at_generation_time(rule: str, complaint: str) -> None:
    with pytest.raises(cel.CelRuleError, match=re.escape(complaint)):
        cel.guard(rule, Tree)


def test_the_rollout_rule_before_and_after() -> None:
    [rule] = spec.RolloutSpec.__rules__
    assert rule.cel.startswith("self.steps.map(s, s.weight).isSorted()")
    assert cel.guard(rule.cel, spec.RolloutSpec) == "!has(self.steps) || " + rule.cel
    assert isinstance(run(rule.cel, {}), evaluation.CELEvalError)  # what refused the CRD
    assert run(cel.guard(rule.cel, spec.RolloutSpec), {}) is True


# --- 6. Cost: what the rules read is bounded, so the API server can price each rule. ---


def bounded(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if kind == "array":
        return "maxItems" in node
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "maxProperties" in node
    if kind == "string":
        return "maxLength" in node or "enum" in node
    return True


def test_what_the_rules_read_is_bounded() -> None:
    checked = set()
    for path, node in walk(SPEC, ".spec"):
        text = " ".join(entry["rule"] for entry in node.get("x-kubernetes-validations", []))
        for chain in re.findall(r"\bself((?:\.\w+)+)", text):
            at = node
            for key in chain.strip(".").split("."):
                if key not in at.get("properties", {}):
                    break  # a method: size(), all(), ...
                at = at["properties"][key]
                assert bounded(at), f"{path}: self{chain}"
                checked.add(f"{path}.{key}")
                # What a comprehension reads of each element: `a.name` in `self.attributes.all(a, ...)`.
                element = at.get("items") or at.get("additionalProperties")
                if isinstance(element, dict):
                    assert bounded(element), f"{path}: self{chain}[]"
                    for field, child in element.get("properties", {}).items():
                        if re.search(rf"\.{field}\b", text):
                            assert bounded(child), f"{path}: self{chain}[].{field}"
    assert {".spec.serving.lanes", ".spec.generation.prompt.attributes", ".spec.rollout.steps"} <= checked

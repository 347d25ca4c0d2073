"""``spec.generation.composition`` and ``spec.generation.verify``: defaults, bounds and rules."""

from __future__ import annotations

from typing import Any

import pytest

from planet_contracts.api import validation
from planet_contracts.api.spec import CompositionSpec, GenerationSpec

BASE = {"model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}}}


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {**BASE, **spec},
    }


def errors_of(composition: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(validation.InvalidPipeline) as caught:
        validation.parse(manifest(generation={"composition": composition}))
    return [(error.path, error.message) for error in caught.value.errors]


def test_defaults_are_the_reference_region() -> None:
    composition = validation.parse(manifest()).spec.generation.composition
    assert composition == CompositionSpec()
    assert (composition.left, composition.right, composition.top, composition.bottom) == (
        0.08,
        0.92,
        0.06,
        0.94,
    )
    assert (composition.min_diameter, composition.max_diameter) == (0.40, 0.85)
    assert GenerationSpec().verify is True


def test_camel_case_on_the_wire() -> None:
    spec = validation.parse(
        manifest(generation={"verify": False, "composition": {"minDiameter": 0.2, "maxDiameter": 0.5}})
    ).spec
    assert spec.generation.verify is False
    assert (spec.generation.composition.min_diameter, spec.generation.composition.max_diameter) == (0.2, 0.5)
    dumped = spec.model_dump(mode="json", by_alias=True)["generation"]
    assert dumped["composition"]["minDiameter"] == 0.2
    assert dumped["verify"] is False


@pytest.mark.parametrize(
    ("composition", "path", "message"),
    [
        ({"left": 0.95}, "spec.generation.composition.left", "left must be < right"),
        ({"left": 0.5, "right": 0.5}, "spec.generation.composition.left", "left must be < right"),
        ({"top": 0.95}, "spec.generation.composition.top", "top must be < bottom"),
        ({"top": 0.5, "bottom": 0.4}, "spec.generation.composition.top", "top must be < bottom"),
        (
            {"minDiameter": 0.9},
            "spec.generation.composition.minDiameter",
            "minDiameter must be <= maxDiameter",
        ),
    ],
)
def test_each_rule_is_refused_with_its_field(composition: dict[str, Any], path: str, message: str) -> None:
    [(where, said)] = errors_of(composition)
    assert where == path
    assert message in said


def test_equal_diameters_are_allowed() -> None:
    spec = validation.parse(
        manifest(generation={"composition": {"minDiameter": 0.5, "maxDiameter": 0.5}})
    ).spec
    assert spec.generation.composition.min_diameter == spec.generation.composition.max_diameter


@pytest.mark.parametrize("field", ["left", "right", "top", "bottom", "minDiameter", "maxDiameter"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_fractions_are_bounded(field: str, value: float) -> None:
    paths = [path for path, _ in errors_of({field: value})]
    assert f"spec.generation.composition.{field}" in paths


def test_every_broken_rule_is_reported_at_once() -> None:
    paths = {
        path
        for path, _ in errors_of({"left": 0.9, "right": 0.1, "top": 0.9, "bottom": 0.1, "minDiameter": 0.9})
    }
    assert paths == {
        "spec.generation.composition.left",
        "spec.generation.composition.top",
        "spec.generation.composition.minDiameter",
    }


def test_unknown_fields_are_refused() -> None:
    assert "spec.generation.composition.center" in [path for path, _ in errors_of({"center": 0.5})]

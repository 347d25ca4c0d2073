"""The demo's contact sheet: fixed prompts the demo pipeline accepts, covering its vocabulary."""

from __future__ import annotations

from pathlib import Path

import yaml

from planet_contracts.api.spec import PlanetPipelineSpec
from planet_harness import demo
from planet_predictors.quality import palette
from planet_predictors.sdxl.prompts import PromptBuilder


def test_the_sheet_prompts_are_fixed_valid_and_cover_every_colour_and_moon_phrase() -> None:
    manifest = yaml.safe_load(Path("examples/planet-demo.yaml").read_text())
    prompts = demo.sheet_prompts(manifest)
    assert prompts == demo.sheet_prompts(manifest)
    assert len(prompts) == demo.SHEET_SIZE
    spec = PlanetPipelineSpec.model_validate(manifest["spec"])
    builder = PromptBuilder(spec.generation.prompt)
    rendered = [builder.render(p, field="instances[0].prompt") for p in prompts]
    colours = {palette.requested_color(text) for text in rendered}
    moons = {palette.requested_moons(text) for text in rendered}
    attributes = {a.name: a.values for a in spec.generation.prompt.attributes}  # type: ignore[union-attr]
    assert colours == set(attributes["color"])
    assert moons == {palette.MOONS[m] for m in attributes["moons"]}
    assert len({tuple(p.values()) for p in prompts}) == len(prompts)


def test_every_colour_and_moon_phrase_of_the_demo_is_one_the_verifier_knows() -> None:
    manifest = yaml.safe_load(Path("examples/planet-demo.yaml").read_text())
    attributes = {a["name"]: a["values"] for a in manifest["spec"]["generation"]["prompt"]["attributes"]}
    assert set(attributes["color"]) <= set(palette.COLORS)
    assert set(attributes["moons"]) <= set(palette.MOONS)

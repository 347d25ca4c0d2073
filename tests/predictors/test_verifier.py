"""The verifier against ground truth: procedural scenes pass, each way of spoiling one is caught."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from planet_predictors.presets.planet import scene
from planet_predictors.quality import palette
from planet_predictors.quality.region import Region
from planet_predictors.quality.verifier import Verifier

ASPECT = 2.4


def _scenes(n: int, seed: int, **kwargs: object) -> list[scene.Scene]:
    rng = np.random.default_rng(seed)
    return [scene.sample(rng, aspect=ASPECT, **kwargs) for _ in range(n)]  # type: ignore[arg-type]


def test_every_ground_truth_scene_passes_every_check() -> None:
    verifier = Verifier()
    drawn = _scenes(40, seed=11) + _scenes(8, seed=12, ethereal=True)
    verdicts = [verifier.verify(scene.render(s, 384, 160), s.prompt()) for s in drawn]
    failures = [(s.prompt(), v.failed) for s, v in zip(drawn, verdicts, strict=True) if v.failed]
    assert not failures
    assert min(v.score for v in verdicts) == pytest.approx(1.0)


def test_a_wrong_colour_fails_the_colour_check_and_names_both_colours() -> None:
    verifier = Verifier()
    for s in _scenes(12, seed=21):
        other = "emerald" if s.color != "emerald" else "crimson"
        verdict = verifier.verify(scene.render(s, 384, 160), s.prompt().replace(s.color, other, 1))
        assert "color" in verdict.failed, s.prompt()
        detail = next(c.detail for c in verdict.checks if c.name == "color")
        assert repr(other) in detail
        assert verdict.score < 0.9


def test_a_planet_past_the_region_fails_composition() -> None:
    verifier = Verifier()
    for s in _scenes(12, seed=31, offset=0.32):
        verdict = verifier.verify(scene.render(s, 384, 160), s.prompt())
        assert "composition" in verdict.failed, s.prompt()


def test_a_tighter_region_is_what_the_pipeline_asks_for() -> None:
    strict = Verifier(Region(left=0.45, right=0.55))
    s = _scenes(1, seed=41)[0]
    assert "composition" in strict.verify(scene.render(s, 384, 160), s.prompt()).failed


def test_moons_are_counted_against_the_prompt() -> None:
    verifier = Verifier()
    for s in _scenes(30, seed=51):
        verdict = verifier.verify(scene.render(s, 384, 160), s.prompt())
        assert "moons" not in verdict.failed, s.prompt()
        wrong = "two moons" if s.moons != "two moons" else "no moons"
        assert (
            "moons" in verifier.verify(scene.render(s, 384, 160), s.prompt().replace(s.moons, wrong)).failed
        )


def test_sharpness_tells_a_crisp_upscale_from_a_smudged_one() -> None:
    verifier = Verifier()
    for s in _scenes(4, seed=61):
        crisp = scene.render(s, 1536, 640)
        small = Image.fromarray((scene.render(s, 384, 160) * 255).astype(np.uint8))
        smudged = (np.asarray(small.resize((1536, 640), Image.Resampling.BICUBIC)) / 255).astype(np.float32)
        assert "sharpness" not in verifier.verify(crisp, s.prompt()).failed
        assert "sharpness" in verifier.verify(smudged, s.prompt()).failed


def test_an_empty_sky_has_no_planet_and_scores_zero() -> None:
    verdict = Verifier().verify(np.zeros((160, 384, 3), dtype=np.float32), "crimson planet")
    assert verdict.score == 0.0
    # Each check the prompt asks for fails by name: "colour not failed" must never mean "colour right".
    assert verdict.failed == ["planet", "composition", "color", "sharpness"]
    verdict = Verifier(sharpness=False).verify(
        np.zeros((160, 384, 3), dtype=np.float32), "a planet, two moons"
    )
    assert verdict.failed == ["planet", "composition", "moons"]


def test_checks_the_prompt_does_not_name_are_skipped() -> None:
    s = _scenes(1, seed=71)[0]
    verdict = Verifier().verify(
        Image.fromarray((scene.render(s, 384, 160) * 255).astype(np.uint8)), "a planet"
    )
    assert {c.name for c in verdict.checks} == {"planet", "composition", "sharpness"}
    assert verdict.as_dict()["failed"] == []


@pytest.mark.parametrize(
    ("prompt", "color", "moons"),
    [
        ("pale gold planet with thin icy haze, two moons, nebula sky", "pale gold", 2),
        ("realistic ethereal golden planet, a shattered moon ring", "golden", palette.RING),
        ("A Deep  Blue planet, one small moon", "deep blue", 1),
        ("a planet of goldenrod hue", None, None),
    ],
)
def test_prompts_name_colours_and_moons_as_whole_phrases(
    prompt: str, color: str | None, moons: int | None
) -> None:
    assert palette.requested_color(prompt) == color
    assert palette.requested_moons(prompt) == moons


def test_the_same_scene_renders_the_same_at_any_size() -> None:
    s = _scenes(1, seed=81)[0]
    small = scene.render(s, 384, 160)
    big = Image.fromarray((scene.render(s, 768, 320) * 255).astype(np.uint8)).resize(
        (384, 160), Image.Resampling.BOX
    )
    assert np.abs(np.asarray(big, dtype=np.float32) / 255 - small).mean() < 0.03


def test_moons_sit_right_of_the_planet_at_the_heights_their_count_sets() -> None:
    """One layout per phrase (docs/model.md): the planet leaves room on the right, pushed ones excepted."""
    region = Region()
    for s in _scenes(300, seed=91):
        cx = s.cx * ASPECT
        reach = s.radius * (1.75 if s.atmosphere in scene.RINGED else 1.12)
        assert region.left * ASPECT < cx - reach and cx + reach < region.right * ASPECT
        assert all(cx < m.x * ASPECT < ASPECT - m.r for m in s.moon_list), s
        if len(s.moon_list) == 1:
            assert abs(s.moon_list[0].y - min(max(s.cy, 0.105), 0.895)) < 0.031  # level, in frame
        if len(s.moon_list) == 2:
            assert s.moon_list[0].y < s.cy < s.moon_list[1].y
    pushed = [s for s in _scenes(200, seed=92, offset=0.2) if s.moon_list]
    assert all(0 < m.x < 1 for s in pushed for m in s.moon_list)

"""Request parsing and prompt rendering, without a server."""

from __future__ import annotations

import pytest

from planet_contracts.api.spec import PlanetPipelineSpec
from planet_predictors import config
from planet_predictors.sdxl import inputs
from planet_predictors.sdxl.prompts import PromptBuilder
from planet_predictors.serving.errors import BadRequest

LIMITS = inputs.Limits.from_spec(config.default().spec, max_instances=16)


def test_default_prompt_renders_the_reference_sentence() -> None:
    text = PromptBuilder(None).render({}, field="prompt")
    assert text == "deep blue planet with frosted cloudy zones, no moons, distant stars dark sky"


def test_defaults_come_from_the_spec_and_lanes() -> None:
    [draft] = inputs.parse({"instances": [{"prompt": "x", "lane": "draft"}]}, LIMITS).requests
    assert (draft.steps, draft.width, draft.height, draft.format) == (8, 1536, 640, "png")
    [final] = inputs.parse({"instances": [{"prompt": "x"}]}, LIMITS).requests
    assert (final.lane, final.steps, final.guidance) == ("final", 30, 7.0)


def test_optional_attribute_without_value_leaves_no_dangling_comma() -> None:
    spec = PlanetPipelineSpec.model_validate(
        {
            "model": {"base": {"uri": "/m"}},
            "generation": {
                "prompt": {
                    "template": "{color} planet, {moons}",
                    "attributes": [
                        {"name": "color", "values": ["red"]},
                        {"name": "moons", "values": ["two moons"], "required": False},
                    ],
                }
            },
        }
    )
    builder = PromptBuilder(spec.generation.prompt)
    assert builder.render({"color": "red"}, field="p") == "red planet"
    with pytest.raises(BadRequest, match=r'p\.color: required; allowed: "red"'):
        builder.render({}, field="p")


def test_contrast_attributes_put_the_values_not_asked_for_in_the_negative_prompt() -> None:
    spec = PlanetPipelineSpec.model_validate(
        {
            "model": {"base": {"uri": "/m"}},
            "generation": {
                "negativePrompt": "blurry",
                "prompt": {
                    "template": "{color} planet, {moons}",
                    "attributes": [
                        {"name": "color", "values": ["red", "blue"]},
                        {
                            "name": "moons",
                            "values": ["no moons", "one moon", "two moons"],
                            "default": "no moons",
                            "contrast": True,
                        },
                    ],
                },
            },
        }
    )
    limits = inputs.Limits.from_spec(spec, max_instances=4)
    asked, default, own, free = inputs.parse(
        {"instances": [{"prompt": {"color": "red", "moons": "one moon"}}, {"prompt": {"color": "blue"}},
                       {"prompt": {"color": "red", "moons": "two moons"}, "negative_prompt": "dim"},
                       {"prompt": "a red planet"}]},
        limits,
    ).requests  # fmt: skip
    assert asked.negative_prompt == "blurry, no moons, two moons"
    assert default.negative_prompt == "blurry, one moon, two moons"
    assert own.negative_prompt == "dim, no moons, one moon"
    assert free.negative_prompt == "blurry", "free text names no attribute to contrast"
    # Without contrast (the default) the negative prompt is the configured one.
    [plain] = inputs.parse({"instances": [{"prompt": {"color": "teal"}}]}, LIMITS).requests
    assert plain.negative_prompt == config.default().spec.generation.negative_prompt


def test_unsupported_value_lists_allowed_values() -> None:
    with pytest.raises(BadRequest) as info:
        inputs.parse({"instances": [{"prompt": {"color": "plaid"}}]}, LIMITS)
    assert str(info.value).startswith(
        'instances[0].prompt.color: unsupported value "plaid"; allowed: "deep blue"'
    )


def test_config_file_overrides_and_validation(tmp_path: object) -> None:
    raw = {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PipelineConfig",
        "pipeline": "p",
        "revision": "r9",
        "modelHash": "",
        "spec": {"model": {"base": {"uri": "/m"}}, "generation": {"width": 100}},
    }
    with pytest.raises(config.ConfigError, match="multiples of 8"):
        config.parse(raw)
    raw["spec"] = {"model": {"base": {"uri": "/m"}}}
    assert config.parse(raw).revision == "r9"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instances": [{"prompt": "\ud800 planet"}]}, "instances[0].prompt"),
        ({"instances": [{"prompt": "x", "negative_prompt": "\udfff"}]}, "instances[0].negative_prompt"),
        ('{"instances": [{"prompt": "\\ud800"}]}', "body"),  # raw text: decoded by orjson, refused
        ("[" * 100_000, "body"),
    ],
)
def test_text_that_cannot_be_tokenized_is_refused_at_parse_time(body: object, field: str) -> None:
    with pytest.raises(BadRequest) as info:
        inputs.parse(body, LIMITS)
    assert info.value.field == field


def test_v2_text_and_id_are_checked() -> None:
    from kserve.protocol.infer_type import InferInput, InferRequest

    prompt = InferInput("prompt", [1], "BYTES", data=["\ud800"])
    with pytest.raises(BadRequest, match=r"inputs.prompt\[0\]: not valid Unicode text"):
        inputs.parse(InferRequest("sdxl", [prompt]), LIMITS)
    good = InferInput("prompt", [1], "BYTES", data=["x"])
    with pytest.raises(BadRequest, match="id: not valid Unicode"):
        inputs.parse(InferRequest("sdxl", [good], request_id="\udc00"), LIMITS)

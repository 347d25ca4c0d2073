"""Request parsing: V1 ``instances`` and V2 (Open Inference Protocol) inputs ▶ typed requests.

Every problem raises :class:`BadRequest` naming the field and what is allowed, so a client sees
``instances[0].prompt.color: unsupported value "plaid"; allowed: ...`` and never a 500.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping
from typing import Any, TypeAlias, cast

import orjson
from kserve.protocol.infer_type import InferRequest

from planet_contracts.api.spec import MAX_SIZE, PlanetPipelineSpec
from planet_predictors import imaging
from planet_predictors.sdxl.prompts import PromptBuilder
from planet_predictors.serving import protocol
from planet_predictors.serving import text as texts
from planet_predictors.serving.errors import BadRequest

#: Smallest side a request may ask for: 4 latent pixels (SDXL's latent space is 1/8 of the image).
MIN_SIDE = 32
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 30.0
FIELDS = ("prompt", "seed", "steps", "guidance", "lane", "format", "width", "height", "negative_prompt")
V2_TYPES = {
    "prompt": "BYTES",
    "seed": "INT64",
    "steps": "INT32",
    "guidance": "FP32",
    "lane": "BYTES",
    "format": "BYTES",
    "negative_prompt": "BYTES",
    "width": "INT32",
    "height": "INT32",
}


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """One image to make, fully resolved (defaults applied, prompt rendered)."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    lane: str
    format: imaging.Format
    width: int
    height: int

    def batch_key(self) -> tuple[int, int, int, float]:
        """What must match for requests to share one backend batch (the lane is matched apart)."""
        return (self.width, self.height, self.steps, self.guidance)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What requests may ask for, derived from the pipeline spec."""

    prompts: PromptBuilder
    lanes: Mapping[str, int]  # lane ▶ default steps
    default_lane: str
    max_steps: int
    width: int
    height: int
    guidance: float
    negative_prompt: str
    max_instances: int

    @classmethod
    def from_spec(cls, spec: PlanetPipelineSpec, *, max_instances: int) -> Limits:
        """Limits for ``spec``; the configured size is also the largest area served."""
        generation, serving = spec.generation, spec.serving
        return cls(
            prompts=PromptBuilder(generation.prompt),
            lanes={name: lane.steps for name, lane in serving.lanes.items()},
            default_lane=serving.default_lane,
            max_steps=generation.max_steps,
            width=generation.width,
            height=generation.height,
            guidance=generation.guidance_scale,
            negative_prompt=generation.negative_prompt,
            max_instances=max_instances,
        )


#: A decoded HTTP request: its protocol (for the answer's shape) and its images.
ParsedBatch: TypeAlias = protocol.ParsedBatch[GenerateRequest]


def parse(payload: object, limits: Limits) -> ParsedBatch:
    """Decode a V1 body (``dict``) or a V2 :class:`InferRequest`."""
    if isinstance(payload, InferRequest):
        return ParsedBatch("v2", parse_v2(payload, limits), protocol.request_id(payload), field="inputs")
    instances = protocol.load_body(payload).get("instances")
    if not isinstance(instances, list):
        raise BadRequest("instances", "required: a list of objects")
    protocol.check_count(len(instances), "instances", limits.max_instances)
    return ParsedBatch(
        "v1", [parse_instance(item, f"instances[{i}]", limits) for i, item in enumerate(instances)]
    )


def parse_instance(item: object, field: str, limits: Limits) -> GenerateRequest:
    """Validate one V1 instance (also used for each V2 row)."""
    item = protocol.check_fields(item, field, FIELDS)
    if "prompt" not in item:
        raise BadRequest(f"{field}.prompt", "required: an object of attributes or a string")
    prompt = limits.prompts.render(item["prompt"], field=f"{field}.prompt")
    lane = protocol.choice(item.get("lane", limits.default_lane), f"{field}.lane", limits.lanes)
    steps = _int(item, "steps", field, default=limits.lanes[lane], low=1, high=limits.max_steps)
    width = _side(item, "width", field, limits.width)
    height = _side(item, "height", field, limits.height)
    if width * height > limits.width * limits.height:
        raise BadRequest(
            f"{field}.width",
            f"{width}x{height} is larger than this pipeline's {limits.width}x{limits.height}",
        )
    fmt = protocol.choice(item.get("format", "png"), f"{field}.format", imaging.FORMATS)
    negative = texts.checked(item.get("negative_prompt", limits.negative_prompt), f"{field}.negative_prompt")
    if len(negative) > limits.prompts.max_free_text_length:
        raise BadRequest(
            f"{field}.negative_prompt",
            f"{len(negative)} characters; the limit is {limits.prompts.max_free_text_length}",
        )
    # A structured prompt's contrast attributes add the values it did not pick (PromptAttribute.contrast).
    contrast = limits.prompts.contrast(item["prompt"])
    negative = ", ".join(part for part in (negative, *contrast) if part.strip())
    seed = item.get("seed")
    seed = (
        secrets.randbelow(2**32)
        if seed is None
        else _int(item, "seed", field, default=0, low=0, high=MAX_SEED)
    )
    guidance = item.get("guidance", limits.guidance)
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not math.isfinite(guidance):
        raise BadRequest(f"{field}.guidance", f"must be a number from 0 to {MAX_GUIDANCE:g}")
    if not 0 <= guidance <= MAX_GUIDANCE:
        raise BadRequest(f"{field}.guidance", f"{guidance:g} is out of range; allowed: 0 to {MAX_GUIDANCE:g}")
    return GenerateRequest(
        prompt=prompt,
        negative_prompt=" ".join(negative.split()),
        seed=seed,
        steps=steps,
        guidance=round(float(guidance), 4),
        lane=lane,
        format=cast(imaging.Format, fmt),
        width=width,
        height=height,
    )


def parse_v2(request: InferRequest, limits: Limits) -> list[GenerateRequest]:
    """Rows of the V2 inputs ▶ instances; ``prompt`` elements that are JSON objects are structured."""
    rows = protocol.v2_rows(
        request, V2_TYPES, key="prompt", missing="required: BYTES [n]", limit=limits.max_instances
    )
    parsed: list[GenerateRequest] = []
    for i, row in enumerate(rows):
        text = row["prompt"]
        if text.lstrip().startswith("{"):
            try:
                row["prompt"] = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise BadRequest(f"inputs.prompt[{i}]", "starts with { but is not a JSON object") from None
        parsed.append(parse_instance(row, f"inputs[{i}]", limits))
    return parsed


def _int(item: Mapping[str, Any], key: str, field: str, *, default: int, low: int, high: int) -> int:
    value = item.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field}.{key}", f"must be an integer from {low} to {high}")
    if not low <= value <= high:
        raise BadRequest(f"{field}.{key}", f"{value} is out of range; allowed: {low} to {high}")
    return value


def _side(item: Mapping[str, Any], key: str, field: str, default: int) -> int:
    value = _int(item, key, field, default=default, low=MIN_SIDE, high=MAX_SIZE)
    if value % 8:
        raise BadRequest(f"{field}.{key}", f"{value} is not a multiple of 8")
    return value

"""Request parsing: V1 ``instances`` and V2 (Open Inference Protocol) inputs ▶ typed requests.

Every problem raises :class:`BadRequest` naming the field and what is allowed, so a client sees
``instances[0].prompt.color: unsupported value "plaid"; allowed: ...`` and never a 500.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from collections.abc import Mapping
from typing import Any, Literal, cast

from kserve.protocol.infer_type import InferInput, InferRequest

from planet_operator.api.spec import MAX_SIZE, PlanetPipelineSpec
from planet_predictors import imaging
from planet_predictors.sdxl.prompts import PromptBuilder
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
Protocol = Literal["v1", "v2"]


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
class ParsedBatch:
    """A decoded HTTP request: its protocol (for the answer's shape) and its images."""

    protocol: Protocol
    requests: list[GenerateRequest]
    request_id: str | None = None


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


def parse(payload: object, limits: Limits) -> ParsedBatch:
    """Decode a V1 body (``dict``) or a V2 :class:`InferRequest`."""
    if isinstance(payload, InferRequest):
        return ParsedBatch("v2", parse_v2(payload, limits), payload.id)
    if isinstance(payload, bytes | str):
        # KServe leaves bodies undecoded when content-type is not JSON (curl's default, for one).
        try:
            payload = json.loads(payload)
        except ValueError:
            raise BadRequest("body", "not valid JSON") from None
    if not isinstance(payload, Mapping):
        raise BadRequest("body", 'must be a JSON object with "instances"')
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise BadRequest("instances", "required: a list of objects")
    _check_count(len(instances), "instances", limits)
    return ParsedBatch(
        "v1", [parse_instance(item, f"instances[{i}]", limits) for i, item in enumerate(instances)]
    )


def parse_instance(item: object, field: str, limits: Limits) -> GenerateRequest:
    """Validate one V1 instance (also used for each V2 row)."""
    if not isinstance(item, Mapping):
        raise BadRequest(field, "must be an object")
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        raise BadRequest(f"{field}.{str(unknown[0])[:40]}", f"unknown field; allowed: {', '.join(FIELDS)}")
    if "prompt" not in item:
        raise BadRequest(f"{field}.prompt", "required: an object of attributes or a string")
    prompt = limits.prompts.render(item["prompt"], field=f"{field}.prompt")
    lane = item.get("lane", limits.default_lane)
    if not isinstance(lane, str) or lane not in limits.lanes:
        raise BadRequest(
            f"{field}.lane", f"unsupported value {_show(lane)}; allowed: {', '.join(limits.lanes)}"
        )
    steps = _int(item, "steps", field, default=limits.lanes[lane], low=1, high=limits.max_steps)
    width = _side(item, "width", field, limits.width)
    height = _side(item, "height", field, limits.height)
    if width * height > limits.width * limits.height:
        raise BadRequest(
            f"{field}.width",
            f"{width}x{height} is larger than this pipeline's {limits.width}x{limits.height}",
        )
    fmt = item.get("format", "png")
    if fmt not in imaging.FORMATS:
        raise BadRequest(
            f"{field}.format", f"unsupported value {_show(fmt)}; allowed: {', '.join(imaging.FORMATS)}"
        )
    negative = item.get("negative_prompt", limits.negative_prompt)
    if not isinstance(negative, str):
        raise BadRequest(f"{field}.negative_prompt", "must be a string")
    if len(negative) > limits.prompts.max_free_text_length:
        raise BadRequest(
            f"{field}.negative_prompt",
            f"{len(negative)} characters; the limit is {limits.prompts.max_free_text_length}",
        )
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
    inputs: dict[str, InferInput] = {}
    for tensor in request.inputs:
        name = str(tensor.name)
        if name not in V2_TYPES:
            raise BadRequest(f"inputs.{name[:40]}", f"unknown input; allowed: {', '.join(V2_TYPES)}")
        if tensor.datatype != V2_TYPES[name]:
            raise BadRequest(
                f"inputs.{name}", f"datatype must be {V2_TYPES[name]}, got {_show(tensor.datatype)}"
            )
        inputs[name] = tensor
    if "prompt" not in inputs:
        raise BadRequest("inputs.prompt", "required: BYTES [n]")
    columns = {name: _column(tensor, name) for name, tensor in inputs.items()}
    n = len(columns["prompt"])
    _check_count(n, "inputs.prompt", limits)
    for name, column in columns.items():
        if len(column) != n:
            raise BadRequest(f"inputs.{name}", f"has {len(column)} elements; prompt has {n}")
    rows: list[GenerateRequest] = []
    for i in range(n):
        row: dict[str, Any] = {name: column[i] for name, column in columns.items()}
        text = row["prompt"]
        if text.lstrip().startswith("{"):
            try:
                row["prompt"] = json.loads(text)
            except ValueError:
                raise BadRequest(f"inputs.prompt[{i}]", "starts with { but is not a JSON object") from None
        rows.append(parse_instance(row, f"inputs[{i}]", limits))
    return rows


def _column(tensor: InferInput, name: str) -> list[Any]:
    data = tensor.data
    values = data.tolist() if hasattr(data, "tolist") else data
    if not isinstance(values, list):
        raise BadRequest(f"inputs.{name}.data", "must be a list")
    shape = list(tensor.shape or [])
    if len(shape) != 1 or shape[0] != len(values):
        raise BadRequest(f"inputs.{name}.shape", f"must be [{len(values)}] for {len(values)} elements")
    if V2_TYPES[name] == "BYTES":
        out: list[Any] = []
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise BadRequest(f"inputs.{name}[{i}]", "must be UTF-8 text") from None
            if not isinstance(value, str):
                raise BadRequest(f"inputs.{name}[{i}]", "must be a string")
            out.append(value)
        return out
    return values


def _check_count(n: int, field: str, limits: Limits) -> None:
    if n == 0:
        raise BadRequest(field, "empty: send at least one")
    if n > limits.max_instances:
        raise BadRequest(field, f"{n} items; the limit is {limits.max_instances} per request")


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


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."

"""Request parsing: V1 ``instances``, the SDXL predictor's V1 answer (``predictions``), and V2 inputs.

Every problem raises :class:`BadRequest` naming the field (``instances[0].image: not valid base64``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import io
import secrets
from collections.abc import Callable, Mapping
from typing import TypeAlias, cast

import numpy as np
import orjson
import pydantic
from kserve.protocol.infer_type import InferRequest
from PIL import Image, UnidentifiedImageError

from planet_contracts.api import rules
from planet_contracts.api.spec import UpscaleStage
from planet_predictors import imaging
from planet_predictors.sdxl.prompts import PromptBuilder
from planet_predictors.serving import protocol
from planet_predictors.serving.errors import BadRequest
from planet_predictors.upscaler import stages as st
from planet_predictors.upscaler import tiling

MAX_SEED = 2**63 - 1
FIELDS = ("image", "prompt", "seed", "lane", "format", "stages")
#: Keys of an SDXL prediction that describe the input image; accepted so ``$response`` passes as is.
PASSTHROUGH = ("width", "height", "revision", "timings", "quality")
V2_TYPES = {
    "image": "BYTES",
    "prompt": "BYTES",
    "seed": "INT64",
    "lane": "BYTES",
    "format": "BYTES",
    "stages": "BYTES",
}
INPUT_FORMATS = ("PNG", "JPEG", "WEBP")
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF")


@dataclasses.dataclass(frozen=True, eq=False)
class UpscaleRequest:
    """One image to take through the chain, decoded and validated."""

    pixels: tiling.U8
    prompt: str
    seed: int
    lane: str
    format: imaging.Format
    stages: tuple[st.Stage, ...]
    #: sha256 of the encoded input file: links the output to the image (and provenance) it came from.
    input_sha256: str

    def batch_key(self) -> tuple[st.Stage, ...]:
        """Requests with the same chain share batches (their tiles share forwards)."""
        return self.stages


@dataclasses.dataclass(frozen=True)
class Limits:
    """What requests may ask for."""

    prompts: PromptBuilder
    lanes: tuple[str, ...]
    default_lane: str
    max_instances: int
    max_input_pixels: int
    chain: tuple[st.Stage, ...]
    default_model: str | None
    default_steps: int
    #: Why the server cannot run a stage, or None (see engines.Chain.supports).
    supports: Callable[[st.Stage], str | None] = lambda _stage: None
    #: Lane ▶ the most pixel-steps one image may cost (``stages.cost_limits``); no entry: no limit.
    cost_limits: Mapping[str, int] = dataclasses.field(default_factory=dict)


#: A decoded HTTP request: its protocol (for the answer's shape) and its images.
ParsedBatch: TypeAlias = protocol.ParsedBatch[UpscaleRequest]
#: Every request names at least one image.
EMPTY = "empty: send at least one image"


def parse(payload: object, limits: Limits) -> ParsedBatch:
    """Decode a V1 body (``instances`` or an SDXL answer's ``predictions``) or a V2 request."""
    if isinstance(payload, InferRequest):
        return ParsedBatch("v2", parse_v2(payload, limits), protocol.request_id(payload), field="inputs")
    payload = protocol.load_body(payload)
    key = "instances" if "instances" in payload else "predictions" if "predictions" in payload else None
    if key is None:
        raise BadRequest("instances", 'required: a list of objects (or an SDXL answer\'s "predictions")')
    items = payload[key]
    if not isinstance(items, list):
        raise BadRequest(key, "must be a list of objects")
    protocol.check_count(len(items), key, limits.max_instances, empty=EMPTY)
    requests = [parse_instance(item, f"{key}[{i}]", limits) for i, item in enumerate(items)]
    return ParsedBatch("v1", requests, field=key)


def parse_instance(item: object, field: str, limits: Limits) -> UpscaleRequest:
    """Validate one instance (also each V2 row)."""
    item = protocol.check_fields(item, field, FIELDS, ignored=PASSTHROUGH)
    if "image" not in item:
        raise BadRequest(f"{field}.image", "required: a base64 PNG, JPEG or WebP image")
    # 1. The cheap fields first: the image is decoded only for a request that can run.
    prompt = item.get("prompt", "")
    prompt = "" if prompt in ("", None) else limits.prompts.render(prompt, field=f"{field}.prompt")
    lane = protocol.choice(item.get("lane", limits.default_lane), f"{field}.lane", limits.lanes)
    fmt = protocol.choice(item.get("format", "png"), f"{field}.format", imaging.FORMATS)
    seed = item.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**32)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BadRequest(f"{field}.seed", f"must be an integer from 0 to {MAX_SEED}")
    overridden = "stages" in item
    chain = parse_stages(item["stages"], f"{field}.stages", limits) if overridden else limits.chain
    # 2. The image, then what it would become and cost.
    pixels, digest = decode_image(item["image"], f"{field}.image", max_pixels=limits.max_input_pixels)
    height, width = pixels.shape[:2]
    problem = st.too_large(chain, width, height)
    if problem is not None:
        raise BadRequest(f"{field}.image", problem)
    cost, limit = st.cost(chain, width * height), limits.cost_limits.get(lane)
    if limit is not None and cost > limit:
        raise BadRequest(
            f"{field}.stages" if overridden else f"{field}.image",
            f"{width}x{height} through these stages costs {cost / 1e6:.1f}M pixel-steps;"
            f" lane {lane!r} allows {limit / 1e6:.1f}M per image",
        )
    return UpscaleRequest(
        pixels=pixels,
        prompt=prompt,
        seed=seed,
        lane=lane,
        format=cast(imaging.Format, fmt),
        stages=chain,
        input_sha256=digest,
    )


def parse_stages(value: object, field: str, limits: Limits) -> tuple[st.Stage, ...]:
    """A per-request chain: the spec's stage schema, run only with upscalers this server loaded."""
    if not isinstance(value, list) or not value:
        raise BadRequest(field, "must be a non-empty list of stages")
    if len(value) > 16:
        raise BadRequest(field, f"{len(value)} stages; the limit is 16")
    parsed: list[UpscaleStage] = []
    for i, raw in enumerate(value):
        if isinstance(raw, Mapping) and "model" in raw:
            raise BadRequest(f"{field}[{i}].model", "set by the pipeline; a request cannot load checkpoints")
        try:
            spec_stage = UpscaleStage.model_validate(raw)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise BadRequest(
                f"{field}[{i}]" + (f".{where}" if where else ""), str(first.get("msg", ""))
            ) from None
        # The spec's cross-field rules (the CRD's CEL), from the same declarations.
        for violation in rules.check(spec_stage, f"{field}[{i}]"):
            raise BadRequest(violation.path, violation.rule.message)
        parsed.append(spec_stage)
    try:
        chain = st.resolve(parsed, default_model=limits.default_model, default_steps=limits.default_steps)
    except ValueError as exc:
        raise BadRequest(field, str(exc)) from None
    for i, stage in enumerate(chain):
        problem = limits.supports(stage)
        if problem is not None:
            raise BadRequest(f"{field}[{i}]", problem)
    return chain


def decode_image(value: object, field: str, *, max_pixels: int) -> tuple[tiling.U8, str]:
    """Base64 (or raw, from V2 binary data) PNG/JPEG/WebP ▶ RGB pixels and the file's sha256.

    The file's own ``planetgen:*`` text is not kept: anyone can write it, so the output's
    provenance is this server's alone (``planetgen:input_sha256`` links back to the file).
    """
    if isinstance(value, bytes) and value.startswith(_MAGIC):
        data = value
    elif isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(field, "not valid base64") from None
    else:
        raise BadRequest(field, "must be a base64 string")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in INPUT_FORMATS:
                raise BadRequest(field, f"{image.format} images are not accepted; send PNG, JPEG or WebP")
            width, height = image.size
            # Checked before decoding pixels: a small file can declare a huge image.
            if width * height > max_pixels:
                raise BadRequest(
                    field, f"{width}x{height} is {width * height} pixels; the limit is {max_pixels}"
                )
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except BadRequest:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise BadRequest(field, "not a PNG, JPEG or WebP image") from None
    return np.ascontiguousarray(pixels), hashlib.sha256(data).hexdigest()


def parse_v2(request: InferRequest, limits: Limits) -> list[UpscaleRequest]:
    """Rows of the V2 inputs ▶ instances; ``stages`` elements are JSON lists."""
    rows = protocol.v2_rows(
        request,
        V2_TYPES,
        key="image",
        missing="required: BYTES [n] (base64 images)",
        limit=limits.max_instances,
        empty=EMPTY,
        raw=("image",),  # base64 text or, from V2 binary data, the encoded file itself
    )
    parsed: list[UpscaleRequest] = []
    for i, row in enumerate(rows):
        if "stages" in row:
            try:
                row["stages"] = orjson.loads(row["stages"])
            except orjson.JSONDecodeError:
                raise BadRequest(f"inputs.stages[{i}]", "must be a JSON list of stages") from None
        parsed.append(parse_instance(row, f"inputs[{i}]", limits))
    return parsed

"""The V1 (``instances``/``predictions``) and V2 (Open Inference Protocol) envelopes.

Each predictor parses its own fields; this module holds what every predictor checks the same way,
with the same :class:`BadRequest` messages, and builds the answers in both protocols.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from planet_predictors.serving import binary
from planet_predictors.serving.errors import BadRequest
from planet_predictors.serving.text import checked

Version = Literal["v1", "v2"]
Req = TypeVar("Req")


class Answered(Protocol):
    """The fields of a parsed request that every V1 prediction echoes."""

    @property
    def format(self) -> str: ...  # noqa: D102
    @property
    def seed(self) -> int: ...  # noqa: D102
    @property
    def prompt(self) -> str: ...  # noqa: D102
    @property
    def lane(self) -> str: ...  # noqa: D102


@dataclasses.dataclass(frozen=True)
class ParsedBatch(Generic[Req]):
    """A decoded HTTP request: its protocol (for the answer's shape) and its images."""

    protocol: Version
    requests: list[Req]
    request_id: str | None = None
    #: Where the images were listed (``instances``, ``predictions``, ``inputs``), for errors.
    field: str = "instances"


# -- parsing ----------------------------------------------------------------------------------


#: Longest V2 request ``id`` accepted (it is echoed in the answer).
MAX_ID_LENGTH = 256


def load_body(payload: object) -> Mapping[str, Any]:
    """A V1 body as a mapping; raw bytes or text are decoded as JSON first."""
    if isinstance(payload, bytes | str):
        # KServe leaves bodies undecoded when content-type is not JSON (curl's default, for one).
        # orjson, as KServe's JSON path: it refuses lone surrogates and nesting over 1024 levels,
        # where the json module accepts the first and raises RecursionError on the second.
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("body", f"not valid JSON ({exc})") from None
    if not isinstance(payload, Mapping):
        raise BadRequest("body", 'must be a JSON object with "instances"')
    return payload


def check_count(n: int, field: str, limit: int, *, empty: str = "empty: send at least one") -> None:
    """Refuse an empty request or one over ``limit`` images."""
    if n == 0:
        raise BadRequest(field, empty)
    if n > limit:
        raise BadRequest(field, f"{n} items; the limit is {limit} per request")


def check_fields(
    item: object, field: str, allowed: Sequence[str], *, ignored: Collection[str] = ()
) -> Mapping[str, Any]:
    """``item`` as an object with no keys but ``allowed`` (or ``ignored``, accepted silently)."""
    if not isinstance(item, Mapping):
        raise BadRequest(field, "must be an object")
    unknown = [k for k in item if k not in allowed and k not in ignored]
    if unknown:
        raise BadRequest(f"{field}.{str(unknown[0])[:40]}", f"unknown field; allowed: {', '.join(allowed)}")
    return item


def request_id(request: InferRequest) -> str | None:
    """The V2 ``id``, checked: it is echoed in the answer."""
    value = request.id
    if value is None:
        return None
    value = checked(value, "id")
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest("id", f"{len(value)} characters; the limit is {MAX_ID_LENGTH}")
    return value


def choice(value: object, field: str, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed`` (checked as a string first: it may be unhashable)."""
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(field, f"unsupported value {show(value)}; allowed: {', '.join(allowed)}")
    return value


def v2_rows(
    request: InferRequest,
    types: Mapping[str, str],
    *,
    key: str,
    missing: str,
    limit: int,
    empty: str = "empty: send at least one",
    raw: Collection[str] = (),
) -> list[dict[str, Any]]:
    """V2 inputs (one tensor per field, ``key`` required) ▶ one dict per row.

    BYTES inputs are decoded to text, except those in ``raw`` (binary payloads such as images).
    A BYTES input with ``parameters.content_type: "base64"`` (what binary data becomes, see
    :mod:`binary`) carries base64 of each element's bytes.
    """
    inputs: dict[str, InferInput] = {}
    for tensor in request.inputs:
        name = str(tensor.name)
        if name not in types:
            raise BadRequest(f"inputs.{name[:40]}", f"unknown input; allowed: {', '.join(types)}")
        if tensor.datatype != types[name]:
            raise BadRequest(f"inputs.{name}", f"datatype must be {types[name]}, got {show(tensor.datatype)}")
        inputs[name] = tensor
    if key not in inputs:
        raise BadRequest(f"inputs.{key}", missing)
    columns = {
        name: _column(tensor, name, as_text=types[name] == "BYTES" and name not in raw)
        for name, tensor in inputs.items()
    }
    n = len(columns[key])
    check_count(n, f"inputs.{key}", limit, empty=empty)
    for name, column in columns.items():
        if len(column) != n:
            raise BadRequest(f"inputs.{name}", f"has {len(column)} elements; {key} has {n}")
    return [{name: column[i] for name, column in columns.items()} for i in range(n)]


def _column(tensor: InferInput, name: str, *, as_text: bool) -> list[Any]:
    data = tensor.data
    values = data.tolist() if hasattr(data, "tolist") else data
    if not isinstance(values, list):
        raise BadRequest(f"inputs.{name}.data", "must be a list")
    shape = list(tensor.shape or [])
    if len(shape) != 1 or shape[0] != len(values):
        raise BadRequest(f"inputs.{name}.shape", f"must be [{len(values)}] for {len(values)} elements")
    parameters = tensor.parameters if isinstance(tensor.parameters, Mapping) else {}
    if tensor.datatype == "BYTES" and parameters.get("content_type") == binary.BASE64:
        values = [_unbase64(value, f"inputs.{name}[{i}]") for i, value in enumerate(values)]
    if not as_text:
        return values
    out: list[Any] = []
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise BadRequest(f"inputs.{name}[{i}]", "must be UTF-8 text") from None
        out.append(checked(value, f"inputs.{name}[{i}]"))
    return out


def _unbase64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(field, "must be a base64 string (content_type is base64)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(field, "not valid base64 (content_type is base64)") from None


def show(value: object) -> str:
    """A client's value, quoted and cut short, for an error message."""
    if isinstance(value, str):
        shown = f'"{value}"'
    else:
        try:
            shown = json.dumps(value, default=str)
        except (RecursionError, ValueError, TypeError):  # nested too deep for the encoder
            shown = type(value).__name__
    return shown if len(shown) <= 60 else shown[:57] + "..."


# -- answers ----------------------------------------------------------------------------------


def prediction(
    request: Answered,
    *,
    data: bytes,
    size: tuple[int, int],
    revision: str,
    timings: Mapping[str, float],
    keys: Sequence[str],
    quality: Mapping[str, Any] | None = None,
    **extra: object,
) -> dict[str, Any]:
    """One V1 prediction; ``extra`` keys go just before ``timings`` (seconds, answered in ms).

    ``quality`` is the verifier's verdict (``Verdict.as_dict()``), left out when there is none. V2
    answers carry it as they carry ``timings``: in each image's ``metadata`` JSON.
    """
    if quality is not None:
        extra = {**extra, "quality": dict(quality)}
    return {
        "image": base64.b64encode(data).decode("ascii"),
        "format": request.format,
        "width": size[0],
        "height": size[1],
        "seed": request.seed,
        "prompt": request.prompt,
        "lane": request.lane,
        "revision": revision,
        **extra,
        "timings": {f"{key}_ms": round(timings[key] * 1000, 2) for key in keys},
    }


def respond(
    model_name: str, batch: ParsedBatch[Any], outputs: list[dict[str, Any]]
) -> dict[str, Any] | InferResponse:
    """Answer in the request's protocol: V1 ``predictions`` or V2 ``image``/``seed``/``metadata``.

    V2 ``metadata`` is one JSON object per image: every V1 field but ``image`` and ``seed``
    (``timings``, and ``quality`` where the verifier scored the image).
    """
    if batch.protocol != "v2":
        return {"predictions": outputs}
    n = len(outputs)
    metadata = [
        json.dumps({k: v for k, v in out.items() if k not in ("image", "seed")}, separators=(",", ":"))
        for out in outputs
    ]
    return InferResponse(
        response_id=batch.request_id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=[
            InferOutput(name="image", shape=[n], datatype="BYTES", data=[o["image"] for o in outputs]),
            InferOutput(name="seed", shape=[n], datatype="INT64", data=[o["seed"] for o in outputs]),
            InferOutput(name="metadata", shape=[n], datatype="BYTES", data=metadata),
        ],
    )

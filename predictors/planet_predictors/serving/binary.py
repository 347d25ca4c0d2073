"""The V2 binary-data extension ▶ the equivalent JSON request.

A binary request (KServe's and Triton's clients send one with ``binary_data=True``) is a JSON header
of ``Inference-Header-Content-Length`` bytes followed by the raw tensors, in the order of the inputs
whose ``parameters.binary_data_size`` gives their byte length. BYTES tensors are elements of a
4-byte little-endian length and the bytes; other types are packed little-endian.

KServe's own parser assumes well-formed input (a bad header is a 500) and forces BYTES elements to
UTF-8 text, so a raw PNG cannot arrive. The middleware therefore checks the whole request here and
hands KServe its JSON form: numbers as JSON lists, BYTES as base64 strings marked with
``parameters.content_type: "base64"`` (MLServer's convention), which :mod:`protocol` decodes back
to bytes. Every problem is a :class:`BadRequest` naming what is wrong.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import orjson

from planet_predictors.serving.errors import BadRequest

HEADER = "inference-header-content-length"
#: The ``content_type`` parameter of BYTES inputs whose elements are base64 of the raw bytes.
BASE64 = "base64"
#: Fixed-size datatypes and their little-endian numpy types.
DTYPES = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
#: Elements one binary tensor may hold: far above any request these predictors accept, and it
#: bounds the work of a body made of empty BYTES elements.
MAX_ELEMENTS = 65536


def to_json(body: bytes, header: str) -> bytes:
    """The JSON request equivalent to the binary request ``body``; raises :class:`BadRequest`."""
    if not header.isdigit() or not header.isascii():
        raise BadRequest(HEADER, f"must be the JSON header's length in bytes, got {header[:20]!r}")
    json_length = int(header)
    if not 0 < json_length <= len(body):
        raise BadRequest(HEADER, f"{json_length} is not within the body's {len(body)} bytes")
    try:
        request = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise BadRequest("body", f"the JSON header is not valid JSON ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise BadRequest("inputs", "required: a list of input tensors")
    offset = json_length
    for i, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict):
            raise BadRequest(f"inputs[{i}]", "must be an object")
        parameters = tensor.get("parameters")
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue  # JSON data: KServe and the model check it as for any JSON request
        size = parameters["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"inputs[{i}].parameters.binary_data_size", "must be a byte count")
        if offset + size > len(body):
            raise BadRequest(
                f"inputs[{i}].parameters.binary_data_size",
                f"{size} bytes from offset {offset} run past the body's {len(body)} bytes",
            )
        tensor.update(_decode(tensor, body[offset : offset + size], f"inputs[{i}]"))
        del parameters["binary_data_size"]
        offset += size
    if offset != len(body):
        raise BadRequest("body", f"{len(body) - offset} bytes after the last binary input")
    return orjson.dumps(request)


def _decode(tensor: dict[str, Any], raw: bytes, field: str) -> dict[str, Any]:
    """``data`` (and for BYTES the base64 marker) for one binary tensor."""
    if "data" in tensor:
        raise BadRequest(f"{field}.data", "give data or parameters.binary_data_size, not both")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ELEMENTS for d in shape
    ):
        raise BadRequest(f"{field}.shape", "must be a list of non-negative integers")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise BadRequest(f"{field}.shape", f"{count} elements; the limit is {MAX_ELEMENTS}")
    datatype = tensor.get("datatype")
    if datatype == "BYTES":
        elements = _bytes_elements(raw, count, field)
        parameters = {**tensor["parameters"], "content_type": BASE64}
        return {"data": [base64.b64encode(e).decode("ascii") for e in elements], "parameters": parameters}
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise BadRequest(f"{field}.datatype", f"unsupported; allowed: BYTES, {', '.join(DTYPES)}")
    dtype = np.dtype(DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"{field}.parameters.binary_data_size",
            f"{len(raw)} bytes for {count} {datatype} elements; expected {count * dtype.itemsize}",
        )
    return {"data": np.frombuffer(raw, dtype=dtype).tolist()}


def _bytes_elements(raw: bytes, count: int, field: str) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(elements) == count:
            raise BadRequest(f"{field}.shape", f"the binary data holds more than {count} elements")
        if offset + 4 > len(raw):
            raise BadRequest(f"{field}.parameters.binary_data_size", "ends inside an element's length prefix")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        start, offset = offset + 4, offset + 4 + length
        if offset > len(raw):
            raise BadRequest(
                f"{field}.parameters.binary_data_size",
                f"element {len(elements)} says {length} bytes; {len(raw) - start} are left",
            )
        elements.append(raw[start:offset])
    if len(elements) != count:
        raise BadRequest(f"{field}.shape", f"{count} elements, but the binary data holds {len(elements)}")
    return elements

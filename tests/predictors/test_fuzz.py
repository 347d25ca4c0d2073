"""Hostile clients against both real servers: no 5xx, no hang, one error shape, still serving after.

Hypothesis generates V1 bodies, V2 JSON bodies and V2 binary-data bodies for the SDXL and the
upscaler predictors (with lone surrogates, deep and wide junk, wrong types and sizes); a corpus
replays the classes of issue 18 by hand. Every request shares one keep-alive client per test, so a
connection the server dropped after an answer shows up as a failure too. Budget: about a minute.
"""

from __future__ import annotations

import base64
import io
import json
import string
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from tests.predictors.conftest import Server, UpscaleServer

OK = (200, 400, 429)
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=100)

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
text = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.characters(), surrogates), max_size=12).map("".join),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
#: Nested lists, as deep as this process can still encode (the corpus sends deeper, as text).
deep = st.integers(1, 500).map(lambda n: json.loads("[" * n + "]" * n))


def encode(body: Any) -> bytes:
    """JSON as a client would send it: ``ensure_ascii`` spells lone surrogates as ``\\ud800``."""
    return json.dumps(body, allow_nan=True).encode()


def png(width: int, height: int, text_chunks: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text_chunks or {}).items():
        info.add_text(k, v)
    buffer = io.BytesIO()
    pixels = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


SMALL_PNG = png(16, 8)
B64 = base64.b64encode(SMALL_PNG).decode()


def check(reply: httpx.Response) -> None:
    assert reply.status_code in OK, (reply.status_code, reply.text[:500])
    if reply.status_code != 200:
        body = reply.json()
        assert isinstance(body["error"], str) and isinstance(body["reason"], str), body


def send(client: httpx.Client, url: str, content: bytes, headers: dict[str, str]) -> None:
    check(client.post(url, content=content, headers=headers))


content_types = st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""])


def with_type(content_type: str) -> dict[str, str]:
    return {"content-type": content_type} if content_type else {}


# -- SDXL ---------------------------------------------------------------------------------------

instance = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(
            text,
            st.fixed_dictionaries({}, optional={"color": st.sampled_from(["teal", "plaid"]), "moons": junk}),
            st.dictionaries(text, junk, max_size=2),
            junk,
        ),
        "seed": st.one_of(st.integers(-5, 2**64), junk),
        "steps": st.one_of(st.integers(-1, 4), junk),
        "guidance": st.one_of(st.floats(-1, 40, allow_nan=False, allow_infinity=False), junk),
        "lane": st.one_of(st.sampled_from(["draft", "final", "vip", ""]), junk),
        "format": st.sampled_from(["png", "webp", "jpeg", "gif"]),
        "width": st.sampled_from([64, 100, 128, 4096, -8]),
        "height": st.sampled_from([32, 56, 57, 0]),
        "negative_prompt": st.one_of(text, junk),
        "extra": junk,
    },
)
#: A valid, cheap image (64x32, one step) with one field swapped for something hostile: these get
#: past the first checks and reach the deeper ones, the batcher and the backend.
near_valid = st.builds(
    lambda key, value: {**{"prompt": "teal planet", "width": 64, "height": 32, "steps": 1}, key: value},
    st.sampled_from(["prompt", "negative_prompt", "seed", "steps", "guidance", "lane", "format", "width"]),
    st.one_of(text, junk, deep),
)
sdxl_v1 = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(near_valid, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"instances": st.lists(instance, max_size=3)}),
    st.fixed_dictionaries({"instances": junk}),
    junk,
)


def v2_tensor(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(names), text),
            "shape": st.one_of(st.lists(st.integers(-1, 3), max_size=2), junk),
            "datatype": st.sampled_from(["BYTES", "INT64", "INT32", "FP32", "FP16", "BOOL", "X"]),
            "data": st.one_of(st.lists(junk, max_size=3), st.lists(text, max_size=3), junk),
        },
        optional={"parameters": st.one_of(st.dictionaries(text, scalars, max_size=2), junk)},
    )


def v2_bodies(names: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {"inputs": st.lists(v2_tensor(names), max_size=3)},
            optional={"id": st.one_of(text, junk), "parameters": junk, "outputs": junk},
        ),
        junk,
    )


@st.composite
def binary_requests(draw: st.DrawFn, names: list[str], blobs: st.SearchStrategy[bytes]) -> tuple[str, bytes]:
    """Binary-data requests: sometimes exact, often off by a byte, a type or a header."""
    inputs, data = [], b""
    for _ in range(draw(st.integers(0, 3))):
        datatype = draw(st.sampled_from(["BYTES", "INT64", "INT32", "FP32", "UINT8"]))
        n = draw(st.integers(0, 3))
        if datatype == "BYTES":
            elements = [draw(blobs) for _ in range(n)]
            blob = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
        else:
            blob = draw(st.binary(max_size=24)) if draw(st.booleans()) else bytes(n * 8)
        blob = blob[: draw(st.integers(0, len(blob)))] if draw(st.integers(0, 4)) == 0 else blob
        size: Any = len(blob) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        inputs.append(
            {
                "name": draw(st.sampled_from(names)),
                "shape": [n] if draw(st.integers(0, 4)) else draw(junk),
                "datatype": datatype,
                "parameters": {"binary_data_size": size if draw(st.integers(0, 6)) else draw(junk)},
            }
        )
        data += blob
    header = encode({"inputs": inputs})
    token = st.text(alphabet=string.ascii_letters + string.digits + "-+.", min_size=1, max_size=8)
    length = draw(st.one_of(st.just(str(len(header))), st.integers(-3, 10**6).map(str), token))
    return length, header + data + draw(st.binary(max_size=4))


@FUZZ
@given(body=sdxl_v1, content_type=content_types, truncate=st.booleans())
def test_sdxl_v1(server: Server, body: Any, content_type: str, truncate: bool) -> None:
    content = encode(body)
    with httpx.Client(timeout=60) as client:
        send(client, server.predict_url, content[:-1] if truncate else content, with_type(content_type))


@FUZZ
@given(body=v2_bodies(["prompt", "seed", "steps", "width", "height", "negative_prompt", "lane"]))
def test_sdxl_v2_json(server: Server, body: Any) -> None:
    with httpx.Client(timeout=60) as client:
        send(client, server.infer_url, encode(body), {"content-type": "application/json"})


@FUZZ
@given(
    request=binary_requests(["prompt", "seed", "width", "height", "negative_prompt"], st.binary(max_size=12))
)
def test_sdxl_v2_binary(server: Server, request: tuple[str, bytes]) -> None:
    header, body = request
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": header}
    with httpx.Client(timeout=60) as client:
        send(client, server.infer_url, body, headers)


# -- upscaler -----------------------------------------------------------------------------------

images = st.one_of(
    st.just(base64.b64encode(SMALL_PNG).decode()),
    st.just(base64.b64encode(png(16, 8, {"planetgen:seed": "forged"})).decode()),
    st.just("data:image/png;base64," + base64.b64encode(SMALL_PNG).decode()),
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    text,
    junk,
)
stage = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["upscale", "resize", "img2img", "sharpen"])},
        optional={
            "factor": st.one_of(st.sampled_from([1, 2, 3, 9]), junk),
            "width": st.one_of(st.sampled_from([64, 96, 8192, 9000]), junk),
            "height": st.one_of(st.sampled_from([64, 48, 8192]), junk),
            "strength": st.one_of(st.sampled_from([0.0, 0.3, 1.0, 2.0]), junk),
            "steps": st.one_of(st.sampled_from([1, 2, 200, 201]), junk),
            "filter": st.sampled_from(["lanczos", "box", "nearest"]),
            "model": junk,
        },
    ),
    junk,
)
upscale_instance = st.fixed_dictionaries(
    {},
    optional={
        "image": images,
        "prompt": st.one_of(text, junk),
        "seed": st.one_of(st.integers(-5, 2**64), junk),
        "lane": st.one_of(st.sampled_from(["draft", "final", "vip"]), junk),
        "format": st.sampled_from(["png", "webp", "jpeg", "tiff"]),
        "stages": st.one_of(st.lists(stage, max_size=3), junk),
        "width": junk,
        "timings": junk,
        "extra": junk,
    },
)
near_valid_upscale = st.builds(
    lambda key, value: {**{"image": B64, "stages": [{"type": "upscale", "factor": 2}]}, key: value},
    st.sampled_from(["image", "prompt", "seed", "lane", "format", "stages"]),
    st.one_of(text, junk, st.lists(stage, max_size=2), deep),
)
upscaler_v1 = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(near_valid_upscale, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"instances": st.lists(upscale_instance, max_size=2)}),
    st.fixed_dictionaries({"predictions": st.lists(upscale_instance, max_size=2)}),
    junk,
)


@FUZZ
@given(body=upscaler_v1, content_type=content_types)
def test_upscaler_v1(upscaler_server: UpscaleServer, body: Any, content_type: str) -> None:
    with httpx.Client(timeout=60) as client:
        send(client, upscaler_server.predict_url, encode(body), with_type(content_type))


@FUZZ
@given(body=v2_bodies(["image", "prompt", "seed", "lane", "format", "stages"]))
def test_upscaler_v2_json(upscaler_server: UpscaleServer, body: Any) -> None:
    with httpx.Client(timeout=60) as client:
        send(client, upscaler_server.infer_url, encode(body), {"content-type": "application/json"})


@FUZZ
@given(
    request=binary_requests(
        ["image", "prompt", "seed", "stages"], st.one_of(st.just(SMALL_PNG), st.binary(max_size=12))
    )
)
def test_upscaler_v2_binary(upscaler_server: UpscaleServer, request: tuple[str, bytes]) -> None:
    header, body = request
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": header}
    with httpx.Client(timeout=60) as client:
        send(client, upscaler_server.infer_url, body, headers)


# -- the corpus: each class of issue 18 ---------------------------------------------------------

NESTED = "[" * 1000 + "]" * 1000


def v2(*tensors: tuple[str, str, list[Any]], **extra: Any) -> str:
    inputs = [{"name": n, "shape": [len(d)], "datatype": t, "data": d} for n, t, d in tensors]
    return json.dumps({"inputs": inputs, **extra})


def binary(
    tensors: list[tuple[str, list[bytes]]], *, header: str | None = None, tail: bytes = b""
) -> tuple[dict[str, str], bytes]:
    blobs = [b"".join(len(e).to_bytes(4, "little") + e for e in elements) for _, elements in tensors]
    inputs = [
        {"name": n, "shape": [len(e)], "datatype": "BYTES", "parameters": {"binary_data_size": len(b)}}
        for (n, e), b in zip(tensors, blobs, strict=True)
    ]
    head = json.dumps({"inputs": inputs}).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": header or str(len(head)),
    }
    return headers, head + b"".join(blobs) + tail


JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
CORPUS: list[tuple[str, str, dict[str, str], str | bytes]] = [
    # lone surrogates, every way in
    ("sdxl", "v1", TEXT, '{"instances": [{"prompt": "\\ud800 planet"}]}'),
    ("sdxl", "v1", JSON, '{"instances": [{"prompt": "\\udfff"}]}'),
    ("sdxl", "v1", TEXT, '{"instances": [{"prompt": {"\\ud800": "x"}}]}'),
    ("sdxl", "v1", TEXT, '{"instances": [{"prompt": "x", "negative_prompt": "\\ud800"}]}'),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ["\ud800 planet"]))),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ['{"color": "\ud800"}']))),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ['{"\ud800": 1}']))),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ["x"]), ("negative_prompt", "BYTES", ["\udc00"]))),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ["x"]), id="\ud800")),
    ("sdxl", "v2", JSON, v2(("\ud800", "BYTES", ["x"]))),
    ("upscale", "v1", TEXT, '{"instances": [{"image": "\\ud800", "prompt": "\\ud800"}]}'),
    ("upscale", "v2", JSON, v2(("image", "BYTES", [B64]), ("prompt", "BYTES", ["\ud800"]))),
    ("upscale", "v2", JSON, v2(("image", "BYTES", [B64]), ("stages", "BYTES", ['[{"type": "\ud800"}]']))),
    # deep nesting
    ("sdxl", "v1", JSON, "[" * 4000),
    ("sdxl", "v1", TEXT, "[" * 4000),
    ("sdxl", "v2", JSON, "[" * 4000),
    ("upscale", "v1", TEXT, "[" * 100_000),
    ("upscale", "v2", JSON, "[" * 100_000),
    ("sdxl", "v1", TEXT, '{"instances": [{"prompt": "x", "seed": ' + NESTED + "}]}"),
    ("sdxl", "v1", JSON, '{"instances": [' + NESTED + "]}"),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ['{"color": ' + NESTED + "}"]))),
    ("upscale", "v1", TEXT, '{"instances": [{"image": "' + B64 + '", "stages": [' + NESTED + "]}]}"),
    (
        "upscale",
        "v1",
        JSON,
        '{"instances": [{"image": "' + B64 + '", "stages": [{"type": ' + NESTED + "}]}]}",
    ),
    ("upscale", "v2", JSON, v2(("image", "BYTES", [B64]), ("stages", "BYTES", [NESTED]))),
    # per-request stages against the spec's rules, and their cost
    ("upscale", "v1", JSON, json.dumps({"instances": [{"image": B64, "stages": [{"type": "resize"}]}]})),
    ("upscale", "v1", JSON, json.dumps({"instances": [{"image": B64, "stages": [{"type": "img2img"}]}]})),
    (
        "upscale",
        "v1",
        JSON,
        json.dumps(
            {"instances": [{"image": B64, "stages": [{"type": "img2img", "strength": 1, "factor": 2}]}]}
        ),
    ),
    (
        "upscale",
        "v1",
        JSON,
        json.dumps(
            {
                "instances": [
                    {
                        "image": B64,
                        "stages": [
                            {"type": "resize", "width": 8192, "height": 8192},
                            {"type": "img2img", "strength": 1.0, "steps": 200},
                        ],
                    }
                ]
            }
        ),
    ),
    # the V2 binary-data extension, malformed
    (
        "sdxl",
        "v2",
        {"content-type": "application/octet-stream", "inference-header-content-length": "abc"},
        b"{}",
    ),
    (
        "sdxl",
        "v2",
        {"content-type": "application/octet-stream", "inference-header-content-length": "2"},
        b"{}",
    ),
    (
        "sdxl",
        "v2",
        {"content-type": "application/octet-stream", "inference-header-content-length": "1e3"},
        b"{}",
    ),
    (
        "sdxl",
        "v2",
        {"content-type": "application/octet-stream", "inference-header-content-length": ""},
        b"{}",
    ),
    ("sdxl", "v2", {"content-type": "application/octet-stream"}, b'{"inputs": []}'),
    ("sdxl", "v2", *binary([("prompt", [b"ok"])], header="3")),
    ("sdxl", "v2", *binary([("prompt", [b"ok"])], tail=b"!")),
    ("sdxl", "v2", *binary([("prompt", [b"\xff\xfe"])])),
    ("sdxl", "v2", *binary([("prompt", [b"\xed\xa0\x80"])])),  # a surrogate, UTF-8 encoded
    ("upscale", "v2", *binary([("image", [SMALL_PNG[: len(SMALL_PNG) // 2]])])),  # truncated PNG
    ("upscale", "v2", *binary([("image", [b"\x89PNG" + b"\0" * 30])])),
    ("upscale", "v2", *binary([("image", [png(2000, 2000)])])),  # over the pixel limit
    # more images than a lane can ever queue
    ("sdxl", "v1", JSON, json.dumps({"instances": [{"prompt": "x", "width": 64, "height": 32}] * 7})),
    ("sdxl", "v1", JSON, json.dumps({"instances": [{"prompt": "x", "lane": "draft"}] * 4})),
    ("upscale", "v1", JSON, json.dumps({"instances": [{"image": B64}] * 7})),
    # odd bodies
    ("sdxl", "v1", JSON, b""),
    ("sdxl", "v1", {}, b"\xff\xfe\x00"),
    ("sdxl", "v1", TEXT, "NaN"),
    ("sdxl", "v1", JSON, '{"instances": [{"prompt": "x", "guidance": NaN, "seed": 1e400}]}'),
    ("sdxl", "v1", TEXT, '{"instances": [{"prompt": "x", "guidance": Infinity}]}'),
    ("sdxl", "v1", JSON, json.dumps({"instances": [{"k" * 5000: 1}]})),
    ("sdxl", "v2", JSON, v2(("prompt", "BYTES", ["x"]), ("seed", "INT64", [2**80]))),
    ("sdxl", "v2", JSON, v2(("prompt", "FP16", [1.0]))),
    (
        "sdxl",
        "v2",
        JSON,
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "prompt",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": ["x"],
                        "parameters": {"content_type": "base64"},
                    }
                ]
            }
        ),
    ),
    (
        "upscale",
        "v1",
        JSON,
        json.dumps({"instances": [{"image": base64.b64encode(b"GIF89a" + b"\0" * 20).decode()}]}),
    ),
]


@pytest.mark.parametrize(("predictor", "protocol", "headers", "body"), CORPUS)
def test_corpus(
    server: Server,
    upscaler_server: UpscaleServer,
    predictor: str,
    protocol: str,
    headers: dict[str, str],
    body: str | bytes,
) -> None:
    target = server if predictor == "sdxl" else upscaler_server
    url = target.predict_url if protocol == "v1" else target.infer_url
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    with httpx.Client(timeout=60) as client:
        reply = client.post(url, content=content, headers=headers)
        assert reply.status_code == 400, (reply.status_code, reply.text[:500])
        check(reply)
        # The same keep-alive connection still answers.
        assert client.get(f"{target.url}/v2/health/live").status_code == 200


def test_both_servers_still_serve_and_counted_no_500(server: Server, upscaler_server: UpscaleServer) -> None:
    reply = httpx.post(
        server.predict_url, json={"instances": [{"prompt": "after", "width": 128, "height": 56}]}, timeout=60
    )
    assert reply.status_code == 200
    assert upscaler_server.post({"instances": [{"image": B64}]}).status_code == 200
    for target in (server, upscaler_server):
        assert target.metric("planet_errors_total", reason="internal") == 0
        assert "Traceback" not in target.log.read_text(errors="replace")

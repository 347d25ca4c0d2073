"""Random bodies never get a 500 and never kill the server."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
instance = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(
            st.text(max_size=40),
            st.fixed_dictionaries({}, optional={"color": st.sampled_from(["teal", "plaid"]), "moons": junk}),
            junk,
        ),
        "seed": st.one_of(st.integers(-5, 2**64), junk),
        "steps": st.one_of(st.integers(-1, 4), junk),
        "guidance": st.one_of(st.floats(-1, 40, allow_nan=False, allow_infinity=False), junk),
        "lane": st.sampled_from(["draft", "final", "vip", ""]),
        "format": st.sampled_from(["png", "webp", "jpeg", "gif"]),
        "width": st.sampled_from([64, 100, 128, 4096, -8]),
        "height": st.sampled_from([32, 56, 57, 0]),
        "negative_prompt": st.one_of(st.text(max_size=20), junk),
        "extra": junk,
    },
)
bodies = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(instance, max_size=3)}),
    st.fixed_dictionaries({"instances": junk}),
    junk,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, raw=st.booleans())
def test_random_v1_bodies_get_200_400_or_429(server: Any, body: Any, raw: bool) -> None:
    content = json.dumps(body).encode() if not raw else json.dumps(body).encode()[:-1]
    response = httpx.post(
        server.predict_url, content=content, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code in (200, 400, 429), response.text


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    inputs=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["prompt", "seed", "x"]),
                "shape": st.lists(st.integers(-1, 3), max_size=2),
                "datatype": st.sampled_from(["BYTES", "INT64", "FP32"]),
                "data": st.lists(junk, max_size=3),
            }
        ),
        max_size=3,
    )
)
def test_random_v2_bodies_get_200_400_or_429(server: Any, inputs: Any) -> None:
    response = httpx.post(server.infer_url, json={"inputs": inputs}, timeout=60)
    assert response.status_code in (200, 400, 429), response.text


def test_server_still_serves_after_fuzzing(server: Any) -> None:
    response = httpx.post(
        server.predict_url, json={"instances": [{"prompt": "after", "width": 128, "height": 56}]}, timeout=60
    )
    assert response.status_code == 200

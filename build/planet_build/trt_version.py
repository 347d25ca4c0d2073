"""Agreeing on the key with the operator.

The operator keys TensorRT engines on ``spec.engine.tensorrt_version`` (``10.13`` by default), the
builder on the TensorRT it has installed (``10.13.0.35``). The spec's version is read as a prefix:
the installed version satisfies it when their leading components are equal, and the key is then
computed with the spec's spelling so both sides find the same folder.
"""

from __future__ import annotations

from planet_build.errors import UsageError
from planet_build.request import BuildRequest

#: How the builder spells the TensorRT version without ``--expect-key`` (the spec's default form, ``10.13``).
DEFAULT_COMPONENTS = 2


def version_prefixes(installed: str) -> list[str]:
    """``10.13.0.35`` ▶ ``["10", "10.13", "10.13.0", "10.13.0.35"]`` (a ``+local`` suffix is dropped)."""
    parts = installed.split("+", 1)[0].split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def resolve_key(request: BuildRequest, tensorrt_version: str | None) -> tuple[str, str | None]:
    """The key to build under and the TensorRT version spelling in it; a mismatch is a :class:`UsageError`."""
    if request.backend != "tensorrt" or tensorrt_version is None:
        key = request.key(None)
        _check(request, key, detail="")
        return key, None
    prefixes = version_prefixes(tensorrt_version)
    if request.expect_key is not None:
        for spelling in prefixes:
            if request.key(spelling) == request.expect_key:
                return request.expect_key, spelling
    spelling = prefixes[min(DEFAULT_COMPONENTS, len(prefixes)) - 1]
    key = request.key(spelling)
    _check(
        request,
        key,
        detail=f" (installed TensorRT {tensorrt_version} matches none of the spec's possible versions"
        f" {', '.join(prefixes)}; does the builder image have spec.engine.tensorrtVersion's TensorRT?)",
    )
    return key, spelling


def _check(request: BuildRequest, key: str, *, detail: str) -> None:
    if request.expect_key is not None and request.expect_key != key:
        raise UsageError(
            f"engine key mismatch: the operator expects {request.expect_key}, these flags give {key}{detail}"
        )

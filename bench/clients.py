"""Closed-loop HTTP clients for the serving benchmarks: readiness, load levels, percentiles.

Not a package module: the bench scripts put ``bench/`` on ``sys.path`` and import it by name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Turns one answer's JSON into the base64 PNG it carries (each server has its own shape).
ImageOf = Callable[[Any], str]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    """Poll ``url`` until it answers 200; fail early when the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} never became ready")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclasses.dataclass(frozen=True)
class Level:
    """One load level: closed-loop clients, each sending its next request when answered."""

    clients: int
    requests: int


def is_png(answer: Any, image_of: ImageOf) -> bool:
    """Whether an answer carries a base64 PNG where the server's shape says it should."""
    try:
        data = base64.b64decode(image_of(answer), validate=True)
    except (KeyError, IndexError, TypeError, ValueError, binascii.Error):
        return False
    return data.startswith(PNG_SIGNATURE)


async def run_level(
    url: str, make_body: Callable[[int], Any], image_of: ImageOf, level: Level
) -> dict[str, Any]:
    """Send ``level.requests`` requests from ``level.clients`` clients; throughput and percentiles.

    An answer counts as ok only when it is a 200 carrying a PNG; anything else is an error.
    """
    latencies: list[float] = []
    errors = 0
    pending = iter(range(level.requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in pending:  # the shared iterator hands each request to one client
            started = time.perf_counter()
            try:
                response = await http.post(url, json=make_body(i))
                ok = response.status_code == 200 and is_png(response.json(), image_of)
            except (httpx.HTTPError, ValueError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=level.clients, max_keepalive_connections=level.clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(level.clients)))
        wall = time.perf_counter() - started
    return {
        "clients": level.clients,
        "requests": level.requests,
        "ok": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / wall,
        "p50_s": pct(latencies, 0.50),
        "p95_s": pct(latencies, 0.95),
        "p99_s": pct(latencies, 0.99),
    }

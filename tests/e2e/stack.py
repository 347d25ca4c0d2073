"""What the end-to-end tests share: the stack as a module fixture, kubectl, and waiting with evidence."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from planet_harness import devstack, keda


@contextmanager
def running(tmp: Path, **options: Any) -> Iterator[devstack.DevStack]:
    """``planet dev up`` for one test module (``PLANET_E2E_DIR`` keeps its state for a rerun)."""
    state = Path(os.environ["PLANET_E2E_DIR"]) if "PLANET_E2E_DIR" in os.environ else None
    with devstack.up(devstack.Options(state_dir=state or tmp, resync_seconds=2, **options)) as dev:
        yield dev


def post(dev: devstack.DevStack, url: str, body: dict[str, Any], *, timeout: float = 180.0) -> dict[str, Any]:
    """Through ``PLANET_PROXY``, as ``curl --proxy`` does."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": dev.stack.proxy}))
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with opener.open(request, timeout=timeout) as reply:
        parsed: dict[str, Any] = json.loads(reply.read())
        return parsed


def answer(dev: devstack.DevStack, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`post`'s answer, or None while the gateway cannot route ``url`` yet (502, 503).

    Ready is KServe's word; the gateway publishes a new route or endpoint at its next sync.
    """
    try:
        return post(dev, url, body)
    except urllib.error.HTTPError as exc:
        if exc.code in (502, 503):
            return None
        raise AssertionError(f"{exc.code}: {exc.read().decode(errors='replace')}") from None


def kubectl(dev: devstack.DevStack, *args: str, input: str | None = None) -> str:
    """kubectl's output; a failure raises with its stderr."""
    return dev.cluster.kubectl(*args, input=input).stdout


def kubectl_json(dev: devstack.DevStack, *args: str) -> dict[str, Any] | None:
    """``kubectl ... -o json`` parsed, or None when kubectl fails (not found)."""
    found = dev.cluster.kubectl(*args, "-o", "json", check=False)
    return None if found.returncode else dict(json.loads(found.stdout))


def until(
    dev: devstack.DevStack,
    what: str,
    check: Callable[[], Any],
    timeout: float = 600.0,
    *,
    kinds: str = "pods",
    context: Callable[[], Any] | None = None,
) -> Any:
    """``check()``'s first truthy value; past ``timeout``, fail with the last value, ``kubectl get
    kinds``, ``context()`` and the end of every component's and KEDA pod's log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    seen = dev.cluster.kubectl("get", kinds, "-A", "-o", "wide", check=False).stdout
    logs = {p.name: p.read_text(errors="replace")[-1500:] for p in sorted(dev.cluster.logs.glob("*.log"))}
    logs.update(keda.pod_logs(dev.cluster))
    extra = f"\n{context()!r}" if context is not None else ""
    raise AssertionError(
        f"timed out waiting for {what}; last {last!r}{extra}\n{seen}\n{json.dumps(logs)[-8000:]}"
    )

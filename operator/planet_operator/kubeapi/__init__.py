"""An embedded Kubernetes-compatible API server for tests and the local stack (not for production).

What it implements: discovery for core and custom groups, ``/version``; CRDs registered from files
at start and through the API; uid, creationTimestamp, a global resourceVersion with 409 Conflict on
stale writes and AlreadyExists on duplicate creates; generation bumped only by changes outside
metadata and status; the status subresource (status writes change only status, other writes never
do); merge, JSON, strategic-merge (keyed list merge) and apply patches; finalizers and
deletionTimestamp; ownerReference cascade deletion; label and field selectors on list and watch;
watch from a resourceVersion with history replay, 410 Gone when too old, bookmarks and timeouts;
list replies with ``kind``; ``kubectl get`` tables from printer columns; request counters at
``/debug/planet/stats``.

What it does not: authentication and authorization, admission webhooks, OpenAPI schema validation,
defaulting and CEL rules (the operator validates specs itself), server-side apply field ownership,
namespace existence checks, and persistence (everything lives in memory).

It is built on aiohttp directly: kmock's KubernetesEmulator merges every write into the object and
has no notion of resourceVersion conflicts, generation, subresources, finalizer semantics or
garbage collection, which is most of what an operator's correctness depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from planet_operator.kubeapi.server import APIServer

__all__ = ["APIServer", "run_in_thread", "write_kubeconfig"]


@contextlib.contextmanager
def run_in_thread(*, crd_paths: list[Path] | None = None, port: int = 0) -> Iterator[APIServer]:
    """Run a server on its own event loop in a background thread (for sync tests and the CLI)."""
    loop = asyncio.new_event_loop()
    server = APIServer(crd_paths=crd_paths, port=port)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="planet-apiserver", daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def write_kubeconfig(path: Path, server_url: str, *, namespace: str = "default") -> Path:
    """A kubeconfig for plain HTTP with no credentials; context ``planet-dev``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: planet-dev\n  cluster:\n    server: {server_url}\n"
        "users:\n- name: planet-dev\n  user: {}\n"
        f"contexts:\n- name: planet-dev\n  context:\n    cluster: planet-dev\n    user: planet-dev\n"
        f"    namespace: {namespace}\n"
        "current-context: planet-dev\n"
    )
    return path

"""Ray Serve with ``@serve.batch``, on a local Ray bound to 127.0.0.1 only.

    python bench/peers/ray_server.py MODEL_DIR PORT MAX_BATCH_SIZE BATCH_WAIT_S

Configured as Ray Serve's docs recommend for a batched model: ``@serve.batch`` on an async method
(``max_batch_size``, ``batch_wait_timeout_s``), ``max_ongoing_requests`` above the batch size so a
batch can fill while one runs, the replica's cores reserved (``num_cpus``) and its torch threads set.
Ray binds to the machine's own address unless told: the node IP, the HTTP proxy and the dashboard
host are loopback, the dashboard and usage reporting are off.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import ray
from ray import serve
from starlette.requests import Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # bench/peers is not a package

HERE = str(Path(__file__).resolve().parent)
THREADS = int(os.environ.get("PLANET_BENCH_THREADS", os.cpu_count() or 1))


@serve.deployment(ray_actor_options={"num_cpus": THREADS, "runtime_env": {"env_vars": {"PYTHONPATH": HERE}}})
class Planet:
    """One replica: the pipeline, and a batched method behind the HTTP route."""

    def __init__(self, model_dir: str, max_batch_size: int, batch_wait_s: float) -> None:
        self.pipe = common.load(model_dir)
        self.generate.set_max_batch_size(max_batch_size)
        self.generate.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def generate(self, bodies: list[dict[str, Any]]) -> list[dict[str, str]]:
        # Blocking in the batch handler, as the docs' examples do: the replica runs one batch at a time.
        return [{"image": image} for image in common.generate(self.pipe, bodies)]

    async def __call__(self, request: Request) -> dict[str, str]:
        return await self.generate(await request.json())


def main() -> None:
    model_dir, port, max_batch_size, batch_wait_s = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    ray.init(
        num_cpus=THREADS,
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = Planet.options(max_ongoing_requests=4 * max_batch_size).bind(
        model_dir, max_batch_size, batch_wait_s
    )
    serve.run(app, route_prefix="/generate", blocking=False)
    print("ready", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()

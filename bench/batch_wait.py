"""Single-client latency and 4-client throughput of the real SDXL server (tiny preset, CPU): one run.

    .venv/bin/python bench/batch_wait.py --label after
    PYTHONPATH=/tmp/old .venv/bin/python bench/batch_wait.py --label before  # an older package copy

For A/B runs of a batcher change: the server subprocess inherits ``PYTHONPATH``, so pointing it at a
copy of the package with the old ``serving/batcher.py`` measures the old policy. Prints one JSON
line: sequential served latency vs a direct backend call (bench/serving.py's direct call),
p50/p95 at 1 client (10 requests) and at 4 clients (15 requests each), and the server's batch sizes.
Alternate before/after runs: on a shared machine the order matters as much as the change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import clients  # bench/ is not a package: found through the path set above
import serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="run")
    parser.add_argument("--repeats", type=int, default=15, help="sequential requests for the overhead test")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-batch-wait-ms", type=int, default=50)
    args = parser.parse_args()

    from planet_predictors.presets import tiny

    root = Path(tempfile.mkdtemp(prefix="planet-bench-"))
    model_dir = tiny.ensure(root)
    port = clients.free_port()
    command = [sys.executable, "-m", "planet_predictors.sdxl", "--preset", "tiny", "--model_name", "sdxl"]
    command += ["--http_port", str(port), "--enable_grpc", "false", "--max-queue", "1000"]
    command += ["--max-batch-size", "4", "--max-batch-wait-ms", str(args.max_batch_wait_ms)]
    command += ["--enable_latency_logging", "false"]
    server = subprocess.Popen(
        command,
        env={**os.environ, "PLANET_PRESET_DIR": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        clients.wait_ready(f"http://127.0.0.1:{port}/v1/models/sdxl", server)
        url = f"http://127.0.0.1:{port}/v1/models/sdxl:predict"
        out: dict[str, Any] = {
            "label": args.label,
            "direct": serving.direct(
                model_dir,
                argparse.Namespace(
                    **vars(args), guidance=5.0, threads=os.cpu_count() or 1, direct_repeats=args.repeats
                ),
            ),
        }
        body = {"prompt": "a planet", "width": args.width, "height": args.height, "steps": args.steps}

        def image_of(answer: Any) -> str:
            return str(answer["predictions"][0]["image"])

        def make_body(i: int) -> dict[str, Any]:
            return {"instances": [{**body, "guidance": 5.0, "seed": i}]}

        out["load"] = [
            asyncio.run(clients.run_level(url, make_body, image_of, clients.Level(n, n * per_client)))
            for n, per_client in ((1, 10), (4, 15))
        ]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines()
        out["batch_size"] = [line for line in metrics if line.startswith("planet_batch_size_")]
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

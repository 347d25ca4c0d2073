"""Operator at scale: N pipelines against the embedded API server with a fake KServe status writer.

Measures, per N: seconds until every pipeline is Ready, API requests per pipeline (server-side
counts, the bench's own requests subtracted), operator RSS, and writes during a steady-state window
(goal: 0). Results go to bench/results/operator_scale.json with the command that produced them.

    .venv/bin/python bench/operator_scale.py --sizes 100 500 1000 --steady 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planet_operator.kubeapi import run_in_thread, write_kubeconfig
from planet_operator.testing.fake_kserve import StatusWriter

GROUP, VERSION, PLURAL = "planetgen.io", "v1alpha1", "planetpipelines"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def pipeline(index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PlanetPipeline",
        "metadata": {"name": f"bench-{index:05d}"},
        "spec": {
            "model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}},
            "engine": {"backend": "torch", "precision": "fp16"},
            "rollout": {"steps": []},
        },
    }


def counts(server: Any) -> dict[str, int]:
    return {verb: int(n) for verb, n in server.stats.by_verb().items()}


def run_size(n: int, steady: float, tmp: Path) -> dict[str, Any]:
    crds = [ROOT / "crds", ROOT / "third_party" / "kserve"]
    with run_in_thread(crd_paths=[p for p in crds if p.exists()]) as server:
        kubeconfig = tmp / f"kubeconfig-{n}"
        write_kubeconfig(kubeconfig, server.url)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        log = (tmp / f"operator-{n}.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "planet_operator.cli.main", "operator", "--standalone", "-A",
             "--resync", "30"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        api = client.ApiClient(client.Configuration(host=server.url))
        custom = client.CustomObjectsApi(api)
        try:
            time.sleep(3.0)  # operator start-up (Kopf scans resources)
            before = counts(server)
            t0 = time.monotonic()
            for index in range(n):
                custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, pipeline(index))
            own = n  # creates
            writer = StatusWriter(api, interval=1.0)
            with writer:
                ready = 0
                while ready < n and time.monotonic() - t0 < 600:
                    items = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
                    own += 1
                    ready = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Ready")
                    time.sleep(1.0)
                seconds = time.monotonic() - t0
                writer_requests = writer.writes + writer.lists
            after = counts(server)
            total = sum(after.values()) - sum(before.values()) - own - writer_requests
            rss = psutil.Process(operator.pid).memory_info().rss
            # Steady state: nothing changes, so nothing should be written.
            quiet_before = counts(server)
            resources_before = dict(server.stats.resources)
            time.sleep(steady)
            quiet_after = counts(server)
            steady_writes = sum(quiet_after.get(v, 0) - quiet_before.get(v, 0) for v in WRITES)
            # Which writes, if any: the first thing to look at when the goal of 0 is missed.
            written = {
                key: n - resources_before.get(key, 0)
                for key, n in server.stats.resources.items()
                if key.split(" ", 1)[0] in WRITES and n > resources_before.get(key, 0)
            }
            return {
                "pipelines": n,
                "ready": ready,
                "seconds_to_all_ready": round(seconds, 1),
                "operator_api_requests_per_pipeline": round(total / n, 2),
                "operator_rss_mib": round(rss / 2**20, 1),
                "steady_state_seconds": steady,
                "steady_state_writes": steady_writes,
                "steady_state_writes_by_resource": written,
            }
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window in seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator_scale.json")
    args = parser.parse_args()
    tmp = ROOT / ".planet" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        row = run_size(n, args.steady, tmp)
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([".venv/bin/python", "bench/operator_scale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": rows,
    }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()

"""Operator at scale on the real kube-apiserver: N pipelines to Ready, then a steady state with no writes.

Per N, on a fresh control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler from
``make components``) with the PlanetPipeline and KServe CRDs but no KServe controller: no kubelet
runs pods here, so ``planet_harness.kserve_status.StatusWriter`` marks the InferenceServices and
InferenceGraphs Ready as KServe would. The operator is a local ``planet operator`` process with the
chart's ServiceAccount and ClusterRole, so the API server's audit log attributes every request it
makes. Measured: seconds from the first create until every pipeline is Ready, the operator's API
requests per pipeline, its RSS (and the API server's), and the operator's writes during a
steady-state window (goal: 0), with which resources they were.

Results go to bench/results/operator_scale.json and .md with the command that produced them.

    .venv/bin/python bench/operator_scale.py --sizes 100 500 1000 --steady 60
    .venv/bin/python bench/operator_scale.py --pipelines 50 --steady 10    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane
from planet_harness.kserve_status import StatusWriter

GROUP, VERSION, PLURAL = "planetgen.io", "v1alpha1", "planetpipelines"
NAMESPACE = "bench"
WRITES = ("create", "update", "patch", "delete", "deletecollection")


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


class Audit:
    """The audit log read as it grows: each call returns the new events of one user, once per request."""

    def __init__(self, path: Path, user: str) -> None:
        self.path, self.user, self.offset = path, user, 0

    def new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        found: dict[str, dict[str, Any]] = {}
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        self.offset += complete
        for line in data[:complete].splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("user", {}).get("username") == self.user:
                # A watch is audited when its response starts and when it ends: one request.
                found[event["auditID"]] = event
        return list(found.values())


def resource_of(event: dict[str, Any]) -> str:
    """``verb resource`` of an audit event, e.g. ``patch planetpipelines/status``."""
    ref = event.get("objectRef") or {}
    name = ref.get("resource") or urllib.parse.urlsplit(event["requestURI"]).path
    if ref.get("subresource"):
        name += "/" + ref["subresource"]
    return f"{event['verb']} {name}"


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def apiserver_pid(cluster: ControlPlane) -> int | None:
    for process in cluster.processes:
        if process.name == "kube-apiserver" and process.popen is not None:
            return process.popen.pid
    return None


def wait_watching(audit: Audit, operator: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    """Until the operator watches PlanetPipelines (it is up); returns the requests it made so far."""
    seen = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = audit.new()
        seen += len(events)
        if any(
            e["verb"] == "watch"
            and (e.get("objectRef") or {}).get("resource") == PLURAL
            and e.get("responseStatus", {}).get("code") == 200  # not "storage is (re)initializing"
            for e in events
        ):
            return seen
        if operator.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"the operator did not start watching:\n{log.read_text()[-3000:]}")


def run_size(n: int, *, steady: float, resync: int, timeout: float, tmp: Path) -> dict[str, Any]:
    workdir = tmp / f"operator-scale-{n}"
    subprocess.run(["rm", "-rf", str(workdir)], check=True)
    with harness.running_without_kserve(workdir) as cluster:
        identity = harness.operator_identity(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        audit = Audit(cluster.audit_log, identity.user)
        audit.new()  # skip everything before the operator starts
        env = {**os.environ, "KUBECONFIG": str(identity.kubeconfig), "PYTHONUNBUFFERED": "1"}
        log_path = workdir / "operator.log"
        operator = subprocess.Popen(
            [sys.executable, "-m", "planet_operator.cli.main", "operator", "--standalone", "-A",
             "--resync", str(resync)],
            env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        api = harness.api_client(cluster)
        custom = client.CustomObjectsApi(api)
        try:
            startup_requests = wait_watching(audit, operator, log_path)
            t0 = time.monotonic()
            for index in range(n):
                custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, pipeline(index))
            created = time.monotonic() - t0
            requests: Counter[str] = Counter()
            with StatusWriter(api, namespace=NAMESPACE, interval=1.0) as writer:
                ready = 0
                while ready < n and time.monotonic() - t0 < timeout:
                    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
                    ready = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Ready")
                    requests.update(resource_of(e) for e in audit.new())
                    if operator.poll() is not None:
                        raise RuntimeError(f"the operator exited:\n{log_path.read_text()[-3000:]}")
                    time.sleep(1.0)
                seconds = time.monotonic() - t0
            # What the operator did to get there (its writes of the last second included).
            time.sleep(2.0)
            requests.update(resource_of(e) for e in audit.new())
            rss = rss_mib(operator.pid)
            server = apiserver_pid(cluster)
            # Steady state: nothing changes, so nothing should be written.
            audit.new()
            time.sleep(steady)
            quiet = audit.new()
            written = Counter(resource_of(e) for e in quiet if e["verb"] in WRITES)
            return {
                "pipelines": n,
                "ready": ready,
                "seconds_to_create_all": round(created, 1),
                "seconds_to_all_ready": round(seconds, 1),
                "operator_api_requests_per_pipeline": round(sum(requests.values()) / n, 2),
                "operator_requests_by_resource": dict(requests.most_common()),
                "operator_startup_requests": startup_requests,
                "operator_rss_mib": rss,
                "kube_apiserver_rss_mib": rss_mib(server) if server else None,
                "kserve_status_writes": writer.writes,
                "steady_state_seconds": steady,
                "steady_state_operator_requests": len(quiet),
                "steady_state_writes": sum(written.values()),
                "steady_state_writes_by_resource": dict(written),
            }
        finally:
            operator.terminate()
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
            api.close()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Operator at scale (real kube-apiserver)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}  ",
        f"Setup: {report['setup']}",
        "",
        "| pipelines | Ready | s to create | s to all Ready | operator requests / pipeline "
        "| operator RSS MiB | kube-apiserver RSS MiB | steady window s | steady requests | steady writes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['pipelines']} | {row['ready']} | {row['seconds_to_create_all']} "
            f"| {row['seconds_to_all_ready']} | {row['operator_api_requests_per_pipeline']} "
            f"| {row['operator_rss_mib']} | {row['kube_apiserver_rss_mib']} "
            f"| {row['steady_state_seconds']:g} | {row['steady_state_operator_requests']} "
            f"| {row['steady_state_writes']} |"
        )
    for row in report["results"]:
        lines += ["", f"## {row['pipelines']} pipelines: the operator's requests until all Ready", ""]
        lines += ["| request | count |", "| --- | ---: |"]
        lines += [f"| {key} | {count} |" for key, count in row["operator_requests_by_resource"].items()]
        if row["steady_state_writes_by_resource"]:
            lines += ["", "Steady-state writes:", ""]
            lines += [f"- {key}: {count}" for key, count in row["steady_state_writes_by_resource"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--pipelines", type=int, nargs="+", default=[100, 500, 1000],
                        help="pipeline counts, each on a fresh control plane")  # fmt: skip
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window in seconds")
    parser.add_argument("--resync", type=int, default=30, help="the operator's --resync in seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for all Ready")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator_scale.json")
    args = parser.parse_args()
    tmp = ROOT / ".planet" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        row = run_size(n, steady=args.steady, resync=args.resync, timeout=args.timeout, tmp=tmp)
        print(json.dumps(row), flush=True)
        rows.append(row)
    report = {
        "command": " ".join([".venv/bin/python", "bench/operator_scale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": (
            "real etcd, kube-apiserver (RBAC, audit log), kube-controller-manager and kube-scheduler; "
            "PlanetPipeline and KServe CRDs, no KServe controller (planet_harness.kserve_status.StatusWriter "
            "writes KServe's status, no pods run); the operator runs with --standalone -A "
            f"--resync {args.resync} as the chart's ServiceAccount; one namespace; requests counted "
            "from the audit log by the operator's user"
        ),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    main()

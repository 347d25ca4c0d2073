"""Engine-build Jobs, run locally: ``python -m planet_build`` on the tiny preset with ONNX Runtime.

A cluster runs these on a GPU node with TensorRT; here there is no GPU and no model hub, so the
same command runs with ``--preset tiny --backend onnxruntime`` into ``.planet/engines`` and the Job's
status is written the way the Job controller would (Complete, or Failed with the exit code).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import sys
from pathlib import Path
from typing import Any

from planet_operator.api import resource
from planet_operator.devstack.processes import Process
from planet_operator.kube import resources
from planet_operator.kube.client import Client

log = logging.getLogger("planet.devstack")
#: Builder flags whose values only make sense in a cluster (hub URIs, GPUs, the cluster's key).
_DROPPED = ("--model", "--revision", "--lora", "--gpu-product", "--expect-key", "--cache-dir", "--backend",
            "--precision")  # fmt: skip
#: The builder's last line: ``built <entry dir>`` or ``hit <entry dir>``.
_RESULT = re.compile(r"^(built|hit) (\S.*)$")


def engine_links(workdir: Path) -> Path:
    """``<key the operator computed>`` ▶ the local build's entry: where predictors find their engines.

    The local build is of the tiny preset for ONNX Runtime, so its own key differs from the cluster's;
    the link makes ``--engine-dir=/mnt/engines/<operator key>`` resolve as the PVC would.
    """
    return workdir / "engines" / "by-key"


def local_build_command(args: list[str], cache_dir: Path) -> list[str]:
    """The Job's builder arguments, rewritten to build the tiny preset for ONNX Runtime on the CPU."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _DROPPED:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return [
        sys.executable, "-m", "planet_build", *kept, "--preset", "tiny", "--backend", "onnxruntime",
        "--precision", "fp32", "--cache-dir", str(cache_dir),
    ]  # fmt: skip


@dataclasses.dataclass(kw_only=True)
class _Run:
    process: Process
    started: str
    expect_key: str | None


class LocalJobs:
    """Runs engine-build Jobs as local processes and reports their outcome in the Job's status."""

    def __init__(self, client: Client, *, workdir: Path) -> None:
        self.client = client
        self.workdir = workdir
        self.runs: dict[tuple[str, str], _Run] = {}

    async def sync(self) -> None:
        """Start new builds, report finished ones."""
        listed = await self.client.list_objects(
            resources.JOBS, None, labels={resource.LABEL_MANAGED_BY: resource.MANAGER}
        )
        for job in listed.get("items", []):
            meta = job["metadata"]
            key = (meta["namespace"], meta["name"])
            if _finished(job):
                continue
            run = self.runs.get(key)
            if run is None:
                self.runs[key] = run = self._start(job)
                await self._status(job, {"startTime": run.started, "active": 1})
                continue
            popen = run.process.popen
            if popen is None or popen.poll() is None:
                continue
            tail = run.process.tail(5)
            if popen.returncode == 0:
                self._link(run, tail)
            await self._status(job, _outcome(popen.returncode, run, tail))
            self.runs.pop(key)

    def _start(self, job: dict[str, Any]) -> _Run:
        container = job["spec"]["template"]["spec"]["containers"][0]
        argv = local_build_command(list(container.get("args", [])), self.workdir / "engines")
        name = job["metadata"]["name"]
        process = Process(
            name=name, command=argv, port=0, ready_path="", log_path=self.workdir / "logs" / f"job-{name}.log"
        )
        log.info("running build Job %s locally: %s", name, " ".join(argv[2:]))
        process.start()
        expect_key = _flag(container.get("args", []), "--expect-key")
        return _Run(process=process, started=_now(), expect_key=expect_key)

    def _link(self, run: _Run, tail: str) -> None:
        found = [m for line in tail.splitlines() if (m := _RESULT.match(line.strip()))]
        if not run.expect_key or not found:
            log.warning("build %s: no engine key or result line; predictors will use torch", run.process.name)
            return
        links = engine_links(self.workdir)
        links.mkdir(parents=True, exist_ok=True)
        link = links / run.expect_key
        link.unlink(missing_ok=True)
        link.symlink_to(Path(found[-1].group(2)).resolve(), target_is_directory=True)

    async def _status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        meta = job["metadata"]
        await self.client.patch(resources.JOBS, meta["namespace"], meta["name"], {"status": status},
                                subresource="status")  # fmt: skip

    async def close(self) -> None:
        """Stop running builds."""
        for run in self.runs.values():
            run.process.stop()


def _flag(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return str(args[index + 1])
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _outcome(code: int, run: _Run, tail: str) -> dict[str, Any]:
    now = _now()
    if code == 0:
        condition = {"type": "Complete", "status": "True", "lastTransitionTime": now}
        return {"succeeded": 1, "active": 0, "completionTime": now, "conditions": [condition]}
    condition = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": f"builder exited with code {code}: {tail.splitlines()[-1] if tail else ''}"[:500],
        "lastTransitionTime": now,
    }
    return {"failed": 1, "active": 0, "conditions": [condition]}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

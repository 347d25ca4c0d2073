"""``planet dev up``: API server + operator + local KServe runtime, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from planet_operator.devstack import gateway
from planet_operator.devstack.jobs import LocalJobs
from planet_operator.devstack.processes import free_port
from planet_operator.devstack.runtime import LocalKServe
from planet_operator.kube.client import Client, Connection

log = logging.getLogger("planet.devstack")
#: How often the runtime looks at InferenceServices (it polls; a dev harness can afford it).
SYNC_SECONDS = 0.5


@dataclasses.dataclass(kw_only=True)
class StackOptions:
    """Where state goes and which CRDs to install."""

    state_dir: Path = Path(".planet")
    crd_paths: list[Path] = dataclasses.field(default_factory=list)
    operator_args: list[str] = dataclasses.field(default_factory=list)
    resync_seconds: float = 5.0


class LocalStack:
    """Everything ``planet dev up`` runs; an async context manager for the demo and the e2e tests."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.kubeconfig = options.state_dir / "kubeconfig"
        self.server: Any = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.runtime: LocalKServe | None = None
        self.jobs: LocalJobs | None = None
        self._runner: web.AppRunner | None = None
        self._server_cm: Any = None
        self._sync_task: asyncio.Task[None] | None = None
        self.gateway_url = ""

    async def __aenter__(self) -> LocalStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """API server ▶ kubeconfig ▶ operator ▶ local KServe runtime and its gateway."""
        from planet_operator import kubeapi as apiserver

        state = self.options.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # 1. The API server, with the CRDs installed before it answers.
        self._server_cm = apiserver.run_in_thread(crd_paths=self.options.crd_paths)
        self.server = self._server_cm.__enter__()
        apiserver.write_kubeconfig(self.kubeconfig, self.server.url)
        # 2. The real operator, as its own process (as in a cluster).
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig.resolve()), "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable, "-m", "planet_operator.cli.main", "operator", "--standalone", "-A",
            "--resync", str(self.options.resync_seconds), "--no-namespace-label", *self.options.operator_args,
        ]  # fmt: skip
        self.operator = await asyncio.to_thread(_spawn, command, env, state / "operator.log")
        # 3. The local KServe runtime behind one gateway port.
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        self.runtime = LocalKServe(
            Client(Connection(server=self.server.url)),
            workdir=state / "runtime",
            preset_dir=state / "presets",
            gateway=self.gateway_url,
        )
        self.jobs = LocalJobs(self.runtime.client, workdir=state / "runtime")
        self._runner = web.AppRunner(gateway.build_app(self.runtime))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._sync_task = asyncio.create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        assert self.runtime is not None and self.jobs is not None
        while True:
            try:
                await self.runtime.sync()
                await self.jobs.sync()
            except Exception as exc:
                log.warning("local runtime sync failed: %s", exc)
            await asyncio.sleep(SYNC_SECONDS)

    async def stop(self) -> None:
        """Stop in reverse order; every child process is gone when this returns."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self.jobs is not None:
            await self.jobs.close()
        if self.runtime is not None:
            await self.runtime.close()
            await self.runtime.client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.operator.wait, 20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                await asyncio.to_thread(self.operator.wait, 5)
        if self._server_cm is not None:
            self._server_cm.__exit__(None, None, None)
            self._server_cm = None

    def child_pids(self) -> list[int]:
        """PIDs of every process the stack started (for the no-orphans test)."""
        pids = [self.operator.pid] if self.operator is not None else []
        if self.runtime is not None:
            for service in self.runtime.services.values():
                pids += [p.popen.pid for p in service.revisions.values() if p.popen is not None]
        return pids

    def child_commands(self) -> list[str]:
        """The command line of every predictor process, as the stack started it."""
        if self.runtime is None:
            return []
        services = self.runtime.services.values()
        return [" ".join(p.command) for service in services for p in service.revisions.values()]


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


async def run_until_signalled(options: StackOptions) -> None:
    """Foreground ``planet dev up``: print the kubeconfig, run until Ctrl-C or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    async with LocalStack(options) as stack:
        print(stack.kubeconfig.read_text(), flush=True)
        print(f"# kubeconfig written to {stack.kubeconfig}", flush=True)
        print(f"# export KUBECONFIG={stack.kubeconfig.resolve()}", flush=True)
        print(
            f"# local KServe gateway: {stack.gateway_url}; operator log: {options.state_dir / 'operator.log'}"
        )
        print("# Ctrl-C stops the API server, the operator and every predictor", flush=True)
        await stopping.wait()

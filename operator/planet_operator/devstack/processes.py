"""Supervised predictor processes: start, probe, restart on crash, and never leave orphans."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

#: Restart back-off after a crash, growing per consecutive crash.
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass(kw_only=True)
class Process:
    """One predictor revision running locally."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0
    last_exit: int | None = None
    next_start: float = 0.0

    @property
    def url(self) -> str:
        """Where the predictor answers."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start in its own process group, so stopping it stops its children too."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        log.close()
        self.ready = False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL what is left."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self.ready = False

    async def supervise(self, session: aiohttp.ClientSession) -> None:
        """One supervision step: restart a crashed process (with back-off) and probe readiness."""
        if self.popen is not None and self.popen.poll() is not None:
            if self.last_exit is None or self.ready or self.next_start == 0.0:
                self.last_exit = self.popen.returncode
                self.restarts += 1
                self.next_start = time.monotonic() + BACKOFF[min(self.restarts - 1, len(BACKOFF) - 1)]
            self.ready = False
            if time.monotonic() >= self.next_start:
                self.next_start = 0.0
                self.start()
            return
        if self.popen is None:
            self.start()
            return
        try:
            async with session.get(
                self.url + self.ready_path, timeout=aiohttp.ClientTimeout(total=2)
            ) as reply:
                self.ready = reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            self.ready = False

    def tail(self, lines: int = 20) -> str:
        """The end of the process's log, for status messages and errors."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def stop_all(processes: list[Process]) -> None:
    """Stop every process concurrently."""
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))

"""Child processes of the harness: one log file each, stopped with their whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A long-running program started by the harness."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.command = list(command)
        self.log = log
        self.env = dict(env or {})
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        #: Set by :meth:`stop`: an exit after it is expected, not a crash to recover from.
        self.stopping = False
        self.restarts = 0

    def start(self) -> None:
        """Start in a new session, so :meth:`stop` reaches the children it spawns too."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``check`` until it holds; fail fast, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited (code {self.popen and self.popen.poll()}):\n{self.tail()}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: {what} not within {timeout:.0f} s; log {self.log}:\n{self.tail()}")

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        self.stopping = True
        if self.popen is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)
        # The leader may be gone while children it spawned still hold the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class Supervisor:
    """Restarts a process that exits on its own, with a crash-loop backoff, as an init system would.

    A killed controller, API server or kubelet comes back; what they keep in etcd and on disk lets
    them carry on. ``processes`` is read on every pass, so processes started later are covered too.
    """

    def __init__(
        self, processes: list[Process], *, say: Callable[[str], None], max_backoff: float = 30.0
    ) -> None:
        self.processes = processes
        self.say = say
        self.max_backoff = max_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._next: dict[str, float] = {}

    def start(self) -> None:
        """Watch in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the processes are stopped, so none is restarted on the way out)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for process in list(self.processes):
                if process.popen is None or process.running or process.stopping:
                    continue
                now = time.monotonic()
                due = self._next.setdefault(process.name, now + min(2.0**process.restarts, self.max_backoff))
                if now < due:
                    continue
                code = process.popen.poll()
                self.say(
                    f"{process.name} exited (code {code}); restarting it (restart {process.restarts + 1})"
                )
                del self._next[process.name]
                process.restarts += 1
                process.start()

"""The launcher's process supervision, without a cluster: a killed component comes back, a stopped one
does not, and the restart backs off."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from planet_harness.processes import Process, Supervisor


def wait(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met")


def test_a_killed_process_is_restarted_and_a_stopped_one_is_not(tmp_path: Path) -> None:
    said: list[str] = []
    process = Process(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], log=tmp_path / "s.log"
    )
    process.start()
    supervisor = Supervisor([process], say=said.append, max_backoff=1.0)
    supervisor.start()
    try:
        assert process.popen is not None
        first = process.popen.pid
        os.kill(first, signal.SIGKILL)
        wait(lambda: process.running and process.popen is not None and process.popen.pid != first)
        assert process.restarts == 1
        assert said and "sleeper exited (code -9); restarting it" in said[0]
        process.stop(timeout=5)
        time.sleep(2.5)  # longer than the backoff: a stopped process stays stopped
        assert not process.running and process.restarts == 1
    finally:
        supervisor.stop()
        process.stop(timeout=5)

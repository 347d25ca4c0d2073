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


def test_a_pod_mount_over_tmp_keeps_a_checkout_that_lives_there(tmp_path: Path) -> None:
    """A chart's /tmp emptyDir must not hide the program: a checkout (and venv) may live under /tmp."""
    import subprocess

    from planet_harness.kubelet.container import mount_script

    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    (checkout / "bin" / "prog.sh").write_text("echo alive\n")
    empty = tmp_path / "emptydir"
    empty.mkdir()
    top = "/" + tmp_path.parts[1]  # /tmp
    lines = mount_script([(empty, top, False)], tmp_path / "scratch", keep=[checkout])
    script = "\n".join([*lines, f"sh {checkout}/bin/prog.sh", f"test ! -e {tmp_path}/emptydir"])
    done = subprocess.run(["unshare", "--mount", "--", "sh", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr

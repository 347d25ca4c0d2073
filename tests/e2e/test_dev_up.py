"""``planet dev up`` as a user runs it: ``.planet/env`` once up, state kept across restarts, and a
signal stops every process and removes every network namespace and link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PLANET = str(Path(sys.executable).with_name("planet"))


def start(state: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [PLANET, "dev", "up", f"--state-dir={state}"], stdout=out, stderr=subprocess.STDOUT
        )


def wait_for_env(
    process: subprocess.Popen[bytes], env: Path, log: Path, timeout: float = 300
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        if env.exists():
            lines = [
                line for line in env.read_text().splitlines() if "=" in line and not line.startswith("#")
            ]
            return dict(line.split("=", 1) for line in lines)
        time.sleep(1)
    raise AssertionError(f".planet/env not written in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def kubectl(values: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": values["KUBECONFIG"]}
    return subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def leftovers(state: Path) -> list[str]:
    """Processes started from ``state``, and the stack's namespaces and links."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(state) in command and "pytest" not in command:
                found.append(f"pid {proc.name}: {command[:120]}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"netns {line}" for line in netns.splitlines() if line.startswith("pg-")]
    found += [f"link {line.split(':')[1]}" for line in links.splitlines() if ": pg-" in line]
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_dev_up_writes_env_keeps_state_and_leaves_nothing_behind(tmp_path: Path, signum: int) -> None:
    state, log = tmp_path / "state", tmp_path / "dev-up.log"
    env = state / "env"
    first = start(state, log)
    try:
        values = wait_for_env(first, env, log)
        assert values["PLANET_PROXY"].startswith("http://127.0.0.1:")
        assert kubectl(values, "create", "configmap", "kept", "--from-literal=a=b").returncode == 0
    finally:
        first.send_signal(signum)
        assert first.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert not env.exists(), "a stopped stack leaves no env file pointing at it"
    assert not leftovers(state)

    # Started again on the same state: etcd on disk still has what the first run wrote.
    again = start(state, log)
    try:
        values = wait_for_env(again, env, log)
        assert kubectl(values, "get", "configmap", "kept").returncode == 0
        assert "planetgen" in kubectl(values, "get", "deployments", "-n", "planetgen-system").stdout
    finally:
        again.send_signal(signal.SIGHUP)
        assert again.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert not leftovers(state)

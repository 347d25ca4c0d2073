"""One container as a local process: in its pod's network namespace, with its volumes mounted.

A container gets a private mount namespace in which its volume mounts appear at their paths over the
host's own filesystem (there is no image to give it a root of its own, so a mount over a folder the
process needs, such as the one holding its interpreter, hides it). A mount path whose folder does
not exist on this machine is made inside an overlay of its nearest existing parent, so nothing is
ever created on the host's filesystem.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown names stay as written)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(one, text)


def programs() -> list[Path]:
    """What every container's process needs to see: the interpreter, the venv and this checkout.

    A real container has an image for a root; here a pod's ``/tmp`` emptyDir would otherwise hide a
    checkout (and its venv) that lives under ``/tmp``.
    """
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    found.add(Path(__file__).resolve().parents[3])
    return sorted(found)


def mount_script(
    mounts: list[tuple[Path, str, bool]], scratch: Path, *, keep: list[Path] | None = None
) -> list[str]:
    """Shell lines that make ``(source, target, read_only)`` mounts inside a private mount namespace.

    A path in ``keep`` that a mount would hide is put back on top of it (through a descriptor opened
    before the mount), so the container's program still runs.
    """
    keep = programs() if keep is None else keep
    lines = ["set -e", "mount --make-rprivate /"]
    overlaid: set[str] = set()
    binds: list[str] = []

    def hides(target: str) -> bool:
        # A mount over /tmp (say) would hide the sources and the scratch folder beneath it.
        return any(Path(target) in (p, *p.parents) for p in [scratch, *(m[0] for m in mounts)])

    # Overlays first and mounts that hide the kubelet's own folders last, so every source stays visible.
    for _source, target, _read_only in sorted(mounts, key=lambda m: hides(m[1])):
        parent = Path(target)
        while not parent.exists():
            parent = parent.parent
        if str(parent) != target and str(parent) not in overlaid:
            if str(parent) == "/":
                raise NotImplementedError(f"mount path {target}: no existing parent folder to overlay")
            upper = scratch / "overlay" / str(parent).strip("/").replace("/", "_")
            (upper / "upper").mkdir(parents=True, exist_ok=True)
            (upper / "work").mkdir(parents=True, exist_ok=True)
            lines.append(
                "mount -t overlay overlay -o "
                + shlex.quote(f"lowerdir={parent},upperdir={upper / 'upper'},workdir={upper / 'work'}")
                + f" {shlex.quote(str(parent))}"
            )
            overlaid.add(str(parent))
    # Like runc: parents before children (KServe mounts its emptyDir at /mnt and others under it),
    # and read-only last, so a mount point can still be made inside a parent mounted read-only.
    read_only_last: list[str] = []
    descriptors = iter(range(3, 10))  # what sh can open: one per hidden path
    for source, target, read_only in sorted(mounts, key=lambda m: (hides(m[1]), len(Path(m[1]).parts))):
        quoted = shlex.quote(target)
        hidden = [k for k in keep if Path(target) in k.parents and k.is_dir()]
        kept = [(next(descriptors), k) for k in hidden]
        binds += [f"exec {fd}< {shlex.quote(str(k))}" for fd, k in kept]
        binds.append(f"mkdir -p {quoted}" if source.is_dir() else f"touch {quoted}")
        binds.append(f"mount --bind {shlex.quote(str(source))} {quoted}")
        for fd, k in kept:
            binds += [
                f"mkdir -p {shlex.quote(str(k))}",
                f"mount --no-canonicalize --bind /proc/self/fd/{fd} {shlex.quote(str(k))}",
            ]
        if read_only:
            read_only_last.append(f"mount -o remount,bind,ro {quoted}")
    return lines + binds + read_only_last


class Container:
    """A running (or finished) container process and what its status needs."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        argv: list[str],
        env: dict[str, str],
        netns: str,
        mounts: list[tuple[Path, str, bool]],
        folder: Path,
    ) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.argv = argv
        self.env = env
        self.netns = netns
        self.mounts = mounts
        self.folder = folder
        self.log = folder / f"{self.name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.restarts = 0
        self.ready = False
        self.started = False
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        """Start the process (again)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        script = [*mount_script(self.mounts, self.folder), f"exec {shlex.join(self.argv)}"]
        cwd = self.spec.get("workingDir")
        if cwd:
            script.insert(-1, f"cd {shlex.quote(cwd)}")
        command = [
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            "\n".join(script),
        ]
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.started_at, self.finished_at = time.time(), None
        self.ready = self.started = False

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit code once it has exited."""
        return None if self.popen is None else self.popen.poll()

    def tail(self, lines: int = 10, limit: int = 4096) -> str:
        """The end of its log: the termination message of a failed container (FallbackToLogsOnError)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])[-limit:]

    def stop(self, grace: float) -> None:
        """SIGTERM its process group, SIGKILL after ``grace`` seconds."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=max(grace, 0.1))
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

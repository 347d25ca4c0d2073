"""The content-addressed engine cache: ``<cache-dir>/<key>/`` with a manifest, a lock and resumable progress.

An entry is complete when ``manifest.json`` exists and every file it lists has its recorded size and
sha256; only then is it a hit. Files are written under a temporary name and renamed, so a crash never
leaves a half-written file under a final name; ``.progress.json`` records finished components so a
restarted build (the Job's next attempt) skips them. One builder per key at a time: ``<key>.lock``
beside the entry is held with ``flock`` (released by the kernel if the builder dies).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from planet_build.errors import EXIT_FAILED, BuildError
from planet_contracts.engines import MANIFEST

PROGRESS = ".progress.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (engines are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(entry_dir: Path, name: str) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of a file in the entry."""
    path = entry_dir / name
    return {"path": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON under a temporary name, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def verify_files(entry_dir: Path, record: Mapping[str, Any]) -> str | None:
    """Why ``record``'s files (its ``path`` and ``external_data``) do not match the disk, or None."""
    files = [record, *([record["external_data"]] if isinstance(record.get("external_data"), dict) else [])]
    for item in files:
        path = entry_dir / str(item.get("path", ""))
        if not path.is_file():
            return f"{item.get('path')} is missing"
        if path.stat().st_size != item.get("bytes"):
            return f"{item.get('path')} has {path.stat().st_size} bytes, expected {item.get('bytes')}"
        if sha256_file(path) != item.get("sha256"):
            return f"{item.get('path')} does not match its sha256"
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Entry:
    """One key's folder in the cache."""

    def __init__(self, cache_dir: Path, key: str) -> None:
        self.cache_dir = cache_dir
        self.key = key
        self.dir = cache_dir / key

    @property
    def manifest_path(self) -> Path:
        """``<entry>/manifest.json``; written last, so its presence marks a finished build."""
        return self.dir / MANIFEST

    def complete(self) -> dict[str, Any] | None:
        """The manifest when the entry is complete and every file verifies, else None."""
        manifest = read_json(self.manifest_path)
        if manifest is None or manifest.get("key") != self.key:
            return None
        components = manifest.get("components")
        if not isinstance(components, dict) or not components:
            return None
        for record in components.values():
            if not isinstance(record, dict) or verify_files(self.dir, record) is not None:
                return None
        return manifest

    def invalidate(self) -> None:
        """Drop a manifest that no longer verifies, so the entry is rebuilt (and not served)."""
        with contextlib.suppress(FileNotFoundError):
            self.manifest_path.unlink()

    def load_progress(self) -> dict[str, dict[str, Any]]:
        """Finished steps of an earlier attempt whose files still verify (``step name ▶ record``)."""
        progress = read_json(self.dir / PROGRESS)
        if progress is None or progress.get("key") != self.key:
            return {}
        done = progress.get("done")
        if not isinstance(done, dict):
            return {}
        return {
            name: record
            for name, record in done.items()
            if isinstance(record, dict) and verify_files(self.dir, record) is None
        }

    def save_progress(self, done: Mapping[str, Mapping[str, Any]]) -> None:
        """Record finished steps (after each one, so a crash loses at most the step in flight)."""
        write_json_atomic(self.dir / PROGRESS, {"key": self.key, "done": dict(done)})

    def staging(self, name: str) -> Path:
        """A temporary path in the entry for ``name``; renamed into place once written."""
        return self.dir / f".{name}.tmp-{os.getpid()}"

    def clean_staging(self) -> None:
        """Remove temporary files of attempts that died (safe: the lock is held)."""
        for path in self.dir.glob(".*.tmp-*"):
            if path.is_dir():
                for child in sorted(path.rglob("*"), reverse=True):
                    child.rmdir() if child.is_dir() else child.unlink()
                path.rmdir()
            else:
                path.unlink()

    @contextlib.contextmanager
    def lock(self, *, timeout: float, on_wait: Any = None) -> Iterator[None]:
        """Hold ``<key>.lock`` exclusively; wait up to ``timeout`` seconds for another builder."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{self.key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if time.monotonic() >= deadline:
                    raise BuildError(
                        f"another builder has held {path} for over {timeout:.0f} s; giving up",
                        code=EXIT_FAILED,
                    ) from None
                time.sleep(0.5)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            # Closing releases the flock; the file stays (unlinking it would race with a waiter).
            os.close(fd)

"""The cache entry: verification, resumable progress, and one builder per key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from planet_build import cache
from planet_build.errors import BuildError

KEY = "ab" * 32


def _entry(tmp_path: Path) -> cache.Entry:
    entry = cache.Entry(tmp_path, KEY)
    entry.dir.mkdir(parents=True)
    return entry


def _complete(entry: cache.Entry) -> None:
    (entry.dir / "unet.onnx").write_bytes(b"graph")
    record = cache.file_record(entry.dir, "unet.onnx")
    cache.write_json_atomic(entry.manifest_path, {"key": KEY, "components": {"unet": record}})


def test_a_verified_manifest_is_a_hit(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    assert entry.complete() is None
    _complete(entry)
    manifest = entry.complete()
    assert manifest is not None and manifest["components"]["unet"]["bytes"] == 5


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "other-key"])
def test_a_damaged_entry_is_not_a_hit(tmp_path: Path, damage: str) -> None:
    entry = _entry(tmp_path)
    _complete(entry)
    graph = entry.dir / "unet.onnx"
    if damage == "truncate":
        graph.write_bytes(b"gra")
    elif damage == "flip":
        graph.write_bytes(b"grapH")
    elif damage == "delete":
        graph.unlink()
    else:
        cache.write_json_atomic(entry.manifest_path, {"key": "cd" * 32, "components": {}})
    assert entry.complete() is None


def test_progress_keeps_only_steps_whose_files_verify(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    for name in ("unet.onnx", "vae_decoder.onnx"):
        (entry.dir / name).write_bytes(name.encode())
    done = {n.split(".")[0]: cache.file_record(entry.dir, n) for n in ("unet.onnx", "vae_decoder.onnx")}
    entry.save_progress(done)
    (entry.dir / "vae_decoder.onnx").write_bytes(b"half-writ")
    assert set(entry.load_progress()) == {"unet"}
    cache.write_json_atomic(entry.dir / cache.PROGRESS, {"key": "other", "done": done})
    assert entry.load_progress() == {}


def test_staging_files_of_dead_attempts_are_removed(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    (entry.dir / ".unet.onnx.tmp-123").write_bytes(b"x")
    nested = entry.dir / ".export-unet.tmp-123" / "sub"
    nested.mkdir(parents=True)
    (nested / "w.bin").write_bytes(b"x")
    (entry.dir / "unet.onnx").write_bytes(b"keep")
    entry.clean_staging()
    assert sorted(p.name for p in entry.dir.iterdir()) == ["unet.onnx"]


def _hold(cache_dir: Path, seconds: float) -> subprocess.Popen[str]:
    """Another builder process holding the key's lock; returns once it holds it."""
    code = (
        "import sys, time; from pathlib import Path; from planet_build import cache\n"
        f"with cache.Entry(Path({str(cache_dir)!r}), {KEY!r}).lock(timeout=5):\n"
        f"    print('held', flush=True); time.sleep({seconds})\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_the_lock_excludes_a_second_builder_until_released(tmp_path: Path) -> None:
    holder = _hold(tmp_path, 2.0)
    try:
        entry = cache.Entry(tmp_path, KEY)
        with pytest.raises(BuildError, match="another builder") as caught:
            with entry.lock(timeout=0.3):
                pass
        assert caught.value.code == 1
        waited: list[bool] = []
        started = time.monotonic()
        with entry.lock(timeout=30, on_wait=lambda: waited.append(True)):
            assert time.monotonic() - started > 0.5
        assert waited == [True]
    finally:
        holder.wait(30)


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    holder = _hold(tmp_path, 60.0)
    holder.kill()
    holder.wait(10)
    with cache.Entry(tmp_path, KEY).lock(timeout=5):
        pass

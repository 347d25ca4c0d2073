"""Stands in for KServe's storage-initializer image: copies models from a local store, not a hub.

KServe's pod mutator injects the init container with ``SRC DEST [SRC DEST ...]`` arguments; this
copies ``hf://org/name`` from ``$PLANET_MODEL_STORE/hf/org/name`` (likewise ``s3://bucket/key``,
``gs://``), and a ``pvc://`` or local path from where it already is. There is no network here, so
the store is what a hub would have served.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def source(uri: str, store: Path) -> Path:
    """Where ``uri``'s files are in the local store."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return Path(uri)
    rest = rest.split(":", 1)[0] if scheme == "hf" else rest  # hf://org/name:revision
    return store / scheme / rest.strip("/")


def main(argv: list[str] | None = None) -> int:
    """Copy each SRC to its DEST; exit 1 with the reason when a model is not in the store."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or len(args) % 2:
        print("usage: storage_initializer SRC DEST [SRC DEST ...]", file=sys.stderr)
        return 2
    store = Path(os.environ.get("PLANET_MODEL_STORE", "/var/lib/planetgen/models"))
    for uri, dest in zip(args[::2], args[1::2], strict=True):
        found = source(uri, store)
        if not found.exists():
            print(f"{uri}: not in the local model store ({found})", file=sys.stderr)
            return 1
        target = Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        if found.is_dir():
            shutil.copytree(found, target, dirs_exist_ok=True)
        else:
            shutil.copy2(found, target / found.name)
        print(f"{uri} ▶ {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

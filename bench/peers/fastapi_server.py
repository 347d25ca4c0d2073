"""Plain FastAPI: a diffusers call per request, one at a time (no batching), as most servers start.

python bench/peers/fastapi_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # bench/peers is not a package

app = FastAPI()
pipe = common.load(sys.argv[1])
# The usual fix for "scheduler state is not thread-safe": one generation at a time.
lock = threading.Lock()


@app.post("/generate")
def generate(body: dict[str, Any]) -> dict[str, str]:
    """One image; FastAPI runs this sync handler in its thread pool."""
    with lock:
        return {"image": common.generate(pipe, [body])[0]}


@app.get("/health")
def health() -> dict[str, str]:
    """Up once the pipeline loaded (it loads before the server starts)."""
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")

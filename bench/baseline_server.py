"""The common baseline: a plain FastAPI app calling a diffusers pipeline per request (no batching).

Run: python bench/baseline_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import base64
import io
import sys
import threading

import torch
import uvicorn
from diffusers import StableDiffusionXLPipeline
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
pipe = StableDiffusionXLPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
# The usual fix for "scheduler state is not thread-safe": one generation at a time.
lock = threading.Lock()


class Body(BaseModel):
    prompt: str
    seed: int = 0
    steps: int = 4
    width: int = 256
    height: int = 112


@app.post("/generate")
def generate(body: Body) -> dict[str, str]:
    with lock:
        image = pipe(
            body.prompt,
            num_inference_steps=body.steps,
            width=body.width,
            height=body.height,
            generator=torch.Generator().manual_seed(body.seed),
        ).images[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode()}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")

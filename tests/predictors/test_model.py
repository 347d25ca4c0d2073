"""The kserve.Model in-process with a test-double backend: lifecycle and protocol shapes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from prometheus_client import CollectorRegistry

from planet_predictors import config
from planet_predictors.backends.base import Backend, BackendSettings, BatchParams, Generated, Item, Stop
from planet_predictors.sdxl.model import SDXLModel, ServeSettings
from planet_predictors.serving.metrics import Metrics


class CountingBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        super().__init__(BackendSettings(model_dir=Path("/nowhere")))
        self.loads = 0
        self.batches: list[tuple[BatchParams, int]] = []
        self.threads: set[str] = set()

    def load(self) -> None:
        self.loads += 1
        self.threads.add(threading.current_thread().name)

    def generate(
        self, params: BatchParams, items: Sequence[Item], *, stop: Stop | None = None
    ) -> list[Generated]:
        self.batches.append((params, len(items)))
        self.threads.add(threading.current_thread().name)
        return [
            Generated(
                Image.new("RGB", (params.width, params.height), (it.seed % 256, 0, 0)), {"denoise": 0.0}
            )
            for it in items
        ]


def make() -> tuple[SDXLModel, CountingBackend, CollectorRegistry]:
    backend = CountingBackend()
    registry = CollectorRegistry()
    model = SDXLModel(
        "sdxl",
        config=config.default(),
        backend=backend,
        serve=ServeSettings(max_batch_wait_ms=0),
        metrics=Metrics(pipeline="p", revision="r", registry=registry),
    )
    return model, backend, registry


def test_ready_only_after_warm_up_and_load_is_idempotent() -> None:
    model, backend, registry = make()
    assert not model.ready
    assert model.load() and model.load()
    assert model.ready
    assert backend.loads == 1
    assert backend.batches == [(BatchParams(1536, 640, 1, 7.0), 1)]  # one warm-up at the configured size
    assert (
        registry.get_sample_value(
            "planet_engine_load_seconds",
            {"pipeline": "p", "revision": "r", "component": "generate", "backend": "fake"},
        )
        or -1
    ) >= 0


async def test_load_warm_up_and_batches_all_run_on_the_one_device_thread() -> None:
    # torch keeps an OpenMP team per calling thread: a warm-up on the loading thread left a second
    # team spinning against the device thread's, and CPU batches ran 2.5x slower (bench/serving.py).
    model, backend, _ = make()
    model.load()
    await model.predict(await model.preprocess({"instances": [{"prompt": "a planet", "seed": 1}]}))
    assert len(backend.threads) == 1
    assert backend.threads.pop().startswith("planet-device")
    assert len(backend.batches) == 2  # the warm-up and the request


async def test_v1_instances_become_predictions_in_order() -> None:
    model, _, _ = make()
    model.load()
    body = {"instances": [{"prompt": "a", "seed": 1, "width": 64, "height": 64}, {"prompt": "b", "seed": 2}]}
    response, _ = await model(body)
    predictions = response["predictions"]
    assert [p["seed"] for p in predictions] == [1, 2]
    assert [(p["width"], p["height"]) for p in predictions] == [(64, 64), (1536, 640)]

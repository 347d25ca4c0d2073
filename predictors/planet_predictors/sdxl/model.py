"""The SDXL ``kserve.Model``: parse ▶ admit + batch ▶ backend (▶ redraw) ▶ encode with provenance."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from planet_predictors import imaging
from planet_predictors.backends.base import Backend, BatchParams, Generated, Item
from planet_predictors.config import PipelineConfig
from planet_predictors.quality import spec as quality
from planet_predictors.quality.verifier import Verdict
from planet_predictors.sdxl import inputs
from planet_predictors.serving import errors, protocol
from planet_predictors.serving import model as serving
from planet_predictors.serving.batcher import Stop
from planet_predictors.serving.metrics import Metrics
from planet_predictors.serving.model import ServeSettings as ServeSettings

TIMING_KEYS = ("queue", "encode_prompt", "denoise", "decode", "encode_image", "total")
#: Seeds of the redraws: the request's seed plus a multiple of this (an odd constant, so the
#: redraws of nearby seeds never collide), within the seeds a request may name.
_REDRAW_STRIDE = 0x9E3779B97F4A7C15


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of a request's ``attempt``-th redraw (a client that asks for it gets the same image)."""
    return (seed + attempt * _REDRAW_STRIDE) % (inputs.MAX_SEED + 1)


@dataclasses.dataclass(frozen=True)
class Drawn:
    """The image a request gets: the seed that made it, how many draws it took, its verdict if scored."""

    generated: Generated
    seed: int
    draws: int = 1
    verdict: Verdict | None = None
    scored: bool = False


class SDXLModel(serving.BatchedModel[inputs.GenerateRequest, Drawn]):
    """Text-to-image SDXL predictor; ``ready`` only after a warm-up generation."""

    kind = "sdxl"
    final = False

    def __init__(
        self, name: str, *, config: PipelineConfig, backend: Backend, serve: ServeSettings, metrics: Metrics
    ) -> None:
        super().__init__(name, config=config, serve=serve, metrics=metrics, backend_name=backend.name)
        self.backend = backend
        self.limits = inputs.Limits.from_spec(config.spec, max_instances=serve.max_instances)

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> inputs.ParsedBatch:
        """Decode V1/V2 into typed requests; bad input is a 400 naming the field."""
        try:
            return inputs.parse(payload, self.limits)
        except RecursionError:
            raise errors.BadRequest("body", "nested too deeply") from None

    def _warm_up(self) -> None:
        self.backend.load()
        if self.serve.warmup:
            spec = self.config.spec.generation
            params = BatchParams(width=spec.width, height=spec.height, steps=1, guidance=spec.guidance_scale)
            self.backend.generate(params, [Item(prompt="warm-up", negative_prompt="", seed=0)])

    def _run_batch(self, batch: Sequence[inputs.GenerateRequest], stop: Stop) -> list[Drawn]:
        """Every request of a batch has the same key (size, steps, guidance) and lane."""
        first = batch[0]
        params = BatchParams(
            width=first.width, height=first.height, steps=first.steps, guidance=first.guidance
        )
        items = [Item(prompt=r.prompt, negative_prompt=r.negative_prompt, seed=r.seed) for r in batch]
        drawn = [
            Drawn(g, r.seed)
            for g, r in zip(self.backend.generate(params, items, stop=stop), batch, strict=True)
        ]
        rule = self.config.spec.generation.regenerate
        if self.verifier is None or rule.attempts == 0 or first.lane not in rule.lanes:
            return drawn
        return self._redraw(params, batch, drawn, stop)

    def _redraw(
        self, params: BatchParams, batch: Sequence[inputs.GenerateRequest], drawn: list[Drawn], stop: Stop
    ) -> list[Drawn]:
        """``generation.regenerate``: draw the images scored under the floor again, keep each best try.

        The redraws of one batch run as one smaller batch per attempt, on the same device slot: a
        final render that fails its check costs another render, never a second slot.
        """
        rule = self.config.spec.generation.regenerate

        def short(verdict: Verdict | None) -> bool:
            if verdict is None:  # the verifier could not measure it: nothing to judge a redraw by
                return False
            if rule.checks:
                return bool(set(rule.checks) & set(verdict.failed))
            return verdict.score < rule.min_score

        best = [self._judged(d, r) for d, r in zip(drawn, batch, strict=True)]
        for attempt in range(1, rule.attempts + 1):
            under = [i for i, d in enumerate(best) if short(d.verdict)]
            if not under:
                break
            seeds = [redraw_seed(batch[i].seed, attempt) for i in under]
            items = [
                Item(prompt=batch[i].prompt, negative_prompt=batch[i].negative_prompt, seed=seed)
                for i, seed in zip(under, seeds, strict=True)
            ]
            again = self.backend.generate(params, items, stop=stop)
            self.metrics.count_redraws(batch[0].lane, len(under))
            for i, seed, generated in zip(under, seeds, again, strict=True):
                tried = self._judged(Drawn(generated, seed, attempt + 1), batch[i])
                kept = best[i]
                # A try that passes where the kept one fell short wins; otherwise the higher score.
                better = (
                    tried.verdict is not None
                    and kept.verdict is not None
                    and (not short(tried.verdict), tried.verdict.score)
                    > (not short(kept.verdict), kept.verdict.score)
                )
                best[i] = tried if better else dataclasses.replace(kept, draws=attempt + 1)
        return best

    def _judged(self, drawn: Drawn, request: inputs.GenerateRequest) -> Drawn:
        verdict = quality.judge(self.verifier, drawn.generated.image, request.prompt)
        return dataclasses.replace(drawn, verdict=verdict, scored=True)

    def _finish(
        self, request: inputs.GenerateRequest, drawn: Drawn, queue_seconds: float, started: float
    ) -> dict[str, Any]:
        """Score one image (unless its redraws did), encode it with provenance, build its V1 prediction."""
        generated = drawn.generated
        if drawn.scored:
            verdict = self.record(drawn.verdict, request.lane)
        else:
            verdict = self.score(generated.image, request.prompt, request.lane)
        # The answer names the seed that made the image: asking for it again gives the same picture.
        request = dataclasses.replace(request, seed=drawn.seed)
        encode_started = time.perf_counter()
        data = imaging.encode(generated.image, request.format, provenance=self.provenance(request, verdict))
        timings = dict.fromkeys(TIMING_KEYS, 0.0) | generated.timings
        timings["queue"] = queue_seconds
        timings["encode_image"] = time.perf_counter() - encode_started
        timings["total"] = time.perf_counter() - started
        for stage in ("encode_prompt", "denoise", "decode", "encode_image"):
            self.metrics.observe(request.lane, stage, timings[stage])
        self.metrics.count_images(request.lane)
        size = (generated.image.width, generated.image.height)
        return protocol.prediction(
            request,
            data=data,
            size=size,
            revision=self.config.revision,
            timings=timings,
            keys=TIMING_KEYS,
            quality=None if verdict is None else _with_draws(verdict.as_dict(), drawn.draws),
        )

    def provenance(self, request: inputs.GenerateRequest, verdict: Verdict | None = None) -> dict[str, str]:
        """The ``planetgen:*`` keys written into every image (``planetgen:quality`` when scored)."""
        keys = {
            **serving.provenance(self.config, seed=request.seed, prompt=request.prompt),
            "planetgen:steps": str(request.steps),
        }
        if verdict is not None:
            keys["planetgen:quality"] = f"{verdict.score:.3f}"
        return keys


def _with_draws(quality: dict[str, Any], draws: int) -> dict[str, Any]:
    """``quality`` with ``draws`` when the image took more than one (``generation.regenerate``)."""
    return quality | {"draws": draws} if draws > 1 else quality

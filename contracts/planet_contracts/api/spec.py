"""``PlanetPipeline.spec``: what an ML engineer writes.

Field names are camelCase on the wire (``maxReplicas``) and snake_case in Python (``max_replicas``).
Defaults here become defaults in the CRD; ``__rules__`` become its CEL rules.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import pydantic

from planet_contracts.api import rules
from planet_contracts.api.rules import Rule, RuledModel

#: Kubernetes-style durations: "500ms", "30s", "5m", "1h30m".
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, pydantic.Field(pattern=DURATION_PATTERN, max_length=32)]
#: A resource quantity as Kubernetes takes it: 1, "500m", "32Gi".
Quantity = Annotated[
    int | Annotated[str, pydantic.Field(max_length=64)],
    pydantic.Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]
#: A Kubernetes label value (apimachinery's IsValidLabelValue): the operator copies some fields into
#: labels and nodeSelectors, where anything else makes the API server refuse the child object.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_VALUE_MAX_LENGTH = 63

MODEL_URI_PATTERN = r"^(hf|s3|gs|pvc|https?|file)://.+|^/.+"
# Bounds on free text. Every string and list of the spec is bounded, because the spec is copied twice
# into the per-revision ConfigMap (1 MiB at most) and priced by the API server's CEL cost estimate;
# docs/api.md lists them. Each is far above what a real value needs (a hub or bucket URI is ~100).
MAX_URI_LENGTH = 1024
MAX_REVISION_LENGTH = 256
MAX_IMAGE_LENGTH = 512
#: All values of a structured prompt together (the reference prompt has 4 attributes of a few values
#: each): 256 × 120 characters is about 30 KiB of the config, 64 KiB with every character escaped.
MAX_PROMPT_VALUES = 256
#: SDXL's latent space is 1/8 of the image; 64 px to 4096 px keeps UNet shapes sane.
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_OUTPUT_SIZE = 8192

Backend = Literal["tensorrt", "torch", "onnxruntime"]
Precision = Literal["fp32", "fp16", "bf16", "int8", "fp8"]
#: Precisions each backend can build or run; a CEL rule and its Python twin both read this table.
PRECISIONS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("fp32", "fp16", "int8", "fp8"),
    "torch": ("fp32", "fp16", "bf16"),
    "onnxruntime": ("fp32", "fp16"),
}


class ModelSource(RuledModel):
    """Where weights come from."""

    uri: str = pydantic.Field(
        pattern=MODEL_URI_PATTERN,
        max_length=MAX_URI_LENGTH,
        description="hf://org/name, s3://, gs://, pvc://claim/path, https:// or a local path.",
    )
    revision: str | None = pydantic.Field(
        default=None,
        max_length=MAX_REVISION_LENGTH,
        description="Hub revision or object version; pins what the revision hash sees.",
    )


class LoraAdapter(RuledModel):
    """A LoRA applied to the base model."""

    name: str = pydantic.Field(pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$", max_length=63)
    uri: str = pydantic.Field(pattern=MODEL_URI_PATTERN, max_length=MAX_URI_LENGTH)
    scale: float = pydantic.Field(default=1.0, ge=0.0, le=2.0)
    fuse: bool = pydantic.Field(default=True, description="Fuse into the weights before serving/compiling.")


class ModelSpec(RuledModel):
    """Base model and adapters."""

    base: ModelSource
    loras: list[LoraAdapter] = pydantic.Field(default_factory=list, max_length=8)

    __rules__ = (
        Rule(
            cel="self.loras.all(a, self.loras.exists_one(b, b.name == a.name))",
            message="LoRA names must be unique",
            field=".loras",
            check=lambda m: len({a.name for a in m.loras}) == len(m.loras),
        ),
    )


#: Most values a ``contrast`` attribute may list: its unpicked ones must fit SDXL's 77-token prompt.
MAX_CONTRAST_VALUES = 8


class PromptAttribute(RuledModel):
    """One slot of the structured prompt, e.g. ``color`` with its allowed values."""

    name: str = pydantic.Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    values: list[Annotated[str, pydantic.Field(min_length=1, max_length=120)]] = pydantic.Field(
        min_length=1, max_length=256
    )
    #: Bounded like ``values``: the API server prices each CEL rule by the longest input it can get.
    default: str | None = pydantic.Field(default=None, max_length=120)
    required: bool = True
    contrast: bool = pydantic.Field(
        default=False,
        description=(
            "Steer away from this attribute's other values: a structured request's negative prompt "
            "gets them, so guidance pushes from the values not asked for (counts, such as moons). "
            f"At most {MAX_CONTRAST_VALUES} values: the text encoders read 77 tokens."
        ),
    )

    __rules__ = (
        Rule(
            cel="!has(self.default) || self.default in self.values",
            message="default must be one of values",
            field=".default",
            check=lambda m: m.default is None or m.default in m.values,
        ),
        Rule(
            cel=f"!has(self.contrast) || !self.contrast || size(self.values) <= {MAX_CONTRAST_VALUES}",
            message=f"contrast needs at most {MAX_CONTRAST_VALUES} values (the rest would be cut off)",
            field=".contrast",
            check=lambda m: not m.contrast or len(m.values) <= MAX_CONTRAST_VALUES,
        ),
    )


class PromptSpec(RuledModel):
    """A structured prompt: ordered attributes rendered through a template."""

    template: str = pydantic.Field(
        min_length=1,
        max_length=1000,
        description='Python format string over attribute names, e.g. "{color} planet with {atmosphere}".',
    )
    attributes: list[PromptAttribute] = pydantic.Field(min_length=1, max_length=32)
    max_free_text_length: int = pydantic.Field(default=500, ge=1, le=4000)

    __rules__ = (
        Rule(
            cel="self.attributes.all(a, self.attributes.exists_one(b, b.name == a.name))",
            message="attribute names must be unique",
            field=".attributes",
            check=lambda m: len({a.name for a in m.attributes}) == len(m.attributes),
        ),
        Rule(
            # One attribute may list up to 256 values, but not every attribute: the config stays bounded.
            cel=f"self.attributes.map(a, a.values.size()).sum() <= {MAX_PROMPT_VALUES}",
            message=f"attributes may list at most {MAX_PROMPT_VALUES} values together",
            field=".attributes",
            check=lambda m: sum(len(a.values) for a in m.attributes) <= MAX_PROMPT_VALUES,
        ),
        Rule(
            cel="self.attributes.all(a, self.template.contains('{' + a.name + '}'))",
            message="template must use every attribute as {name}",
            field=".template",
            check=lambda m: all("{" + a.name + "}" in m.template for a in m.attributes),
        ),
    )


def _multiple_of_8(value: int) -> bool:
    return value % 8 == 0


class CompositionSpec(RuledModel):
    """Where the planet must sit in the frame, for the verifier's composition check.

    The defaults are the reference workload's (the predictors' ``Region``): small margins on every
    side, a planet between 40 % and 85 % of the frame's height.
    """

    left: float = pydantic.Field(
        default=0.08, ge=0.0, le=1.0, description="Left edge of the region, a fraction of the width."
    )
    right: float = pydantic.Field(
        default=0.92, ge=0.0, le=1.0, description="Right edge of the region, a fraction of the width."
    )
    top: float = pydantic.Field(
        default=0.06, ge=0.0, le=1.0, description="Top edge of the region, a fraction of the height."
    )
    bottom: float = pydantic.Field(
        default=0.94, ge=0.0, le=1.0, description="Bottom edge of the region, a fraction of the height."
    )
    min_diameter: float = pydantic.Field(
        default=0.40, ge=0.0, le=1.0, description="Smallest planet diameter, a fraction of the height."
    )
    max_diameter: float = pydantic.Field(
        default=0.85, ge=0.0, le=1.0, description="Largest planet diameter, a fraction of the height."
    )

    __rules__ = (
        Rule(
            cel="self.left < self.right",
            message="left must be < right",
            field=".left",
            check=lambda m: m.left < m.right,
        ),
        Rule(
            cel="self.top < self.bottom",
            message="top must be < bottom",
            field=".top",
            check=lambda m: m.top < m.bottom,
        ),
        Rule(
            cel="self.minDiameter <= self.maxDiameter",
            message="minDiameter must be <= maxDiameter",
            field=".minDiameter",
            check=lambda m: m.min_diameter <= m.max_diameter,
        ),
    )


class RegenerateSpec(RuledModel):
    """Draw again with new seeds when the verifier finds an image short (final renders only).

    Short: scored under ``minScore``, or, with ``checks``, failing one of them. The first try that is
    not short is served, else the best-scoring, with the seed that made it; drafts never wait for it.
    """

    attempts: int = pydantic.Field(
        default=0, ge=0, le=8, description="Extra tries per image found short (0: never redraw)."
    )
    min_score: float = pydantic.Field(
        default=0.7, ge=0.0, le=1.0, description="An image the verifier scores under this is drawn again."
    )
    lanes: list[Annotated[str, pydantic.Field(max_length=63)]] = pydantic.Field(
        default_factory=lambda: ["final"],
        max_length=8,
        description="Lanes whose images are redrawn (serving.lanes names).",
    )
    checks: list[Literal["planet", "composition", "color", "moons", "sharpness"]] = pydantic.Field(
        default_factory=list,
        max_length=5,
        description="Redraw only when one of these verifier checks fails (empty: whenever the score is"
        " under minScore). Sharpness is not judged on renders an upscale chain goes on to sharpen.",
    )


class GenerationSpec(RuledModel):
    """Generation defaults and the limits requests may ask for."""

    width: int = pydantic.Field(default=1536, ge=MIN_SIZE, le=MAX_SIZE)
    height: int = pydantic.Field(default=640, ge=MIN_SIZE, le=MAX_SIZE)
    steps: int = pydantic.Field(default=30, ge=1, le=200)
    max_steps: int = pydantic.Field(default=50, ge=1, le=200, description="Most steps a request may ask for.")
    guidance_scale: float = pydantic.Field(default=7.0, ge=0.0, le=30.0)
    scheduler: Literal["euler", "euler-ancestral", "dpmpp-2m", "ddim", "unipc", "lcm"] = "euler"
    negative_prompt: str = pydantic.Field(default="", max_length=2000)
    prompt: PromptSpec | None = None
    composition: CompositionSpec = pydantic.Field(default_factory=CompositionSpec)
    verify: bool = pydantic.Field(
        default=True,
        description="Score each image with the verifier: the planet_quality_score histogram and each"
        " prediction's quality.",
    )
    regenerate: RegenerateSpec = pydantic.Field(default_factory=RegenerateSpec)

    __rules__ = (
        Rule(
            cel="self.width % 8 == 0 && self.height % 8 == 0",
            message="width and height must be multiples of 8",
            field=".width",
            check=lambda m: _multiple_of_8(m.width) and _multiple_of_8(m.height),
        ),
        Rule(
            cel="self.steps <= self.maxSteps",
            message="steps must be <= maxSteps",
            field=".steps",
            check=lambda m: m.steps <= m.max_steps,
        ),
        Rule(
            cel="self.verify || self.regenerate.attempts == 0",
            message="regenerate needs verify: true (the verifier's score decides what is redrawn)",
            field=".regenerate.attempts",
            check=lambda m: m.verify or m.regenerate.attempts == 0,
        ),
    )


class UpscaleStage(RuledModel):
    """One stage of the upscale chain; which fields apply depends on ``type``."""

    type: Literal["upscale", "resize", "img2img"]
    model: ModelSource | None = pydantic.Field(default=None, description="upscale: ESRGAN-family checkpoint.")
    factor: int | None = pydantic.Field(default=None, ge=1, le=8, description="upscale: scale factor.")
    width: int | None = pydantic.Field(default=None, ge=MIN_SIZE, le=MAX_OUTPUT_SIZE)
    height: int | None = pydantic.Field(default=None, ge=MIN_SIZE, le=MAX_OUTPUT_SIZE)
    filter: Literal["lanczos", "bicubic", "bilinear", "nearest"] | None = None
    strength: float | None = pydantic.Field(
        default=None, gt=0.0, le=1.0, description="img2img: denoise strength."
    )
    steps: int | None = pydantic.Field(default=None, ge=1, le=200, description="img2img: denoising steps.")

    __rules__ = (
        Rule(
            cel="self.type != 'upscale' || has(self.factor)",
            message="an upscale stage needs factor",
            field=".factor",
            check=lambda m: m.type != "upscale" or m.factor is not None,
        ),
        Rule(
            cel="self.type != 'resize' || (has(self.width) && has(self.height))",
            message="a resize stage needs width and height",
            field=".width",
            check=lambda m: m.type != "resize" or (m.width is not None and m.height is not None),
        ),
        Rule(
            cel="self.type != 'img2img' || has(self.strength)",
            message="an img2img stage needs strength",
            field=".strength",
            check=lambda m: m.type != "img2img" or m.strength is not None,
        ),
        Rule(
            cel="self.type == 'upscale' || (!has(self.factor) && !has(self.model))",
            message="factor and model apply to upscale stages only",
            field=".type",
            check=lambda m: m.type == "upscale" or (m.factor is None and m.model is None),
        ),
    )


class UpscaleSpec(RuledModel):
    """The chain after generation, e.g. x2 ▶ resize ▶ img2img ▶ x2 ▶ resize."""

    stages: list[UpscaleStage] = pydantic.Field(min_length=1, max_length=16)
    tile_size: int = pydantic.Field(default=512, ge=64, le=2048, description="Tile edge in pixels.")
    tile_overlap: int = pydantic.Field(default=32, ge=0, le=256)
    model: ModelSource | None = pydantic.Field(
        default=None, description="Default upscaler checkpoint for upscale stages that name none."
    )

    __rules__ = (
        Rule(
            cel="self.tileOverlap * 2 < self.tileSize",
            message="tileOverlap must be less than half of tileSize",
            field=".tileOverlap",
            check=lambda m: m.tile_overlap * 2 < m.tile_size,
        ),
    )


class EngineSpec(RuledModel):
    """How the model is compiled and run."""

    backend: Backend = "tensorrt"
    precision: Precision = "fp16"
    batch_sizes: list[Annotated[int, pydantic.Field(ge=1, le=64)]] = pydantic.Field(
        default_factory=lambda: [1, 2, 4], min_length=1, max_length=8
    )
    gpu_product: str | None = pydantic.Field(
        default=None,
        max_length=LABEL_VALUE_MAX_LENGTH,
        pattern=LABEL_VALUE_PATTERN,
        description="nvidia.com/gpu.product the engines target, e.g. NVIDIA-H100-80GB-HBM3; a label value,"
        " as the build Job's nodeSelector uses it.",
    )
    tensorrt_version: str = pydantic.Field(default="10.13", pattern=r"^[0-9]+(\.[0-9]+){0,3}$", max_length=32)
    cache_claim: str = pydantic.Field(
        default="planetgen-engines",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=253,
        description="PersistentVolumeClaim holding the content-addressed engine cache.",
    )

    __rules__ = (
        Rule(
            cel=" || ".join(
                f"(self.backend == '{backend}' && self.precision in {list(allowed)})"
                for backend, allowed in PRECISIONS.items()
            ),
            message="precision must be valid for the backend ("
            + "; ".join(f"{backend}: {', '.join(allowed)}" for backend, allowed in PRECISIONS.items())
            + ")",
            field=".precision",
            check=lambda m: m.precision in PRECISIONS[m.backend],
        ),
        Rule(
            cel="self.batchSizes.all(b, self.batchSizes.exists_one(c, c == b))",
            message="batchSizes must be unique",
            field=".batchSizes",
            check=lambda m: len(set(m.batch_sizes)) == len(m.batch_sizes),
        ),
    )


class Lane(RuledModel):
    """A request class with its own step count and concurrency cap."""

    steps: int = pydantic.Field(ge=1, le=200)
    max_concurrency: int = pydantic.Field(
        default=1, ge=1, le=64, description="Batches in flight per replica."
    )
    max_queue: int = pydantic.Field(default=64, ge=0, le=10000, description="Queued requests before 429.")
    priority: int = pydantic.Field(default=0, ge=0, le=100, description="Higher is served first.")


def _default_lanes() -> dict[str, Lane]:
    return {
        "final": Lane(steps=30, max_concurrency=1, max_queue=64, priority=10),
        "draft": Lane(steps=8, max_concurrency=1, max_queue=32, priority=0),
    }


class Images(RuledModel):
    """Container images for the children."""

    predictor: str = pydantic.Field(default="ghcr.io/planetgen/predictor:0.1.0", max_length=MAX_IMAGE_LENGTH)
    upscaler: str = pydantic.Field(default="ghcr.io/planetgen/predictor:0.1.0", max_length=MAX_IMAGE_LENGTH)
    builder: str = pydantic.Field(default="ghcr.io/planetgen/builder:0.1.0", max_length=MAX_IMAGE_LENGTH)
    storage_initializer: str = pydantic.Field(
        default="kserve/storage-initializer:v0.20.0",
        max_length=MAX_IMAGE_LENGTH,
        description="Fetches the build Job's weights (hf://, s3://, gs://, pvc://) as KServe fetches the"
        " predictors'; use the image your KServe's inferenceservice-config names.",
    )


def _default_requests() -> dict[str, int | str]:
    return {"cpu": "4", "memory": "32Gi"}


def _default_limits() -> dict[str, int | str]:
    return {"memory": "48Gi", "nvidia.com/gpu": 1}


class Resources(RuledModel):
    """Kubernetes resource requests and limits for a predictor container."""

    requests: dict[str, Quantity] = pydantic.Field(default_factory=_default_requests, max_length=16)
    limits: dict[str, Quantity] = pydantic.Field(default_factory=_default_limits, max_length=16)

    __rules__ = (
        Rule(
            # Bounds the keys as the schema cannot, as long as Kubernetes' qualified names
            # (nvidia.com/gpu): a 253-character prefix, '/', a 63-character name.
            cel="self.requests.all(k, k.size() <= 317) && self.limits.all(k, k.size() <= 317)",
            message="resource names must be at most 317 characters",
            field=".requests",
            check=lambda m: all(len(k) <= 317 for k in (*m.requests, *m.limits)),
        ),
    )


class ServingSpec(RuledModel):
    """How predictors serve: mode, lanes, batching, backpressure."""

    deployment_mode: Literal["knative", "standard"] = "standard"
    lanes: dict[str, Lane] = pydantic.Field(default_factory=_default_lanes, min_length=1, max_length=8)
    default_lane: str = pydantic.Field(default="final", max_length=63)
    max_batch_size: int = pydantic.Field(default=4, ge=1, le=64)
    max_batch_wait_ms: int = pydantic.Field(default=50, ge=0, le=10000)
    timeout_seconds: int = pydantic.Field(default=600, ge=1, le=3600, description="Per request, end to end.")
    max_body_bytes: int = pydantic.Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    resources: Resources = pydantic.Field(default_factory=Resources)
    images: Images = pydantic.Field(default_factory=Images)

    __rules__ = (
        Rule(
            cel="self.defaultLane in self.lanes",
            message="defaultLane must name one of lanes",
            field=".defaultLane",
            check=lambda m: m.default_lane in m.lanes,
        ),
        Rule(
            # A CRD schema cannot bound map keys, and the spec's worst-case size needs them bounded.
            cel="self.lanes.all(l, l.size() <= 63)",
            message="lane names must be at most 63 characters",
            field=".lanes",
            check=lambda m: all(len(name) <= 63 for name in m.lanes),
        ),
    )


class AutoscalingSpec(RuledModel):
    """Replica bounds and the queue-depth target."""

    min_replicas: int = pydantic.Field(default=1, ge=0, le=1000)
    max_replicas: int = pydantic.Field(default=4, ge=1, le=1000)
    target_queue_depth: int = pydantic.Field(
        default=4, ge=1, le=1000, description="Queued requests per replica."
    )
    scale_to_zero: bool = False
    scale_up_stabilization_seconds: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=3600,
        description="Standard mode: the HPA raises replicas only to the lowest recommendation of this"
        " window (KServe's cluster-wide autoscaler entry when unset, 0 s by default).",
    )
    scale_down_stabilization_seconds: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=3600,
        description="Standard mode: the HPA lowers replicas only to the highest recommendation of this"
        " window, the cooldown after a burst (KServe's cluster-wide autoscaler entry when unset, 300 s"
        " by default).",
    )
    prometheus_address: str = pydantic.Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://.+",
        max_length=MAX_URI_LENGTH,
    )

    __rules__ = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must be <= maxReplicas",
            field=".minReplicas",
            check=lambda m: m.min_replicas <= m.max_replicas,
        ),
        Rule(
            cel="self.scaleToZero || self.minReplicas >= 1",
            message="minReplicas 0 needs scaleToZero: true",
            field=".minReplicas",
            check=lambda m: m.scale_to_zero or m.min_replicas >= 1,
        ),
    )


class Pause(RuledModel):
    """A pause after a step: timed, or until promoted when ``duration`` is absent."""

    duration: Duration | None = None


class RolloutStep(RuledModel):
    """Send ``weight`` percent of traffic to the canary, then pause and analyse."""

    weight: int = pydantic.Field(gt=0, le=100)
    pause: Pause | None = None


class AnalysisSpec(RuledModel):
    """Prometheus checks run every interval while a canary takes traffic."""

    interval: Duration = "1m"
    max_error_rate: float = pydantic.Field(default=0.01, ge=0.0, le=1.0)
    max_p95_latency_seconds: float = pydantic.Field(default=30.0, gt=0.0)
    max_queue_seconds: float = pydantic.Field(default=30.0, gt=0.0)
    min_quality_score: float | None = pydantic.Field(
        default=None, description="Optional planet_quality_score floor."
    )
    failure_limit: int = pydantic.Field(default=2, ge=0, le=100, description="Failed checks tolerated.")
    inconclusive_limit: int = pydantic.Field(
        default=5, ge=0, le=1000, description="Checks with no data before the rollout fails."
    )
    prometheus_address: str | None = pydantic.Field(
        default=None,
        pattern=r"^https?://.+",
        max_length=MAX_URI_LENGTH,
        description="Defaults to autoscaling.prometheusAddress.",
    )


class RolloutSpec(RuledModel):
    """Canary steps and analysis."""

    steps: list[RolloutStep] = pydantic.Field(
        default_factory=lambda: [
            RolloutStep(weight=10, pause=Pause(duration="5m")),
            RolloutStep(weight=50, pause=Pause(duration="10m")),
        ],
        max_length=20,
    )
    analysis: AnalysisSpec = pydantic.Field(default_factory=AnalysisSpec)

    __rules__ = (
        Rule(
            cel="self.steps.map(s, s.weight).isSorted()"
            " && self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight))",
            message="steps must be strictly increasing in weight",
            field=".steps",
            check=lambda m: all(a.weight < b.weight for a, b in itertools.pairwise(m.steps)),
        ),
    )


class RollbackSpec(RuledModel):
    """What happens when a canary fails, and how much history is kept."""

    automatic: bool = True
    revisions_kept: int = pydantic.Field(default=10, ge=1, le=100)


class PlanetPipelineSpec(RuledModel):
    """The desired state of a pipeline."""

    version: str | None = pydantic.Field(
        default=None, max_length=63, description="Human label for this revision, shown in history."
    )
    model: ModelSpec
    generation: GenerationSpec = pydantic.Field(default_factory=GenerationSpec)
    upscale: UpscaleSpec | None = None
    engine: EngineSpec = pydantic.Field(default_factory=EngineSpec)
    serving: ServingSpec = pydantic.Field(default_factory=ServingSpec)
    autoscaling: AutoscalingSpec = pydantic.Field(default_factory=AutoscalingSpec)
    rollout: RolloutSpec = pydantic.Field(default_factory=RolloutSpec)
    rollback: RollbackSpec = pydantic.Field(default_factory=RollbackSpec)

    __rules__ = (
        Rule(
            cel="self.serving.lanes.all(l, self.serving.lanes[l].steps <= self.generation.maxSteps)",
            message="every lane's steps must be <= generation.maxSteps",
            field=".serving.lanes",
            check=lambda m: all(lane.steps <= m.generation.max_steps for lane in m.serving.lanes.values()),
        ),
        Rule(
            cel="self.generation.regenerate.attempts == 0"
            " || self.generation.regenerate.lanes.all(l, l in self.serving.lanes)",
            message="generation.regenerate.lanes must name lanes of serving.lanes",
            field=".generation.regenerate.lanes",
            check=lambda m: (
                m.generation.regenerate.attempts == 0
                or all(lane in m.serving.lanes for lane in m.generation.regenerate.lanes)
            ),
        ),
        Rule(
            cel="!self.autoscaling.scaleToZero || self.serving.deploymentMode == 'knative'",
            message="scaleToZero needs serving.deploymentMode: knative: in Standard mode nothing wakes a"
            " predictor at zero replicas (KServe has no activator there to hold the first request, and the"
            " queue-depth metric comes from the predictor pods); use Knative mode, or minReplicas >= 1",
            field=".autoscaling.scaleToZero",
            check=lambda m: not m.autoscaling.scale_to_zero or m.serving.deployment_mode == "knative",
        ),
        Rule(
            cel="self.serving.deploymentMode == 'standard'"
            " || (!has(self.autoscaling.scaleUpStabilizationSeconds)"
            " && !has(self.autoscaling.scaleDownStabilizationSeconds))",
            message="stabilization windows apply to the HPA of serving.deploymentMode: standard; Knative's"
            " autoscaler keeps its own windows (its config-autoscaler)",
            field=".autoscaling",
            check=lambda m: (
                m.serving.deployment_mode == "standard"
                or (
                    m.autoscaling.scale_up_stabilization_seconds is None
                    and m.autoscaling.scale_down_stabilization_seconds is None
                )
            ),
        ),
        Rule(
            cel="!has(self.upscale) || self.upscale.stages.all(s, s.type != 'upscale'"
            " || has(s.model) || has(self.upscale.model))",
            message="each upscale stage needs a model, or upscale.model must be set",
            field=".upscale.model",
            check=lambda m: (
                m.upscale is None
                or all(s.type != "upscale" or s.model or m.upscale.model for s in m.upscale.stages)
            ),
        ),
    )


def violations(spec: PlanetPipelineSpec) -> list[rules.RuleViolation]:
    """Every cross-field rule ``spec`` breaks, with ``spec.``-rooted paths."""
    return list(rules.check(spec, "spec"))

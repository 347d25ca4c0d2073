"""KServe InferenceServices for the generate and upscale components, in Knative or Standard mode.

Canary traffic uses KServe's own split: ``predictor.canaryTrafficPercent`` in Knative mode (the
newest revision gets the percent, ``latestRolledoutRevision`` the rest) and ``spec.canary[]`` in
Standard mode (KServe 0.20+, Gateway API weights). Queue-depth autoscaling uses KServe's KEDA
integration in Standard mode and KPA concurrency in Knative mode.
"""

from __future__ import annotations

from typing import Any

from planet_operator.api import spec as api
from planet_operator.builders import config, meta, names
from planet_operator.builders.plan import Plan, Release, effective_spec
from planet_operator.builders.revision import engine_key_of, needs_engine_build, upscaler_uris

HTTP_PORT = 8080
MODEL_DIR = "/mnt/models"
ENGINE_DIR = "/mnt/engines"
DEPLOYMENT_MODE = {"knative": "Knative", "standard": "Standard"}
MODULES = {names.GENERATE: "planet_predictors.sdxl", names.UPSCALE: "planet_predictors.upscaler"}


def inference_service(plan: Plan, component: str) -> dict[str, Any]:
    """The InferenceService for ``component`` (generate or upscale) under ``plan``."""
    name = f"{plan.pipeline}-{component}"
    mode = plan.deployment_mode
    newest = plan.canary or plan.stable
    annotations = {
        "serving.kserve.io/deploymentMode": DEPLOYMENT_MODE[mode],
        # Per-revision URLs (latest-/prev-) let the analysis and users reach the canary directly.
        "serving.kserve.io/enable-tag-routing": "true",
    }
    if mode == "standard":
        annotations["serving.kserve.io/autoscalerClass"] = "keda"
    spec: dict[str, Any]
    if mode == "knative":
        # Knative: the predictor is always the newest revision; the percent keeps the rest on the old one.
        predictor = _predictor(plan, newest, component, name=name)
        if plan.canary is not None:
            predictor["canaryTrafficPercent"] = plan.canary_percent
        spec = {"predictor": predictor}
    else:
        spec = {"predictor": _predictor(plan, plan.stable, component, name=name)}
        if plan.canary is not None:
            canary = _predictor(plan, plan.canary, component, name=name)
            canary["name"] = f"rev-{plan.canary.revision}"
            spec["canary"] = [{"predictor": canary, "trafficPercent": plan.canary_percent}]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta.object_meta(
            plan, name=name, release=newest, component=component, annotations=annotations
        ),
        "spec": spec,
    }


def _predictor(plan: Plan, release: Release, component: str, *, name: str) -> dict[str, Any]:
    spec = effective_spec(plan.live, release)
    scaling = spec.autoscaling
    predictor: dict[str, Any] = {
        "minReplicas": 0 if scaling.scale_to_zero else scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "timeout": spec.serving.timeout_seconds,
        "labels": names.labels(plan.pipeline, release.revision, component),
        "containers": [_container(plan, release, spec, component, name=name)],
        "volumes": _volumes(plan, release, spec),
    }
    uris = [{"uri": spec.model.base.uri, "mountPath": MODEL_DIR}]
    uris += [{"uri": lora.uri, "mountPath": f"/mnt/loras/{lora.name}"} for lora in spec.model.loras]
    if component == names.UPSCALE:
        uris = (uris if _needs_sdxl(spec) else []) + [
            {"uri": uri, "mountPath": names.upscaler_dir(uri)} for uri in upscaler_uris(spec)
        ]
    if uris:
        predictor["storageUris"] = uris
    if plan.deployment_mode == "knative":
        # KPA: a replica takes as many requests as its lanes can run at once; more wait in Knative's queue.
        concurrency = (
            sum(lane.max_concurrency for lane in spec.serving.lanes.values()) * spec.serving.max_batch_size
        )
        predictor["scaleMetric"] = "concurrency"
        predictor["scaleTarget"] = scaling.target_queue_depth
        predictor["containerConcurrency"] = max(concurrency, scaling.target_queue_depth)
    else:
        predictor["autoScaling"] = {"metrics": [_queue_depth_metric(plan, scaling, component)]}
    return predictor


def _needs_sdxl(spec: api.PlanetPipelineSpec) -> bool:
    """The upscaler needs SDXL weights only for an img2img detail pass."""
    return spec.upscale is not None and any(stage.type == "img2img" for stage in spec.upscale.stages)


def _queue_depth_metric(plan: Plan, scaling: api.AutoscalingSpec, component: str) -> dict[str, Any]:
    selector = f'namespace="{plan.namespace}",pipeline="{plan.pipeline}",component="{component}"'
    # Queued plus in flight: a queue that is empty only because every replica is busy still needs
    # them all (bench/autoscaling_sim.py: queue-only scaling thrashed to 1 replica under steady load).
    query = (
        f"sum(planet_queue_depth{{{selector}}}) + (sum(planet_inflight_requests{{{selector}}}) or vector(0))"
    )
    return {
        "type": "External",
        "external": {
            "metric": {"backend": "prometheus", "serverAddress": scaling.prometheus_address, "query": query},
            # KServe's webhook wants `value` and copies it into KEDA's Prometheus trigger `threshold`;
            # KEDA then gives the HPA an AverageValue target (its default for external triggers), so
            # replicas = ceil(total / threshold): targetQueueDepth stays per replica.
            "target": {"type": "Value", "value": str(scaling.target_queue_depth)},
        },
    }


def _container(
    plan: Plan, release: Release, spec: api.PlanetPipelineSpec, component: str, *, name: str
) -> dict[str, Any]:
    images = spec.serving.images
    args = [
        f"--model_name={name}",
        f"--http_port={HTTP_PORT}",
        f"--pipeline-config={config.CONFIG_DIR}/{component}.json",
        f"--backend={spec.engine.backend}",
    ]
    if component == names.GENERATE or _needs_sdxl(spec):
        args.append(f"--model-dir={MODEL_DIR}")
    if component == names.UPSCALE:
        args.append(f"--upscaler-root={names.UPSCALER_ROOT}")
    if needs_engine_build(spec):
        args.append(f"--engine-dir={ENGINE_DIR}/{engine_key_of(spec)}")
    for lora in spec.model.loras:
        args.append(f"--lora=/mnt/loras/{lora.name}:{lora.scale}")
    mounts = [{"name": "pipeline-config", "mountPath": config.CONFIG_DIR, "readOnly": True}]
    if needs_engine_build(spec):
        mounts.append({"name": "engines", "mountPath": ENGINE_DIR, "readOnly": True})
    return {
        "name": "kserve-container",
        "image": images.predictor if component == names.GENERATE else images.upscaler,
        "command": ["python", "-m", MODULES[component]],
        "args": args,
        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "PLANET_PIPELINE", "value": plan.pipeline},
            {"name": "PLANET_REVISION", "value": release.revision},
            {"name": "PLANET_COMPONENT", "value": component},
        ],
        "resources": _resources(spec.serving.resources),
        "readinessProbe": {
            "httpGet": {"path": f"/v2/models/{name}/ready", "port": HTTP_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        # Engines load and warm up before ready; give big models time before liveness kills them.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": HTTP_PORT},
            "periodSeconds": 10,
            "failureThreshold": 60,
        },
        "volumeMounts": mounts,
        # KServe quotes the termination message as the model's load failure: with no message
        # written, the kubelet puts the end of the log there.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _resources(resources: api.Resources) -> dict[str, Any]:
    """Requests and limits, with a limit for every CPU/memory request.

    KServe's defaulter fills a missing limit from ``inferenceservice-config`` (1 CPU, 2Gi by default);
    under a larger request the Deployment is then invalid and the predictor never starts. A limit
    equal to the request keeps KServe's default out.
    """
    requests = dict(resources.requests)
    limits = dict(resources.limits)
    for name in ("cpu", "memory"):
        if name in requests and name not in limits:
            limits[name] = requests[name]
    return {"requests": requests, "limits": limits}


def _volumes(plan: Plan, release: Release, spec: api.PlanetPipelineSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {
            "name": "pipeline-config",
            "configMap": {"name": config.config_map(plan, release)["metadata"]["name"]},
        }
    ]
    if needs_engine_build(spec):
        volumes.append(
            {
                "name": "engines",
                "persistentVolumeClaim": {"claimName": spec.engine.cache_claim, "readOnly": True},
            }
        )
    return volumes

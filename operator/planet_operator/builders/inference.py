"""KServe InferenceServices for the generate and upscale components, in Knative or Standard mode.

Each revision has InferenceServices of its own: the primary (``<p>-generate``, the stable revision)
and, during a rollout, the canary (``<p>-generate-<rev>``). The InferenceGraph splits traffic
between them (builders.graph), so KServe's own canary fields (``canaryTrafficPercent``,
``spec.canary[]``) are not used: they split only an InferenceService's own URL, which the graph's
router bypasses, and Standard mode's ``spec.canary[]`` refuses storageUris predictors. Queue-depth
autoscaling uses KServe's KEDA integration in Standard mode and KPA concurrency in Knative mode,
each revision on its own queue.
"""

from __future__ import annotations

from typing import Any

from planet_contracts.api import spec as api
from planet_operator.builders import config, meta, names, storage
from planet_operator.builders.plan import Mode, Plan, Release, Service, effective_spec
from planet_operator.builders.revision import engine_key_of, needs_engine_build, upscaler_uris

HTTP_PORT = 8080
PORT_NAME = "http1"
MODEL_DIR = "/mnt/models"
ENGINE_DIR = "/mnt/engines"
DEPLOYMENT_MODE: dict[Mode, str] = {"knative": "Knative", "standard": "Standard"}
#: Where each child states its mode (KServe pins it in the object's status on first reconcile).
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
MODULES = {names.GENERATE: "planet_predictors.sdxl", names.UPSCALE: "planet_predictors.upscaler"}
#: Knative's queue-proxy serves the kserve-container's metrics merged with its own on this port.
AGGREGATE_METRICS_PORT = "9088"
#: Seconds the pod gets beyond the predictor's drain: its exit, and the endpoint removal racing SIGTERM.
DRAIN_MARGIN_SECONDS = 15


def inference_service(plan: Plan, service: Service) -> dict[str, Any]:
    """The InferenceService ``service`` (one component of one revision) under ``plan``."""
    mode = plan.deployment_mode
    annotations = {MODE_ANNOTATION: DEPLOYMENT_MODE[mode]}
    if mode == "standard":
        annotations["serving.kserve.io/autoscalerClass"] = "keda"
    predictor = _predictor(plan, service.release, service.component, name=service.name)
    predictor["annotations"] = _scrape_annotations(mode)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta.object_meta(
            plan,
            name=service.name,
            release=service.release,
            component=service.component,
            annotations=annotations,
        ),
        "spec": {"predictor": predictor},
    }


def _scrape_annotations(mode: str) -> dict[str, str]:
    """Pod annotations that let Prometheus find the predictor's metrics (KEDA and the analysis read them).

    KServe does not scrape predictors by default. In Knative mode its pod mutator, asked to, points
    ``prometheus.io/*`` at queue-proxy's aggregate port (queue-proxy's and the model's metrics). In
    Standard mode there is no queue-proxy and the mutator would still say port 9091, so scraping is
    turned off there and the annotations name the model server's own port.
    """
    if mode == "knative":
        return {
            "serving.kserve.io/enable-metric-aggregation": "true",
            "serving.kserve.io/enable-prometheus-scraping": "true",
        }
    return {
        "serving.kserve.io/enable-prometheus-scraping": "false",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
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
    base = spec.model.base
    uris = [{"uri": storage.download_uri(base.uri, base.revision), "mountPath": MODEL_DIR}]
    uris += [{"uri": lora.uri, "mountPath": _lora_mount(lora)} for lora in spec.model.loras]
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
        predictor["autoScaling"] = {"metrics": [_queue_depth_metric(plan, release, scaling, component)]}
        behavior = _behavior(scaling)
        if behavior:
            predictor["autoScaling"]["behavior"] = behavior
        # A replica scaled down finishes what it accepted (the predictor drains for --grace-period,
        # set to timeoutSeconds) before the kubelet's SIGKILL. Knative sets this from `timeout` itself.
        predictor["terminationGracePeriodSeconds"] = spec.serving.timeout_seconds + DRAIN_MARGIN_SECONDS
    return predictor


def _behavior(scaling: api.AutoscalingSpec) -> dict[str, Any]:
    """HPA stabilization windows; KServe 0.20 copies only these of ``behavior`` into the ScaledObject."""
    windows = {
        "scaleUp": scaling.scale_up_stabilization_seconds,
        "scaleDown": scaling.scale_down_stabilization_seconds,
    }
    return {k: {"stabilizationWindowSeconds": v} for k, v in windows.items() if v is not None}


def _lora_mount(lora: api.LoraAdapter) -> str:
    return f"/mnt/loras/{lora.name}"


def _needs_sdxl(spec: api.PlanetPipelineSpec) -> bool:
    """The upscaler needs SDXL weights only for an img2img detail pass."""
    return spec.upscale is not None and any(stage.type == "img2img" for stage in spec.upscale.stages)


def _queue_depth_metric(
    plan: Plan, release: Release, scaling: api.AutoscalingSpec, component: str
) -> dict[str, Any]:
    # Per revision: a canary's queue must not scale the primary, nor the primary's the canary.
    selector = (
        f'namespace="{plan.namespace}",pipeline="{plan.pipeline}",'
        f'revision="{release.revision}",component="{component}"'
    )
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
        # SIGTERM (a scale-down, a rollout): stop listening, answer what is queued or running.
        f"--grace-period={spec.serving.timeout_seconds}",
    ]
    if component == names.GENERATE or _needs_sdxl(spec):
        args.append(f"--model-dir={storage.mounted(spec.model.base.uri, MODEL_DIR)}")
    if component == names.UPSCALE:
        args.append(f"--upscaler-root={names.UPSCALER_ROOT}")
    if needs_engine_build(spec):
        args.append(f"--engine-dir={ENGINE_DIR}/{engine_key_of(spec)}")
    for lora in spec.model.loras:
        args.append(f"--lora={storage.mounted(lora.uri, _lora_mount(lora))}:{lora.scale}")
    mounts = [{"name": "pipeline-config", "mountPath": config.CONFIG_DIR, "readOnly": True}]
    if needs_engine_build(spec):
        mounts.append({"name": "engines", "mountPath": ENGINE_DIR, "readOnly": True})
    resources = _resources(spec.serving.resources)
    return {
        "name": "kserve-container",
        "image": images.predictor if component == names.GENERATE else images.upscaler,
        "command": ["python", "-m", MODULES[component]],
        "args": args,
        # Named for the chart's PodMonitor; "http1" is also the name Knative accepts for HTTP/1.
        "ports": [{"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "PLANET_PIPELINE", "value": plan.pipeline},
            {"name": "PLANET_REVISION", "value": release.revision},
            {"name": "PLANET_COMPONENT", "value": component},
            *_thread_env(resources),
        ],
        "resources": resources,
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


def _thread_env(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """``OMP_NUM_THREADS`` from the container's CPU limit (rounded up), which torch sizes its threads by.

    Without it torch starts one thread per core of the node, whatever the limit: replicas packed on
    one node then oversubscribe it (measured on two cores: p95 58 s under a burst for 0.33 s alone)
    and a CFS quota throttles each of them. With no CPU limit torch's own default stands.
    """
    if "cpu" not in resources["limits"]:
        return []
    limit = {"resource": "limits.cpu", "divisor": "1"}
    return [{"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": limit}}]


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

"""The engine-build Job: ``python -m planet_build`` into the content-addressed cache."""

from __future__ import annotations

from typing import Any

from planet_build import errors
from planet_operator.api import resource
from planet_operator.builders import meta, names
from planet_operator.builders.plan import Plan, Release
from planet_operator.builders.revision import engine_key_of, upscaler_uris

CACHE_DIR = "/cache"
CONTAINER = "build"
#: The kubelet copies the end of the log into the termination message when the builder wrote none,
#: so the pod's status (and the pipeline's condition) says why it failed.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"


def engine_job(plan: Plan, release: Release) -> dict[str, Any]:
    """A Job that builds (or finds) the engines for ``release`` under ``/cache/<key>``."""
    spec = release.spec
    key = engine_key_of(spec)
    args = [
        "--model",
        spec.model.base.uri,
        "--backend",
        spec.engine.backend,
        "--precision",
        spec.engine.precision,
        "--width",
        str(spec.generation.width),
        "--height",
        str(spec.generation.height),
        "--batch-sizes",
        ",".join(str(b) for b in spec.engine.batch_sizes),
        "--cache-dir",
        CACHE_DIR,
        "--expect-key",
        key,
    ]
    if spec.model.base.revision:
        args += ["--revision", spec.model.base.revision]
    for lora in spec.model.loras:
        if lora.fuse:
            args += ["--lora", f"{lora.uri}:{lora.scale}"]
    if spec.engine.gpu_product:
        args += ["--gpu-product", spec.engine.gpu_product]
    for uri in upscaler_uris(spec):
        args += ["--upscaler", uri]
    job_meta = meta.object_meta(plan, name=names.engine_job(key), release=release, component="engine-build")
    job_meta["labels"][resource.LABEL_ENGINE_KEY] = key[:63]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.serving.images.builder,
                "command": ["python", "-m", "planet_build"],
                "args": args,
                "resources": {"limits": {"nvidia.com/gpu": 1}} if spec.engine.backend == "tensorrt" else {},
                "volumeMounts": [{"name": "cache", "mountPath": CACHE_DIR}],
                "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
            }
        ],
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": spec.engine.cache_claim}}],
    }
    if spec.engine.backend == "tensorrt" and spec.engine.gpu_product:
        # TensorRT plans only run on the GPU they were built for: build on that product.
        pod["nodeSelector"] = {"nvidia.com/gpu.product": spec.engine.gpu_product}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": {
            "backoffLimit": 2,
            "podFailurePolicy": {
                "rules": [
                    # Preempted or evicted (node drained): not the build's fault, not an attempt.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # Bad input, or a build this node cannot run: a retry would answer the same.
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [errors.EXIT_USAGE],
                        },
                    },
                ]
            },
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": dict(job_meta["labels"])}, "spec": pod},
        },
    }

"""The engine-build Job: ``python -m planet_build`` into the content-addressed cache."""

from __future__ import annotations

from typing import Any

from planet_contracts import engines
from planet_contracts.api import resource
from planet_contracts.api import spec as api
from planet_operator.builders import names, storage
from planet_operator.builders.plan import Plan, Release
from planet_operator.builders.revision import engine_key_of, upscaler_uris

#: The cache PVC, at the path the predictors mount it (read-only) too.
CACHE_DIR = "/mnt/engines"
#: The weights, fetched by the storage initializer into an emptyDir (the builder never downloads).
FETCH_DIR = "/mnt/fetched"
CONTAINER = "build"
COMPONENT = "engine-build"
#: The kubelet copies the end of the log into the termination message when the builder wrote none,
#: so the pod's status (and the pipeline's condition) says why it failed.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"


#: Where a ``pvc://`` source's claim is mounted in the build pod (one folder per claim URI).
PVC_DIR = "/mnt/pvc"


def _remote_uris(spec: api.PlanetPipelineSpec) -> list[str]:
    """The base model, fused LoRAs and upscalers that live behind a scheme (not on the node)."""
    uris = [spec.model.base.uri, *(lora.uri for lora in spec.model.loras if lora.fuse)]
    uris += upscaler_uris(spec)
    return [uri for uri in dict.fromkeys(uris) if "://" in uri and not uri.startswith("file://")]


def _job_meta(plan: Plan, key: str) -> dict[str, Any]:
    """Metadata of a Job every pipeline with engine key ``key`` shares: nothing of one pipeline's.

    No pipeline or revision label (the first pipeline's would stay on it for good: a Job is never
    relabelled), and owners without ``controller``: each pipeline that needs the build adds itself,
    and the garbage collector deletes the Job only when the last of them is gone.
    """
    labels = {
        resource.LABEL_MANAGED_BY: resource.MANAGER,
        resource.LABEL_COMPONENT: COMPONENT,
        resource.LABEL_ENGINE_KEY: key[:63],
    }
    out: dict[str, Any] = {"name": names.engine_job(key), "namespace": plan.namespace, "labels": labels}
    if plan.owner:
        out["ownerReferences"] = [{k: v for k, v in plan.owner.items() if k != "controller"}]
    return out


def engine_job(plan: Plan, release: Release) -> dict[str, Any]:
    """A Job that builds (or finds) the engines for ``release`` under ``/mnt/engines/<key>``."""
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
    # Each remote URI is fetched into its own folder; the builder keys on the URI, reads the folder.
    # A pvc:// URI is mounted, as KServe does for predictors: the initializer image cannot fetch it.
    fetch: list[str] = []
    claims: list[tuple[str, str]] = []
    for index, uri in enumerate(_remote_uris(spec)):
        if uri.startswith(storage.PVC):
            mount = f"{PVC_DIR}/{index}"
            claims.append((storage.pvc_parts(uri)[0], mount))
            args += ["--fetched", f"{uri}={storage.mounted(uri, mount)}"]
            continue
        folder = f"{FETCH_DIR}/{index}"
        # The download pins the model's revision, as the engine key does.
        source = storage.download_uri(uri, spec.model.base.revision if uri == spec.model.base.uri else None)
        fetch += [source, folder]
        args += ["--fetched", f"{uri}={folder}"]
    job_meta = _job_meta(plan, key)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.serving.images.builder,
                "command": ["python", "-m", "planet_build"],
                "args": args,
                "resources": {"limits": {"nvidia.com/gpu": 1}} if spec.engine.backend == "tensorrt" else {},
                "volumeMounts": [
                    {"name": "cache", "mountPath": CACHE_DIR},
                    {"name": "fetched", "mountPath": FETCH_DIR, "readOnly": True},
                ],
                "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
            }
        ],
        "volumes": [
            {"name": "cache", "persistentVolumeClaim": {"claimName": spec.engine.cache_claim}},
            {"name": "fetched", "emptyDir": {}},
        ],
    }
    for index, (claim, mount) in enumerate(claims):
        pod["volumes"].append(
            {"name": f"pvc-{index}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        pod["containers"][0]["volumeMounts"].append(
            {"name": f"pvc-{index}", "mountPath": mount, "readOnly": True}
        )
    if fetch:
        # The same image and argument shape (SRC DEST pairs) as KServe's injected initializer.
        pod["initContainers"] = [
            {
                "name": "storage-initializer",
                "image": spec.serving.images.storage_initializer,
                "args": fetch,
                "volumeMounts": [{"name": "fetched", "mountPath": FETCH_DIR}],
                "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
            }
        ]
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
                            "values": [engines.EXIT_USAGE],
                        },
                    },
                ]
            },
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": dict(job_meta["labels"])}, "spec": pod},
        },
    }

"""Pipelines and prompts the autoscaling test and benchmark both drive (one definition, two users)."""

from __future__ import annotations

from typing import Any

#: One structured prompt: every request of a queueing workload asks for the same kind of image.
PROMPT = {"color": "deep blue", "atmosphere": "frosted cloudy zones", "moons": "no moons",
          "sky": "distant stars dark sky"}  # fmt: skip


def scaling_pipeline(
    name: str,
    *,
    namespace: str,
    size: tuple[int, int],
    steps: int,
    max_queue: int,
    replicas: tuple[int, int],
    target_queue_depth: int,
    scale_down_window: int | None = None,
) -> dict[str, Any]:
    """Generate only, torch (no engine build), one request at a time per replica, so a burst queues.

    ``scale_down_window`` sets the pipeline's own scale-down stabilization window (seconds).
    """
    autoscaling: dict[str, Any] = {
        "minReplicas": replicas[0],
        "maxReplicas": replicas[1],
        "targetQueueDepth": target_queue_depth,
    }
    if scale_down_window is not None:
        autoscaling["scaleDownStabilizationSeconds"] = scale_down_window
    return {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": "v1",
            "model": {"base": {"uri": "hf://stabilityai/stable-diffusion-xl-base-1.0"}},
            "generation": {"width": size[0], "height": size[1], "steps": steps, "maxSteps": steps * 2},
            "engine": {"backend": "torch", "precision": "fp32"},
            "serving": {
                "maxBatchSize": 1,
                "maxBatchWaitMs": 0,
                "lanes": {"final": {"steps": steps, "maxConcurrency": 1, "maxQueue": max_queue}},
                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
            },
            "autoscaling": autoscaling,
            "rollout": {"steps": []},
        },
    }

"""The InferenceGraph clients call: generate ▶ upscale as a KServe Sequence."""

from __future__ import annotations

from typing import Any

from planet_operator.builders import meta, names
from planet_operator.builders.plan import Plan


def inference_graph(plan: Plan) -> dict[str, Any]:
    """A Sequence router; with no upscale chain it still fronts generate, so the URL never changes."""
    steps: list[dict[str, Any]] = [
        {"name": names.GENERATE, "serviceName": names.generate_service(plan.pipeline)}
    ]
    if plan.live.upscale is not None:
        # $response hands the generate step's JSON (images + prompts) to the upscaler as its request.
        steps.append(
            {"name": names.UPSCALE, "serviceName": names.upscale_service(plan.pipeline), "data": "$response"}
        )
    timeout = plan.live.serving.timeout_seconds
    newest = plan.canary or plan.stable
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": meta.object_meta(plan, name=names.graph(plan.pipeline), release=newest),
        "spec": {
            "nodes": {"root": {"routerType": "Sequence", "steps": steps}},
            # The default 300 s cuts off SDXL + upscale at full size; timeouts are set explicitly.
            "timeout": timeout * len(steps),
            "routerTimeouts": {
                "serverRead": timeout * len(steps),
                "serverWrite": timeout * len(steps),
                "serverIdle": timeout * len(steps),
                "serviceClient": timeout,
            },
        },
    }

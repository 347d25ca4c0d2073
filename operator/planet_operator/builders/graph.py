"""The InferenceGraph clients call: generate ▶ upscale as a KServe Sequence."""

from __future__ import annotations

from typing import Any

from planet_operator.builders import meta, names
from planet_operator.builders.inference import DEPLOYMENT_MODE
from planet_operator.builders.plan import Plan


def inference_graph(plan: Plan) -> dict[str, Any]:
    """A Sequence router; with no upscale chain it still fronts generate, so the URL never changes."""
    # Hard: a failing step's answer (a 400 naming the bad field) goes back to the client; KServe's
    # default (Soft) hands the error body to the next step as if it were data.
    steps: list[dict[str, Any]] = [
        {"name": names.GENERATE, "serviceName": names.generate_service(plan.pipeline), "dependency": "Hard"}
    ]
    if plan.live.upscale is not None:
        # $response hands the generate step's JSON (images + prompts) to the upscaler as its request.
        steps.append(
            {
                "name": names.UPSCALE,
                "serviceName": names.upscale_service(plan.pipeline),
                "data": "$response",
                "dependency": "Hard",
            }
        )
    timeout = plan.live.serving.timeout_seconds
    newest = plan.canary or plan.stable
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        # The mode is stated, not left to the cluster's default (the InferenceServices state theirs).
        "metadata": meta.object_meta(
            plan,
            name=names.graph(plan.pipeline),
            release=newest,
            annotations={"serving.kserve.io/deploymentMode": DEPLOYMENT_MODE[plan.deployment_mode]},
        ),
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

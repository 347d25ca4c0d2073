"""The InferenceGraph clients call: generate ▶ upscale as a KServe Sequence, split during a rollout.

Without a canary the root is the primary's Sequence. During a rollout the root is a Splitter over
two Sequences, the primary's and the canary's, weighted by the rollout step (Flagger's
primary/canary inside KServe's own graph): the router picks one per request, so the canary's share
of graph traffic is the step's weight, and a rollback is a weight change.
"""

from __future__ import annotations

from typing import Any

from planet_operator.builders import meta, names
from planet_operator.builders.inference import DEPLOYMENT_MODE, MODE_ANNOTATION
from planet_operator.builders.plan import Plan, Service

PRIMARY_NODE = "primary"
CANARY_NODE = "canary"


def inference_graph(plan: Plan) -> dict[str, Any]:
    """The graph; its name and URL never change, whatever revisions serve behind it."""
    primary, canary = plan.primary(), plan.canaries()
    percent = plan.canary_percent if canary else 0
    nodes: dict[str, Any]
    if percent <= 0:
        nodes = {"root": _sequence(primary)}
    elif percent >= 100:
        # A promoted canary serves alone while the primary rolls to its revision.
        nodes = {"root": _sequence(canary)}
    else:
        nodes = {
            "root": {
                "routerType": "Splitter",
                "steps": [
                    {"name": PRIMARY_NODE, "nodeName": PRIMARY_NODE, "weight": 100 - percent},
                    {"name": CANARY_NODE, "nodeName": CANARY_NODE, "weight": percent},
                ],
            },
            PRIMARY_NODE: _sequence(primary),
            CANARY_NODE: _sequence(canary),
        }
    timeout = plan.live.serving.timeout_seconds
    # Standard mode: each step may take the full per-request timeout. Knative mode: the graph's
    # timeout becomes its Knative Service's timeoutSeconds, which Knative refuses above the cluster's
    # max-revision-timeout-seconds (600 by default), so there the whole chain gets timeoutSeconds.
    stages = max(len(primary), len(canary)) if plan.deployment_mode == "standard" else 1
    newest = plan.canary or plan.stable
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        # The mode is stated, not left to the cluster's default (the InferenceServices state theirs).
        "metadata": meta.object_meta(
            plan,
            name=names.graph(plan.pipeline),
            release=newest,
            annotations={MODE_ANNOTATION: DEPLOYMENT_MODE[plan.deployment_mode]},
        ),
        "spec": {
            "nodes": nodes,
            # The default 300 s cuts off SDXL + upscale at full size; timeouts are set explicitly.
            "timeout": timeout * stages,
            "routerTimeouts": {
                "serverRead": timeout * stages,
                "serverWrite": timeout * stages,
                "serverIdle": timeout * stages,
                "serviceClient": timeout,
            },
        },
    }


def _sequence(services: list[Service]) -> dict[str, Any]:
    """One revision's Sequence: generate ▶ upscale.

    Hard: a failing step's answer (a 400 naming the bad field, a 429) goes back to the client;
    KServe's default (Soft) hands the error body to the next step as if it were data.
    """
    steps: list[dict[str, Any]] = []
    for service in services:
        step: dict[str, Any] = {"name": service.component, "serviceName": service.name, "dependency": "Hard"}
        if steps:
            # $response hands the generate step's JSON (images + prompts) to the upscaler as its request.
            step["data"] = "$response"
        steps.append(step)
    return {"routerType": "Sequence", "steps": steps}

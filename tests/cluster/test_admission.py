"""Every render of every example is admitted by the real API server and KServe's real webhooks.

A canary render (a second revision beside the stable one, the graph split between them) is admitted
in both modes: planetgen's canaries are InferenceServices of their own, not KServe's spec.canary[].
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES
from tests.operator.test_render import MODES, plans

from planet_contracts.api import validation
from planet_harness.controlplane import ControlPlane
from planet_operator.builders import children
from planet_operator.kube import quantity


def cases() -> list[Any]:
    out = []
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            own = document.get("spec", {}).get("serving", {}).get("deploymentMode", "standard")
            for mode in MODES:
                for which in ("alone", "canary"):
                    suffix = "-own" if mode == own else ""
                    out.append(pytest.param(document, mode, which, id=f"{path.stem}-{mode}{suffix}-{which}"))
    return out


@pytest.mark.parametrize(("document", "mode", "which"), cases())
def test_children_are_admitted(
    cluster: ControlPlane, namespace: str, document: dict[str, Any], mode: str, which: str
) -> None:
    pipeline = validation.parse(document)
    alone, canary = plans(pipeline, mode)
    deployed = dataclasses.replace(alone if which == "alone" else canary, namespace=namespace)
    refused: list[str] = []
    services = 0
    for obj in children.build_all(deployed):
        result = cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=False
        )
        if result.returncode != 0:
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {result.stderr.strip()}")
            continue
        if obj["kind"] == "InferenceService":
            services += 1
            # KServe's defaulter ran on what its controller will reconcile: the mode is the one asked for.
            served = json.loads(result.stdout)
            annotation = served["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
            assert annotation.lower() == mode, annotation
            # KServe's defaults must not leave a request above its limit: the Deployment would be refused.
            for container in served["spec"]["predictor"]["containers"]:
                resources = container.get("resources", {})
                for name, request in resources.get("requests", {}).items():
                    limit = resources.get("limits", {}).get(name)
                    assert limit is None or quantity.parse(request) <= quantity.parse(limit), (
                        f"{obj['metadata']['name']}: {name} request {request} > limit {limit}"
                    )
    assert not refused, "\n".join(refused)
    assert services >= 1

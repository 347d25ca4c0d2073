"""The quality gate on the real stack: a canary whose LoRA pushes planets past the composition
region is rolled back by ``minQualityScore``; one with the good LoRA is promoted.

Real here: the control plane, KServe, the operator as its chart's pod, Prometheus scraping the
predictor pods (``planet_quality_score``, the verifier's score of every image) and the operator's
analysis querying it through the stack's gateway. The model is the trained ``planet`` preset with its
two shipped LoRAs (``ethereal``, ``offcentre``), served by the torch backend (no engine build).
Intervals are shortened (scrape 2 s, analysis every 20 s over a 60 s window) and said so.

The floor: these native 10-step renders have no upscale chain after them, so the verifier judges
their sharpness too, and the preset's soft limbs fail it on nearly every image (docs/model.md): a good
revision's images score about 0.4 (one failed check), the offcentre LoRA's about 0.17 (composition
fails as well). Measured in process on 15 seeds of these prompts: 0.385 without a LoRA, 0.396 with
``ethereal``, 0.168 with ``offcentre``; the floor sits between.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from tests.e2e import stack
from tests.e2e.stack import kubectl, kubectl_json, running

from planet_harness import devstack, models
from planet_harness import stack as harness
from planet_harness.traffic import Traffic, rolled_back_on_quality

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NS = "default"
NAME = "e2e-gate"
FLOOR = 0.27
MANIFEST: dict[str, Any] = {
    "apiVersion": "planetgen.io/v1alpha1",
    "kind": "PlanetPipeline",
    "metadata": {"name": NAME, "namespace": NS},
    "spec": {
        "version": "v1",
        "model": {"base": {"uri": models.PLANET}},
        "generation": {
            "width": 384,
            "height": 160,
            "steps": 10,
            "guidanceScale": 4.0,
            "scheduler": "dpmpp-2m",
        },
        "engine": {"backend": "torch", "precision": "fp32"},
        "serving": {
            "maxBatchSize": 2,
            "maxBatchWaitMs": 20,
            "lanes": {"final": {"steps": 10, "maxConcurrency": 1, "maxQueue": 32}},
            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}},
        },
        "rollout": {
            "steps": [{"weight": 50, "pause": {"duration": "90s"}}],
            "analysis": {"interval": "20s", "minQualityScore": FLOOR, "maxErrorRate": 0.2, "failureLimit": 1},
        },
    },
}
#: What the stable revision draws well: no moons asked (moons are the preset's weak point, docs/model.md),
#: so the mean score moves with what the bad LoRA breaks (composition), not with the model's misses.
PROMPTS = [
    {"color": c, "atmosphere": "swirling storm bands", "moons": "no moons", "sky": "distant stars dark sky"}
    for c in ("crimson", "teal", "violet", "deep blue", "emerald")
]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.DevStack]:
    autoscaling = harness.Autoscaling(scrape_seconds=2.0, hpa_sync_seconds=5.0)
    with running(tmp_path_factory.mktemp("gate"), autoscaling=autoscaling) as dev:
        yield dev


def status(dev: devstack.DevStack) -> dict[str, Any]:
    return dict((kubectl_json(dev, "get", "pp", NAME, "-n", NS) or {}).get("status") or {})


def until(dev: devstack.DevStack, what: str, check: Callable[[], Any], timeout: float = 600.0) -> Any:
    return stack.until(dev, what, check, timeout, context=lambda: status(dev))


def traffic(dev: devstack.DevStack, url: str) -> Traffic:
    """Two clients sending :data:`PROMPTS` through ``url``."""
    return Traffic(
        lambda body: stack.post(dev, url, body, timeout=120),
        lambda seed: {"instances": [{"prompt": PROMPTS[seed % len(PROMPTS)], "seed": seed}]},
    )


def _apply(dev: devstack.DevStack, version: str, lora: str | None) -> None:
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["spec"]["version"] = version
    if lora is not None:
        manifest["spec"]["model"]["loras"] = [{"name": "look", "uri": lora, "scale": 1.0}]
    kubectl(dev, "apply", "-f", "-", input=yaml.safe_dump(manifest))


def test_a_bad_canary_is_rolled_back_and_a_good_one_promoted(dev: devstack.DevStack) -> None:
    _apply(dev, "v1", None)
    first = until(dev, "v1 Ready", lambda: (s := status(dev)).get("phase") == "Ready" and s.get("url") and s)
    stable, url = first["stableRevision"], first["url"]
    until(dev, "the pipeline's URL answers",
          lambda: stack.answer(dev, url, {"instances": [{"prompt": PROMPTS[0], "seed": 0}]}))  # fmt: skip
    with traffic(dev, url) as sent:
        _apply(dev, "v2", models.PLANET_BAD_LORA)
        bad = until(dev, "the bad canary", lambda: status(dev).get("canaryRevision"))
        ended = until(
            dev,
            "the bad canary rolled back",
            lambda: next(
                (
                    h
                    for h in status(dev).get("history", [])
                    if h["revision"] == bad and h["result"] != "Progressing"
                ),
                None,
            ),
            timeout=900,
        )
        # Measured and under the floor: not "quality_score no data" (Prometheus out of reach).
        assert rolled_back_on_quality(ended), ended
        assert status(dev)["stableRevision"] == stable
        bad_scores = list(sent.scores.get(bad, []))
    assert bad_scores and Traffic.mean(bad_scores) < FLOOR, sent.scores
    assert Traffic.mean(sent.scores[stable]) >= FLOOR, sent.scores
    assert not [code for code in sent.errors if code >= 500], sent.errors

    with traffic(dev, url) as sent:
        _apply(dev, "v3", models.PLANET_LORA)
        good = until(dev, "the good canary", lambda: (c := status(dev).get("canaryRevision")) != bad and c)
        until(
            dev,
            "the good canary promoted",
            lambda: status(dev).get("stableRevision") == good and status(dev).get("phase") == "Ready",
            timeout=900,
        )
        assert Traffic.mean(sent.scores.get(good, [])) >= FLOOR, sent.scores
    history = {h["revision"]: h["result"] for h in status(dev)["history"]}
    assert history[bad] == "RolledBack" and history[good] == "Promoted", history
    kubectl(dev, "delete", "pp", NAME, "-n", NS, "--wait=false")

"""`planet render` and the builders behind it: children that KServe and Kubernetes accept."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import EXAMPLES, KSERVE_SCHEMAS, SHARED_KSERVE_SCHEMAS

from planet_contracts.api import validation
from planet_contracts.api.resource import LABEL_PIPELINE, LABEL_REVISION
from planet_operator.builders import children, plan, revision
from planet_operator.cli import main as cli
from planet_operator.schemas import strict

MODES = ("knative", "standard")


def pipelines() -> list[tuple[str, Any]]:
    out = []
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            out.append((path.name, validation.parse(document)))
    return out


def plans(pipeline: Any, mode: str) -> list[plan.Plan]:
    """One revision alone, and the same with a canary of a changed checkpoint at 10%."""
    spec = pipeline.spec
    rev = revision.revision_of(spec)
    changed = spec.model_copy(
        update={"version": "next", "model": spec.model.model_copy(update={"loras": []})}
    )
    changed = changed.model_copy(update={"generation": spec.generation.model_copy(update={"steps": 25})})
    owner = {
        "apiVersion": "planetgen.io/v1alpha1",
        "kind": "PlanetPipeline",
        "name": "x",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    alone = plan.single(pipeline.metadata.name, "team-a", spec, rev, mode=mode, owner=owner)
    canary = plan.Plan(
        pipeline=pipeline.metadata.name,
        namespace="team-a",
        live=changed,
        mode=mode,
        owner=owner,
        stable=plan.Release(revision=rev, spec=spec),
        canary=plan.Release(revision=revision.revision_of(changed), spec=changed),
        canary_percent=10,
    )
    return [alone, canary]


CASES = [(name, p, mode) for name, p in pipelines() for mode in MODES]


@pytest.mark.parametrize(("name", "pipeline", "mode"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_kserve_children_validate_strictly(kserve_schemas: Path, name: str, pipeline: Any, mode: str) -> None:
    index = strict.load_crds(kserve_schemas)
    kinds = set()
    for deployed in plans(pipeline, mode):
        for obj in children.build_all(deployed):
            if obj["apiVersion"].startswith("serving.kserve.io/"):
                assert index.validate(obj) == [], (obj["kind"], obj["metadata"]["name"])
                kinds.add(obj["kind"])
    assert {"InferenceService", "InferenceGraph"} <= kinds


@pytest.mark.parametrize(("name", "pipeline", "mode"), CASES[:4], ids=[f"{c[0]}-{c[2]}" for c in CASES[:4]])
def test_builtin_children_validate_strictly(name: str, pipeline: Any, mode: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for deployed in plans(pipeline, mode):
        for obj in children.build_all(deployed):
            if not obj["apiVersion"].startswith("serving.kserve.io/"):
                kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_children_carry_labels_and_owner() -> None:
    _, pipeline = pipelines()[0]
    for deployed in plans(pipeline, "standard"):
        # Build Jobs are shared by pipelines with the same engine key: they carry that key only.
        for obj in (o for o in children.build_all(deployed) if o["kind"] != "Job"):
            labels = obj["metadata"]["labels"]
            assert labels[LABEL_PIPELINE] == pipeline.metadata.name
            canary = deployed.canary is not None and obj["metadata"]["name"].endswith(
                deployed.canary.revision
            )
            # Each InferenceService is one revision's; the graph and Job carry the newest revision.
            if obj["kind"] == "InferenceService":
                expected = (
                    deployed.canary.revision if canary and deployed.canary else deployed.stable.revision
                )
                assert labels[LABEL_REVISION] == expected
            assert obj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
            assert obj["metadata"]["namespace"] == "team-a"


def isvc(objs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "InferenceService" and o["metadata"]["name"].endswith(suffix))


def kserve_fields(obj: Any) -> set[str]:
    """Every key anywhere in ``obj``."""
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in kserve_fields(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in kserve_fields(v)}
    return set()


@pytest.mark.parametrize("mode", MODES)
def test_a_canary_is_its_own_inference_services_beside_the_primary(mode: str) -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    _, rolling = plans(pipeline, mode)
    assert rolling.canary is not None
    rev = rolling.canary.revision
    names = [o["metadata"]["name"] for o in children.build_all(rolling) if o["kind"] == "InferenceService"]
    assert names == [
        "ethereal-planets-generate",
        "ethereal-planets-upscale",
        f"ethereal-planets-generate-{rev}",
        f"ethereal-planets-upscale-{rev}",
    ]
    objs = children.build_all(rolling)
    primary, canary = isvc(objs, "-generate"), isvc(objs, f"-generate-{rev}")
    assert primary["spec"]["predictor"]["labels"][LABEL_REVISION] == rolling.stable.revision
    assert canary["spec"]["predictor"]["labels"][LABEL_REVISION] == rev
    # The model is named after its InferenceService: the graph's router calls /v1/models/<isvc>.
    assert (
        f"--model_name=ethereal-planets-generate-{rev}"
        in canary["spec"]["predictor"]["containers"][0]["args"]
    )
    # KServe's own canary fields split only an InferenceService's URL, which the graph bypasses.
    for obj in (o for o in objs if o["kind"] == "InferenceService"):
        assert not {"canaryTrafficPercent", "canary"} & kserve_fields(obj.get("spec")), obj["metadata"][
            "name"
        ]
        assert "serving.kserve.io/enable-tag-routing" not in obj["metadata"].get("annotations", {})
    assert canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode.capitalize()


def test_standard_mode_scales_each_revision_on_its_own_queue_with_keda() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    _, rolling = plans(pipeline, "standard")
    assert rolling.canary is not None
    objs = children.build_all(rolling)
    for name, rev in (
        ("-generate", rolling.stable.revision),
        (f"-generate-{rolling.canary.revision}", rolling.canary.revision),
    ):
        service = isvc(objs, name)
        assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
        [metric] = service["spec"]["predictor"]["autoScaling"]["metrics"]
        query = metric["external"]["metric"]["query"]
        assert "planet_queue_depth" in query and f'revision="{rev}"' in query
        # KServe 0.20's webhook refuses an external metric without `target.value`.
        assert metric["external"]["target"] == {"type": "Value", "value": "4"}


def test_a_pipelines_stabilization_windows_reach_kserves_autoscaling_behavior() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    [alone, _] = plans(pipeline, "standard")
    [service] = [o for o in children.build_all(alone) if o["kind"] == "InferenceService"][:1]
    # Unset: KServe's cluster-wide `autoscaler` entry decides, so nothing is rendered.
    assert "behavior" not in service["spec"]["predictor"]["autoScaling"]
    scaling = pipeline.spec.autoscaling.model_copy(update={"scale_down_stabilization_seconds": 45})
    windowed = pipeline.model_copy(update={"spec": pipeline.spec.model_copy(update={"autoscaling": scaling})})
    [alone, _] = plans(windowed, "standard")
    [service] = [o for o in children.build_all(alone) if o["kind"] == "InferenceService"][:1]
    assert service["spec"]["predictor"]["autoScaling"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 45}
    }


@pytest.mark.parametrize("mode", MODES)
def test_predictors_are_annotated_for_scraping(mode: str) -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    annotations = isvc(children.build_all(plans(pipeline, mode)[0]), "-generate")["spec"]["predictor"][
        "annotations"
    ]
    if mode == "knative":
        # KServe's pod mutator points prometheus.io/* at queue-proxy's aggregate port.
        assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
        assert annotations["serving.kserve.io/enable-metric-aggregation"] == "true"
    else:
        # No queue-proxy: the mutator's port (9091) would be wrong, so the model server's port is named.
        assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "false"
        assert annotations["prometheus.io/port"] == "8080"
        assert annotations["prometheus.io/path"] == "/metrics"


def test_graph_splits_between_primary_and_canary_by_the_step_weight() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    _, rolling = plans(pipeline, "standard")
    assert rolling.canary is not None
    rev = rolling.canary.revision
    nodes = next(o for o in children.build_all(rolling) if o["kind"] == "InferenceGraph")["spec"]["nodes"]
    assert nodes["root"]["routerType"] == "Splitter"
    assert [(s["nodeName"], s["weight"]) for s in nodes["root"]["steps"]] == [("primary", 90), ("canary", 10)]
    assert [s["serviceName"] for s in nodes["canary"]["steps"]] == [
        f"ethereal-planets-generate-{rev}",
        f"ethereal-planets-upscale-{rev}",
    ]
    assert [s["serviceName"] for s in nodes["primary"]["steps"]] == [
        "ethereal-planets-generate",
        "ethereal-planets-upscale",
    ]
    # Not yet ready (weight 0): the graph does not name the canary (KServe's graph controller
    # needs every named service's address); promoted (100): the canary serves alone.
    waiting = dataclasses.replace(rolling, canary_percent=0)
    graph = next(o for o in children.build_all(waiting) if o["kind"] == "InferenceGraph")
    assert set(graph["spec"]["nodes"]) == {"root"} and rev not in json.dumps(graph["spec"])
    handoff = dataclasses.replace(rolling, stable=rolling.canary, canary_percent=100)
    root = next(o for o in children.build_all(handoff) if o["kind"] == "InferenceGraph")["spec"]["nodes"][
        "root"
    ]
    assert root["routerType"] == "Sequence"
    assert [s["serviceName"] for s in root["steps"]] == [
        f"ethereal-planets-generate-{rev}",
        f"ethereal-planets-upscale-{rev}",
    ]
    assert [s.name for s in handoff.serving()] == [
        f"ethereal-planets-generate-{rev}",
        f"ethereal-planets-upscale-{rev}",
    ]


def test_graph_feeds_generate_into_upscale() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    graph = next(
        o for o in children.build_all(plans(pipeline, "standard")[0]) if o["kind"] == "InferenceGraph"
    )
    steps = graph["spec"]["nodes"]["root"]["steps"]
    assert [s["serviceName"] for s in steps] == ["ethereal-planets-generate", "ethereal-planets-upscale"]
    assert steps[1]["data"] == "$response"
    # A failing step's error goes back to the client, not to the next step as data (KServe's Soft).
    assert [s["dependency"] for s in steps] == ["Hard", "Hard"]
    assert graph["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert graph["spec"]["timeout"] > 300
    # Knative refuses a Knative Service timeout above max-revision-timeout-seconds (600 by default).
    knative = next(
        o for o in children.build_all(plans(pipeline, "knative")[0]) if o["kind"] == "InferenceGraph"
    )
    assert knative["spec"]["timeout"] == pipeline.spec.serving.timeout_seconds <= 600


@pytest.mark.parametrize("mode", ["standard", "knative"])
def test_predictors_drain_for_the_request_timeout_before_they_are_killed(mode: str) -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    objs = children.build_all(plans(pipeline, mode)[0])
    timeout = pipeline.spec.serving.timeout_seconds
    for suffix in ("generate", "upscale"):
        predictor = isvc(objs, suffix)["spec"]["predictor"]
        assert f"--grace-period={timeout}" in predictor["containers"][0]["args"]
        if mode == "standard":
            assert predictor["terminationGracePeriodSeconds"] > timeout
        else:  # Knative derives it from `timeout` and refuses it in the pod spec
            assert "terminationGracePeriodSeconds" not in predictor
            assert predictor["timeout"] == timeout


def _thread_env(pipeline: Any) -> list[dict[str, Any]]:
    objs = children.build_all(plans(pipeline, "standard")[0])
    env = isvc(objs, "-generate")["spec"]["predictor"]["containers"][0]["env"]
    return [e for e in env if e["name"] == "OMP_NUM_THREADS"]


def test_predictors_size_torch_threads_from_the_cpu_limit() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    # The downward API resolves it to the limit (the request, when none is set) in whole threads.
    ref = {"resource": "limits.cpu", "divisor": "1"}
    assert _thread_env(pipeline) == [{"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": ref}}]
    serving = pipeline.spec.serving
    no_cpu = serving.resources.model_copy(update={"requests": {"memory": "1Gi"}, "limits": {}})
    gpu_only = serving.model_copy(update={"resources": no_cpu})
    unbounded = pipeline.model_copy(update={"spec": pipeline.spec.model_copy(update={"serving": gpu_only})})
    # No CPU limit: no number to size by, torch's own default stands.
    assert _thread_env(unbounded) == []


def test_build_job_fetches_remote_weights_with_the_storage_initializer() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    job = next(o for o in children.build_all(plans(pipeline, "standard")[0]) if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"].startswith("kserve/storage-initializer:")
    # KServe's argument shape: SRC DEST pairs, one folder per URI (model, fused LoRA, upscaler).
    sources, folders = init["args"][::2], init["args"][1::2]
    base = "hf://stabilityai/stable-diffusion-xl-base-1.0"
    uris = [
        base,
        "s3://planetgen-models/loras/ethereal-planets-v3.safetensors",
        "s3://planetgen-models/upscalers/realesrgan-x2plus.pth",
    ]
    # The download pins the revision the engine key names (KServe's hf://owner/model:revision).
    assert sources == [f"{base}:{pipeline.spec.model.base.revision}", *uris[1:]]
    args = pod["containers"][0]["args"]
    fetched = [args[i + 1] for i, a in enumerate(args) if a == "--fetched"]
    assert fetched == [f"{uri}={folder}" for uri, folder in zip(uris, folders, strict=True)]
    # The builder still names the model by its URI: that is what the engine key is made of.
    assert args[args.index("--model") + 1] == base
    assert args[args.index("--cache-dir") + 1] == "/mnt/engines"


def test_predictor_reads_its_revision_config() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "ethereal-planets.yaml")
    objs = children.build_all(plans(pipeline, "standard")[0])
    config = next(o for o in objs if o["kind"] == "ConfigMap")
    generate = isvc(objs, "-generate")["spec"]["predictor"]
    container = generate["containers"][0]
    assert container["name"] == "kserve-container"
    assert "--pipeline-config=/etc/planetgen/generate.json" in container["args"]
    assert generate["volumes"][0]["configMap"]["name"] == config["metadata"]["name"]
    document = json.loads(config["data"]["generate.json"])
    assert document["revision"] == revision.revision_of(pipeline.spec)
    assert validation.parse_spec(document["spec"]) == pipeline.spec


def test_revision_tracks_the_served_model_only() -> None:
    _, pipeline = pipelines()[0]
    spec = pipeline.spec
    rev = revision.revision_of(spec)
    scaled = spec.model_copy(update={"autoscaling": spec.autoscaling.model_copy(update={"max_replicas": 99})})
    assert revision.revision_of(scaled) == rev
    assert revision.engine_key_of(scaled) == revision.engine_key_of(spec)
    guided = spec.model_copy(
        update={"generation": spec.generation.model_copy(update={"guidance_scale": 3.0})}
    )
    assert revision.revision_of(guided) != rev
    assert revision.engine_key_of(guided) == revision.engine_key_of(spec), "guidance does not change engines"
    wider = spec.model_copy(update={"generation": spec.generation.model_copy(update={"width": 1024})})
    assert revision.engine_key_of(wider) != revision.engine_key_of(spec)


# --- the command line ---


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "planet_operator.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_render_prints_one_yaml_stream() -> None:
    result = run_cli("render", "-f", "examples/ethereal-planets.yaml", "--mode", "knative")
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    assert kinds == ["ConfigMap", "Job", "InferenceService", "InferenceService", "InferenceGraph"]


def test_render_invalid_manifest_exits_2_with_field_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: planetgen.io/v1alpha1\nkind: PlanetPipeline\nmetadata: {name: bad}\n"
        "spec:\n  model: {base: {uri: hf://a/b}}\n  autoscaling: {minReplicas: 9, maxReplicas: 2}\n"
        "  engine: {backend: torch, precision: int8}\n"
    )
    result = run_cli("render", "-f", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert 'The PlanetPipeline "bad" is invalid' in result.stderr
    assert (
        "spec.autoscaling.minReplicas: Invalid value: 9: minReplicas must be <= maxReplicas" in result.stderr
    )
    assert "spec.engine.precision" in result.stderr and "torch: fp32, fp16, bf16" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("a: [unclosed", "not valid YAML"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "expected kind PlanetPipeline"),
        ("", "no objects found"),
    ],
)
def test_render_bad_files_exit_2(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(content)
    result = run_cli("render", "-f", str(path))
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_render_reads_stdin_and_missing_file_is_clear() -> None:
    text = Path("examples/minimal.yaml").read_text()
    assert run_cli("render", "-f", "-", stdin=text).returncode == 0
    missing = run_cli("render", "-f", "nope.yaml")
    assert missing.returncode == 2 and "cannot read nope.yaml" in missing.stderr


def test_crds_command_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crds"]) == 0
    [crd] = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert crd["metadata"]["name"] == "planetpipelines.planetgen.io"


@pytest.mark.parametrize("kind", ["inferenceservices", "inferencegraphs"])
def test_vendored_kserve_crds_equal_the_shared_copy(kind: str) -> None:
    shared = SHARED_KSERVE_SCHEMAS / f"serving.kserve.io_{kind}.yaml"
    if not shared.exists():
        pytest.skip(f"no shared KServe schemas beside this checkout ({SHARED_KSERVE_SCHEMAS})")
    assert (KSERVE_SCHEMAS / shared.name).read_bytes() == shared.read_bytes(), (
        f"third_party/kserve/{shared.name} differs from {shared}: copy it again"
    )


def on_the_hub(spec: Any) -> Any:
    """``spec`` with its base model at ``hf://owner/sdxl``, pinned to revision ``abc123``."""
    base = spec.model.base.model_copy(update={"uri": "hf://owner/sdxl", "revision": "abc123"})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"base": base})})


def test_pvc_models_are_found_under_the_claim_root_and_hf_revisions_are_downloaded() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "standard-keda.yaml")
    spec = pipeline.spec
    assert spec.model.base.uri == "pvc://sdxl-weights/stable-diffusion-xl-base-1.0"
    generate = isvc(children.build_all(plans(pipeline, "standard")[0]), "-generate")["spec"]["predictor"]
    # KServe mounts a pvc:// storageUri's whole claim at mountPath: the model is at its path there.
    assert generate["storageUris"][0] == {"uri": spec.model.base.uri, "mountPath": "/mnt/models"}
    assert "--model-dir=/mnt/models/stable-diffusion-xl-base-1.0" in generate["containers"][0]["args"]

    pinned = on_the_hub(spec)
    deployed = plan.single("p", "team-a", pinned, revision.revision_of(pinned), mode="standard")
    uris = isvc(children.build_all(deployed), "-generate")["spec"]["predictor"]["storageUris"]
    # The revision the engine key names is the one KServe's initializer downloads.
    assert uris[0]["uri"] == "hf://owner/sdxl:abc123"


def test_build_job_mounts_pvc_sources_and_downloads_the_pinned_revision() -> None:
    _, pipeline = next(p for p in pipelines() if p[0] == "standard-keda.yaml")
    spec = pipeline.spec.model_copy(
        update={
            "engine": pipeline.spec.engine.model_copy(update={"backend": "onnxruntime", "precision": "fp32"})
        }
    )
    job = next(o for o in children.build_all(plan.single("p", "team-a", spec, "r1")) if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    # KServe's initializer image cannot fetch pvc://: the claim is mounted, read-only, instead.
    assert "initContainers" not in pod
    assert {"name": "pvc-0", "persistentVolumeClaim": {"claimName": "sdxl-weights", "readOnly": True}} in pod[
        "volumes"
    ]
    args = pod["containers"][0]["args"]
    assert f"{spec.model.base.uri}=/mnt/pvc/0/stable-diffusion-xl-base-1.0" in args

    hub = on_the_hub(spec)
    job = next(o for o in children.build_all(plan.single("p", "team-a", hub, "r2")) if o["kind"] == "Job")
    [init] = job["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][0] == "hf://owner/sdxl:abc123"
    assert "hf://owner/sdxl=/mnt/fetched/0" in job["spec"]["template"]["spec"]["containers"][0]["args"]

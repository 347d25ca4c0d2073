"""kubectl planet against the real API server (and with the real operator), in namespaces of its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.operator.cluster import GROUP, PLURAL, VERSION, Cluster, Operator, new_cluster, pipeline, wait_for

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane
from planet_harness.kserve_status import StatusWriter
from planet_operator.plugin import main as plugin


def run(capsys: pytest.CaptureFixture[str], kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    code = plugin.main([*args, "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    return code, out, err


def store_revision(api: Cluster, name: str, number: int, rev: str, version: str) -> None:
    """A ControllerRevision as the operator writes one (reconcile.history)."""
    client.AppsV1Api(api.api).create_namespaced_controller_revision(
        api.namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{name}-{rev}",
                "labels": {
                    "planetgen.io/pipeline": name,
                    "planetgen.io/revision": rev,
                    "app.kubernetes.io/managed-by": "planetgen",
                },
            },
            "data": {"spec": {"version": version}, "version": version},
            "revision": number,
        },
    )


@pytest.fixture(scope="module")
def readonly(
    control_plane: ControlPlane,
    operator_identity: harness.Identity,
    admin: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Cluster:
    """One namespace for the read-mostly tests (no operator runs there)."""
    return new_cluster(control_plane, operator_identity, admin, tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def canary(readonly: Cluster) -> Cluster:
    """A pipeline mid-rollout: status written through the status subresource, as the operator does."""
    api, ns = readonly, readonly.namespace
    body = pipeline("nebula", version="v2")
    body["spec"]["rollout"] = {"steps": [{"weight": 10, "pause": {"duration": "5m"}}, {"weight": 50}]}
    api.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    api.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, pipeline("quiet"))
    status = {
        "phase": "Progressing",
        "currentRevision": "bbbb2222",
        "stableRevision": "aaaa1111",
        "canaryRevision": "bbbb2222",
        "trafficPercent": 10,
        "url": f"http://nebula.{ns}.example.com",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "stable aaaa1111 serves"},
            {
                "type": "RolloutProgressing",
                "status": "True",
                "reason": "Analysing",
                "message": "step 1: 10% to bbbb2222",
            },
        ],
        "rollout": {
            "step": 0,
            "paused": False,
            "failedChecks": 1,
            "lastAnalysis": "2026-01-01T00:00:00Z",
            "message": "error_rate 0.02 > max 0.01",
        },
        "history": [
            {"revision": "aaaa1111", "version": "v1", "result": "Promoted", "reason": "all steps passed"},
            {"revision": "bbbb2222", "version": "v2", "result": "Progressing"},
        ],
    }
    api.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "nebula", {"status": status})
    store_revision(api, "nebula", 1, "aaaa1111", "v1")
    store_revision(api, "nebula", 2, "bbbb2222", "v2")
    return readonly


def annotations(api: Cluster, name: str) -> dict[str, str]:
    body = api.custom.get_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL, name)
    return dict(body["metadata"].get("annotations") or {})


def test_list_shows_the_printer_columns(canary: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = canary.kubeconfig
    code, out, _ = run(capsys, kubeconfig, "list")
    assert code == 0
    header, *lines = [line for line in out.splitlines() if line.strip() and set(line.strip()) != {"─"}]
    assert header.split() == ["NAME", "PHASE", "REVISION", "TRAFFIC", "READY", "AGE"]
    nebula = next(line for line in lines if line.startswith("nebula"))
    assert nebula.split()[:5] == ["nebula", "Progressing", "bbbb2222", "10%", "True"]
    assert any(line.startswith("quiet") for line in lines)

    code, out, _ = run(capsys, kubeconfig, "list", "-A", "-o", "json")
    listed = json.loads(out)
    assert listed["kind"] == "List"
    # Every namespace: other tests' pipelines share this API server; these two are among them.
    here = [i["metadata"]["name"] for i in listed["items"] if i["metadata"]["namespace"] == canary.namespace]
    assert here == ["nebula", "quiet"]

    code, out, _ = run(capsys, kubeconfig, "list", "-n", "elsewhere")
    assert code == 0 and "No PlanetPipelines found in namespace elsewhere" in out


def test_status_shows_conditions_rollout_and_releases(
    canary: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = canary.kubeconfig
    code, out, _ = run(capsys, kubeconfig, "status", "nebula")
    assert code == 0
    for text in (
        "Progressing",
        "aaaa1111",
        f"http://nebula.{canary.namespace}.example.com",
        "RolloutProgressing",
        "step 1: 10% to bbbb2222",
        "1/2",  # rollout step
        "error_rate 0.02 > max 0.01",  # the failed analysis
        "all steps passed",  # a release's reason
    ):
        assert text in out, text

    code, out, _ = run(capsys, kubeconfig, "status", "nebula", "-o", "yaml")
    assert yaml.safe_load(out)["status"]["canaryRevision"] == "bbbb2222"


def test_history_lists_controller_revisions(canary: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = canary.kubeconfig
    code, out, _ = run(capsys, kubeconfig, "history", "nebula", "-o", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["revision"], r["hash"], r["version"]) for r in rows] == [
        (1, "aaaa1111", "v1"),
        (2, "bbbb2222", "v2"),
    ]
    assert rows[0]["serving"] == "stable" and rows[1]["serving"] == "current,canary"
    assert rows[0]["result"] == "Promoted"
    code, out, _ = run(capsys, kubeconfig, "history", "nebula")
    assert "REVISION" in out and "HASH" in out and "bbbb2222" in out


def test_rollout_commands_set_the_operators_annotations(
    canary: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    api, kubeconfig = canary, canary.kubeconfig
    for command in ("pause", "resume", "promote", "abort"):
        code, out, _ = run(capsys, kubeconfig, command, "nebula")
        assert code == 0 and f"{command} requested" in out
        assert annotations(api, "nebula")[f"planetgen.io/{command}"] == "true"
    # Without a canary the annotation would linger and act on the next rollout: refused.
    code, out, err = run(capsys, kubeconfig, "promote", "quiet")
    assert code == 2 and out == ""
    assert err.strip() == "error: quiet has no rollout in progress (phase unknown)"
    assert "planetgen.io/promote" not in annotations(api, "quiet")


def test_rollback_targets_a_stored_revision(canary: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    api, kubeconfig = canary, canary.kubeconfig
    code, out, _ = run(capsys, kubeconfig, "rollback", "nebula")
    assert code == 0 and "revision 1 (aaaa1111)" in out
    assert annotations(api, "nebula")["planetgen.io/rollback-to"] == "aaaa1111"
    code, _, _ = run(capsys, kubeconfig, "rollback", "nebula", "--to-revision", "2")
    assert code == 0 and annotations(api, "nebula")["planetgen.io/rollback-to"] == "bbbb2222"
    code, _, err = run(capsys, kubeconfig, "rollback", "nebula", "--to-revision", "7")
    assert code == 2 and err.strip() == "error: revision 7 not found (stored: 1, 2)"


def test_errors_are_one_line_and_exit_2(
    canary: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kubeconfig = canary.kubeconfig
    code, _, err = run(capsys, kubeconfig, "status", "missing")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not found" in err
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(kubeconfig.read_text().replace(_server(kubeconfig), "http://127.0.0.1:9"))
    code, _, err = run(capsys, dead, "list")
    assert code == 2 and err.startswith("error: cannot reach the API server") and err.count("\n") == 1
    code, _, err = run(capsys, tmp_path / "absent", "list")
    assert code == 2 and err.startswith("error: cannot load kubeconfig")


def _server(kubeconfig: Path) -> str:
    return str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])


def test_installed_executable_is_what_kubectl_runs(canary: Cluster) -> None:
    kubeconfig = canary.kubeconfig
    executable = Path(plugin.sys.executable).parent / "kubectl-planet"
    if not executable.exists():
        pytest.skip("kubectl-planet is not installed in this environment (reinstall the package)")
    done = subprocess.run(
        [str(executable), "list", "-o", "json"],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert {i["metadata"]["name"] for i in json.loads(done.stdout)["items"]} == {"nebula", "quiet"}


def test_rollback_is_carried_out_by_the_operator(
    cluster: Cluster, operator: Operator, capsys: pytest.CaptureFixture[str]
) -> None:
    api, kubeconfig, ns = cluster, cluster.kubeconfig, cluster.namespace
    api.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, pipeline("orbit", version="v1"))

    def pipeline_status() -> dict[str, Any]:
        body = api.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "orbit")
        return dict(body.get("status") or {})

    with StatusWriter(api.api, namespace=ns):
        first = wait_for(
            "first revision ready",
            lambda: pipeline_status().get("phase") == "Ready" and pipeline_status()["stableRevision"],
            log=operator,
        )
        api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "orbit", {"spec": {"version": "v2", "generation": {"steps": 20}}}
        )
        wait_for(
            "second revision stable",
            lambda: pipeline_status().get("stableRevision") not in (None, first),
            log=operator,
        )
        code, out, _ = run(capsys, kubeconfig, "history", "orbit", "-o", "json")
        assert code == 0 and [r["version"] for r in json.loads(out)] == ["v1", "v2"]

        code, out, err = run(capsys, kubeconfig, "rollback", "orbit")
        assert code == 0, err

        def restored() -> Any:
            body = api.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "orbit")
            done = (
                body["spec"].get("version") == "v1"
                and (body.get("status") or {}).get("stableRevision") == first
            )
            return done and "planetgen.io/rollback-to" not in (body["metadata"].get("annotations") or {})

        wait_for("spec restored by the operator", restored, timeout=60, log=operator)


def test_status_chain_goes_from_the_pipeline_down_to_the_failing_pod() -> None:
    from rich.console import Console

    from planet_operator.plugin import views

    says = "torch.OutOfMemoryError: CUDA out of memory"
    body = {
        "metadata": {"name": "crash", "namespace": "t"},
        "status": {
            "phase": "Degraded",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ModelLoadFailed",
                    "message": f"InferenceService crash-generate: {says}",
                },
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "ModelLoadFailed",
                    "message": f"InferenceService crash-generate: {says}",
                },
            ],
        },
    }
    service = {
        "metadata": {"name": "crash-generate", "generation": 1},
        "status": {
            "conditions": [
                {
                    "type": "PredictorReady",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                },
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                },
            ],
            "modelStatus": {
                "transitionStatus": "BlockedByFailedLoad",
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": says, "exitCode": 1},
            },
        },
    }
    crashing = {
        "metadata": {"name": "crash-generate-predictor-abc"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "kserve-container",
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": says}},
                }
            ],
        },
    }
    healthy = {"metadata": {"name": "crash-generate-predictor-def"}, "status": {"phase": "Running"}}
    children = [
        views.Child(kind="Job", name="planet-engine-1", error="jobs.batch is forbidden"),
        views.Child(kind="InferenceService", name="crash-generate", body=service, pods=[crashing, healthy]),
    ]
    console = Console(width=160, record=True)
    console.print(views.chain(body, children))
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0] == "PlanetPipeline t/crash Degraded"
    for expected in (
        f"Ready=False ModelLoadFailed: InferenceService crash-generate: {says}",
        "Job planet-engine-1  cannot read: jobs.batch is forbidden",
        "InferenceService crash-generate  Ready=False MinimumReplicasUnavailable",
        "PredictorReady=False MinimumReplicasUnavailable: Deployment does not have minimum availability.",
        f"model BlockedByFailedLoad ModelLoadFailed exit 1: {says}",
        "Pod crash-generate-predictor-abc Running",
        f"container kserve-container CrashLoopBackOff (5 restarts), last exit 1 (Error): {says}",
        "1 pod without problems",
    ):
        assert expected in text, f"{expected!r} not in\n{text}"
    assert "Degraded=True" not in text, "the same causes are said once"
    assert len(lines) <= 12

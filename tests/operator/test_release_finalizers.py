"""`planet release-finalizers` (the chart's pre-delete hook) on the real API server, with the hook's RBAC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from tests.chart import helm
from tests.operator.cluster import GROUP, PLURAL, VERSION, Cluster, Operator, pipeline, wait_for

from planet_harness.controlplane import kubeconfig
from planet_operator.cli import release_finalizers

PLANET = str(Path(sys.executable).with_name("planet"))
FINALIZER = "planetgen.io/finalizer"
#: Someone else's finalizer: released pipelines keep it.
OTHERS = "example.com/keep"


def _hook_identity(cluster: Cluster, folder: Path) -> tuple[Path, str, list[str]]:
    """The hook's ServiceAccount and RBAC as the chart renders them for a release in this namespace."""
    plane, ns = cluster.control_plane, cluster.namespace
    version = json.loads(plane.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    rendered = plane.helm(
        "template",
        "planetgen",
        str(helm.CHART),
        f"--namespace={ns}",
        f"--kube-version={version}",
        f"--set=watchNamespaces={{{ns}}}",
        "--show-only=templates/uninstall-hook.yaml",
    ).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    job = next(o for o in objects if o["kind"] == "Job")
    plane.apply([o for o in objects if o["kind"] != "Job"])
    account = job["spec"]["template"]["spec"]["serviceAccountName"]
    assert plane.ca is not None
    path = kubeconfig(
        folder / "hook.kubeconfig",
        server=plane.server,
        ca=plane.ca.pair.cert,
        user=account,
        token=plane.token(ns, account),
    )
    return (
        path,
        f"system:serviceaccount:{ns}:{account}",
        job["spec"]["template"]["spec"]["containers"][0]["args"],
    )


def _operator_deployment(cluster: Cluster) -> None:
    """A Deployment named and labelled as the chart's: the real ReplicaSet controller gives it a pod."""
    labels = {
        "app.kubernetes.io/name": "planetgen",
        "app.kubernetes.io/instance": "planetgen",
        "app.kubernetes.io/component": "operator",
    }
    body: dict[str, Any] = {
        "metadata": {"name": "planetgen"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "operator", "image": "example.invalid/operator"}]},
            },
        },
    }
    client.AppsV1Api(cluster.api).create_namespaced_deployment(cluster.namespace, body)  # type: ignore[arg-type]


def _pipeline(cluster: Cluster, name: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = cluster.custom.get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, cluster.namespace, PLURAL, name
        )
        return body
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _finalizers(cluster: Cluster, name: str) -> list[str]:
    return list(((_pipeline(cluster, name) or {}).get("metadata") or {}).get("finalizers") or [])


def _pods(cluster: Cluster) -> list[Any]:
    selector = "app.kubernetes.io/instance=planetgen,app.kubernetes.io/component=operator"
    return list(
        client.CoreV1Api(cluster.api).list_namespaced_pod(cluster.namespace, label_selector=selector).items
    )


def test_the_finalizer_is_the_one_kopf_writes() -> None:
    assert release_finalizers.finalizer() == FINALIZER


def test_release_lets_pipelines_go_once_the_operator_is_down(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    ns, custom = cluster.namespace, cluster.custom
    hook_kubeconfig, hook_user, args = _hook_identity(cluster, tmp_path)
    _operator_deployment(cluster)
    wait_for("the operator Deployment's pod", lambda: _pods(cluster))
    for name in ("gone", "kept"):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, pipeline(name))
    # Kopf adds its finalizer for the per-pipeline daemon.
    for name in ("gone", "kept"):
        wait_for(f"{name}'s finalizer", lambda n=name: FINALIZER in _finalizers(cluster, n), log=operator)  # type: ignore[misc]
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "kept",
        {"metadata": {"finalizers": [*_finalizers(cluster, "kept"), OTHERS]}},
    )

    # The operator is down: a deleted pipeline hangs on the finalizer, for good.
    operator.stop()
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone")
    time.sleep(3)
    hung = _pipeline(cluster, "gone")
    assert hung is not None and hung["metadata"].get("deletionTimestamp"), hung

    # What the hook Job runs (its args as the chart renders them), with the hook's own RBAC.
    assert args[0] == "release-finalizers" and f"--stop-deployment={ns}/planetgen" in args
    since = sum(1 for _ in cluster.control_plane.audit_events())
    done = subprocess.run(
        [PLANET, *args],
        env={"KUBECONFIG": str(hook_kubeconfig), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"released {ns}/gone" in done.stdout and f"released {ns}/kept" in done.stdout, done.stdout
    refused = [
        f"{e['verb']} {e['requestURI']}"
        for e in list(cluster.control_plane.audit_events())[since:]
        if e.get("user", {}).get("username") == hook_user and e.get("responseStatus", {}).get("code") == 403
    ]
    assert not refused, refused

    # The operator's Deployment is at 0 with no pod left; the deleted pipeline is gone, the other
    # keeps only the finalizer that is not the operator's.
    deployment = client.AppsV1Api(cluster.api).read_namespaced_deployment("planetgen", ns)
    assert deployment.spec.replicas == 0 and _pods(cluster) == []
    wait_for("the deleted pipeline to go", lambda: _pipeline(cluster, "gone") is None)
    assert _finalizers(cluster, "kept") == [OTHERS]

    # Why the hook stops the operator first: a running Kopf puts its finalizer straight back.
    operator.start()
    try:
        wait_for(
            "Kopf to add the finalizer again", lambda: FINALIZER in _finalizers(cluster, "kept"), log=operator
        )
    finally:
        operator.stop()
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "kept", {"metadata": {"finalizers": []}}
    )


@pytest.mark.parametrize("argv", [["-n", "Team_A"], ["--stop-deployment", "no-slash"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    from planet_operator.cli import main as cli

    assert cli.main(["release-finalizers", *argv]) == cli.EXIT_USAGE

"""`helm uninstall` on a node that runs pods: the pre-delete hook Job releases the pipelines.

The chart is installed by the real Helm; its operator Deployment and, at uninstall, its hook Job run
as pods on the process kubelet (``planet`` is this checkout's). Needs the machine's pod network.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.chart import helm
from tests.conftest import ROOT
from tests.polling import until

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane
from planet_harness.kubelet import Images
from planet_harness.node import NODE_IP, start_kubelet

PLANET = str(Path(sys.executable).with_name("planet"))
RELEASE = NAMESPACE = "planetgen-uninstall"
FINALIZER = "planetgen.io/finalizer"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with the CRDs and one process-kubelet node."""
    cluster = ControlPlane(tmp_path_factory.mktemp("uninstall"), node_ip=NODE_IP)
    try:
        cluster.start()
        harness.install_crds(cluster)
        start_kubelet(cluster, Images(commands={"planet": PLANET, "python": sys.executable}))
        yield cluster
    finally:
        cluster.stop()


def get(cluster: ControlPlane, *args: str) -> Any:
    found = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def operator_log(cluster: ControlPlane) -> str:
    return cluster.kubectl("logs", "-n", NAMESPACE, f"deploy/{RELEASE}", "--tail=40", check=False).stdout


def test_helm_uninstall_runs_the_hook_and_leaves_pipelines_deletable(node: ControlPlane) -> None:
    node.helm(
        "install",
        RELEASE,
        str(helm.CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set=replicas=1",
        "--set=operator.resyncSeconds=5",
        "--wait",
        "--timeout=3m",
    )
    node.kubectl("create", "namespace", "work")
    node.kubectl("apply", "-n", "work", "-f", str(ROOT / "examples" / "minimal.yaml"))
    name = str(get(node, "pp", "-n", "work")["items"][0]["metadata"]["name"])

    def finalizers() -> list[str]:
        body = get(node, "pp", name, "-n", "work")
        return list((body or {}).get("metadata", {}).get("finalizers") or [])

    until(
        "the operator pod's finalizer", lambda: FINALIZER in finalizers(), describe=lambda: operator_log(node)
    )

    done = node.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=3m", check=False)
    assert done.returncode == 0, done.stderr
    assert get(node, "pp", name, "-n", "work") is not None, "uninstalling the operator deletes no pipeline"
    assert FINALIZER not in finalizers()
    # The hook left nothing behind: its Job, ServiceAccount and RBAC went with the release.
    for kind in ("jobs", "serviceaccounts", "roles", "rolebindings"):
        items = get(node, kind, "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        assert items == [], (kind, [i["metadata"]["name"] for i in items])
    for kind in ("clusterroles", "clusterrolebindings"):
        items = get(node, kind, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        assert items == [], (kind, [i["metadata"]["name"] for i in items])

    # With no operator left, the pipeline's namespace still deletes.
    node.kubectl("delete", "namespace", "work", "--wait=false")
    until("the namespace to go", lambda: get(node, "namespace", "work") is None, timeout=120)

"""The real control plane for the operator tests: kube-apiserver with the CRDs, without KServe's controller.

One control plane per session (``planet_harness.cluster.running_without_kserve``), a fresh namespace
per test. No kubelet runs pods here, so ``planet_harness.kserve_status.StatusWriter`` stands in for
KServe's status writes. The tests that use it are marked ``cluster`` (``make unit`` leaves them out;
``make components`` builds what they need).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from tests.operator.cluster import Cluster, Operator, new_cluster, operator_for

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here that uses the real control plane is a cluster test."""
    here = Path(__file__).parent
    for item in items:
        uses = getattr(item, "fixturenames", ())
        if "control_plane" in uses and here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler with the CRDs installed."""
    with harness.running_without_kserve(tmp_path_factory.mktemp("control-plane")) as running:
        yield running


@pytest.fixture(scope="session")
def operator_identity(control_plane: ControlPlane) -> harness.Identity:
    """The chart's ServiceAccount and ClusterRole: what the operator runs with."""
    return harness.operator_identity(control_plane)


@pytest.fixture(scope="session")
def admin(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = harness.api_client(control_plane)
    yield api
    api.close()


@pytest.fixture
def cluster(
    control_plane: ControlPlane, operator_identity: harness.Identity, admin: client.ApiClient, tmp_path: Path
) -> Cluster:
    """This test's namespace, and the admin's clients for it."""
    return new_cluster(control_plane, operator_identity, admin, tmp_path)


@pytest.fixture
def operator(cluster: Cluster, tmp_path: Path) -> Iterator[Operator]:
    """The operator, watching this test's namespace."""
    running = operator_for(cluster, tmp_path / "operator.log")
    running.start()
    yield running
    running.stop()

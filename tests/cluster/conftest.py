"""The real test cluster (etcd, kube-apiserver, kube-controller-manager, KServe), once per session.

Built by ``make components``; ``pytest -m "not cluster"`` leaves these tests out.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import ROOT

from planet_harness import cluster as harness
from planet_harness.controlplane import ControlPlane

CRD = ROOT / "crds" / "planetpipelines.planetgen.io.yaml"
_names = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder runs on the real cluster."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running cluster with KServe and the committed PlanetPipeline CRD installed."""
    workdir = Path(os.environ["PLANET_CLUSTER_DIR"]) if "PLANET_CLUSTER_DIR" in os.environ else None
    with harness.running(workdir or tmp_path_factory.mktemp("cluster")) as running:
        running.kubectl("apply", "--server-side", "-f", str(CRD))
        running.kubectl(
            "wait", "--for=condition=Established", "crd/planetpipelines.planetgen.io", "--timeout=30s"
        )
        yield running


@pytest.fixture
def namespace(cluster: ControlPlane) -> str:
    """A fresh namespace for one test."""
    name = f"t{next(_names)}-{os.getpid() % 10000}"
    cluster.kubectl("create", "namespace", name)
    return name

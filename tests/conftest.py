"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
#: KServe's published CRDs, vendored (third_party/kserve/README.md) ...
KSERVE_SCHEMAS = ROOT / "third_party" / "kserve"
#: ... from the copy the team shares beside the repository, when this checkout has one (see DESIGN).
SHARED_KSERVE_SCHEMAS = ROOT.parent / "shared" / "schemas" / "kserve"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip, with the reason, where there is no CUDA."""
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (TensorRT / GPU path); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def kserve_schemas() -> Path:
    if not (KSERVE_SCHEMAS / "serving.kserve.io_inferenceservices.yaml").exists():
        pytest.skip(f"KServe CRD schemas not found at {KSERVE_SCHEMAS}")
    return KSERVE_SCHEMAS


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed")
    return path

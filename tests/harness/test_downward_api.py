"""The process kubelet's downward API reads resources as the kubelet does: limits rounded up by the
divisor, an unset limit as the node's allocatable."""

from __future__ import annotations

import pytest

from planet_harness.kubelet.volumes import resource_field

NODE = {"cpu": "64", "memory": "256Gi"}


def container(**resources: dict[str, str]) -> dict[str, object]:
    return {"name": "kserve-container", "resources": resources}


@pytest.mark.parametrize(
    ("resources", "ref", "value"),
    [
        ({"limits": {"cpu": "100m"}}, {"resource": "limits.cpu", "divisor": "1"}, "1"),
        ({"limits": {"cpu": "2"}}, {"resource": "limits.cpu"}, "2"),
        ({"limits": {"cpu": "1500m"}}, {"resource": "limits.cpu"}, "2"),
        ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu", "divisor": "1m"}, "250"),
        ({"requests": {"memory": "1Gi"}}, {"resource": "requests.memory", "divisor": "1Mi"}, "1024"),
        ({}, {"resource": "limits.cpu"}, "64"),
        ({"requests": {"cpu": "4"}}, {"resource": "limits.cpu"}, "64"),
        ({}, {"resource": "requests.cpu"}, "0"),
    ],
)
def test_resource_fields_resolve_as_the_kubelets(
    resources: dict[str, dict[str, str]], ref: dict[str, str], value: str
) -> None:
    assert resource_field(container(**resources), ref, NODE) == value


def test_a_limit_that_is_no_quantity_is_named() -> None:
    with pytest.raises(ValueError, match=r"limits\.cpu"):
        resource_field(container(limits={"cpu": "lots"}), {"resource": "limits.cpu"}, NODE)

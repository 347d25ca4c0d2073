"""Comparing children with what the API server stored: no write when only its spelling differs."""

from __future__ import annotations

import pytest

from planet_operator.kube import apply, quantity


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, "1"), ("0.5", "500m"), ("1024Mi", "1Gi"), ("4", 4), ("1e3", "1k"), ("2.5", "2500m")],
)
def test_same_quantity_in_another_spelling(a: object, b: object) -> None:
    assert quantity.equal(a, b)


@pytest.mark.parametrize(("a", "b"), [(1, "2"), ("1Gi", "1G"), ("32Gi", "abc"), (True, 1)])
def test_different_quantities(a: object, b: object) -> None:
    assert not quantity.equal(a, b)


def test_server_canonical_quantities_are_not_a_change() -> None:
    desired = {
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "0.5"}}}]}
    }
    live = {
        "spec": {
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "500m"}}}]
        }
    }
    assert apply.contains(live, desired)
    live["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "2"
    assert not apply.contains(live, desired)


def test_only_resource_maps_compare_by_value() -> None:
    # An image tag or an env value "1k" is not the number 1000.
    assert not apply.contains({"env": [{"value": "1k"}]}, {"env": [{"value": "1000"}]})

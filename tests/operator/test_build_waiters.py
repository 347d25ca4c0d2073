"""Who waits on which build: the one registry shared across pipelines, pruned as they move on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from planet_operator.handlers import children


@pytest.fixture(autouse=True)
def empty() -> Iterator[None]:
    saved = dict(children.WAITING_ON)
    children.WAITING_ON.clear()
    yield
    children.WAITING_ON.clear()
    children.WAITING_ON.update(saved)


def test_a_pipeline_waits_on_one_build_at_a_time() -> None:
    children.wait_for_build("a", "k1")
    children.wait_for_build("b", "k1")
    children.wait_for_build("a", "k2")  # a new revision: a new engine key
    waiting = children.WAITING_ON
    assert waiting == {"k1": {"b"}, "k2": {"a"}}


def test_a_built_or_deleted_pipeline_leaves_no_entry_behind() -> None:
    children.wait_for_build("a", "k1")
    children.wait_for_build("b", "k2")
    children.wait_for_build("a", None)  # its build finished
    children.stop_waiting("b")  # deleted
    assert not children.WAITING_ON

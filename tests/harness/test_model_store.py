"""The local model store: each URI made once, and the planet preset's made again when it is retrained."""

from __future__ import annotations

from pathlib import Path

import pytest

from planet_harness import models


def test_a_retrained_planet_preset_replaces_the_stored_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    version = {"now": "run-1"}

    def maker(uri: str) -> models.Maker:
        def make(target: Path, scratch: Path) -> None:
            made.append(uri)
            target.mkdir(parents=True)
            (target / "weights").write_text(f"{uri} {version['now']}")

        return make

    monkeypatch.setattr(models, "MODELS", {uri: maker(uri) for uri in (models.SDXL, models.PLANET)})
    monkeypatch.setattr(
        models, "source_stamp", lambda uri: version["now"] if uri in models.PLANET_MODELS else "seeded"
    )
    store = tmp_path / "store"
    models.ensure(store, say=lambda _: None)
    models.ensure(store, say=lambda _: None)
    assert made == [models.SDXL, models.PLANET]  # once each

    version["now"] = "run-2"
    models.ensure(store, say=lambda _: None)
    assert made == [models.SDXL, models.PLANET, models.PLANET]  # the seeded tiny preset never changes
    planet = models.path_of(store, models.PLANET) / "weights"
    assert planet.read_text() == f"{models.PLANET} run-2"


def test_the_stamp_follows_the_shipped_preset_record() -> None:
    stamp = models.source_stamp(models.PLANET)
    assert stamp == models.source_stamp(models.PLANET_LORA) and len(stamp) == 64
    assert models.source_stamp(models.SDXL) == "seeded"

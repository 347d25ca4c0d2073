"""docs/api.md: generated from the API models, complete, and committed without drift."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from tests.conftest import ROOT

from planet_contracts.api.resource import MAX_NAME_LENGTH, PlanetPipeline
from planet_operator.cli import main as cli
from planet_operator.crd import docs, generate, schema

TEXT = docs.reference()


def test_committed_api_reference_equals_planet_docs() -> None:
    committed = (ROOT / docs.API_DOC).read_text()
    assert committed == TEXT, "docs/api.md drifted: run `planet docs --write` and commit"


def test_planet_docs_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["docs"]) == 0
    assert capsys.readouterr().out == TEXT
    assert cli.main(["docs", "--write", "--root", str(tmp_path)]) == 0
    assert (tmp_path / docs.API_DOC).read_text() == TEXT


def _wire_paths(model: type[pydantic.BaseModel], prefix: str) -> set[str]:
    """Every field path of ``model`` as it appears on the wire (camelCase aliases)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        out.add(path)
        for nested in schema._models_in(info.annotation):
            origin = getattr(info.annotation, "__origin__", None)
            args = getattr(info.annotation, "__args__", ())
            if origin is list:
                suffix = "[]"
            elif origin is dict and nested in args[1:]:
                suffix = ".<key>"
            else:
                suffix = ""
            out |= _wire_paths(nested, path + suffix)
    return out


def test_every_model_field_is_documented_with_its_description() -> None:
    spec_model = PlanetPipeline.model_fields["spec"].annotation
    status_model = PlanetPipeline.model_fields["status"].annotation
    assert isinstance(spec_model, type)
    documented = {line.split("`")[1] for line in TEXT.splitlines() if line.startswith("| `s")}
    expected = _wire_paths(spec_model, "spec")
    missing = expected - documented
    assert not missing, sorted(missing)
    assert {"status.phase", "status.rollout.failedChecks", "status.history[].result"} <= documented
    assert status_model is not None
    for model in schema._model_classes(spec_model):
        for name, info in model.model_fields.items():
            if info.description:
                assert schema._one_line(info.description).replace("|", "\\|") in TEXT, (model.__name__, name)


def test_defaults_constraints_and_every_cel_message_are_listed() -> None:
    row = next(line for line in TEXT.splitlines() if line.startswith("| `spec.autoscaling.maxReplicas`"))
    assert "| `4` |" in row and ">= 1; <= 1000" in row
    assert "one of `tensorrt`, `torch`, `onnxruntime`" in TEXT
    rules = [
        rule
        for _, node in docs.fields(generate.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "")
        for rule in node.get("x-kubernetes-validations") or []
    ]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["message"] in TEXT, rule["message"]
    assert f"metadata.name must be at most {MAX_NAME_LENGTH} characters" in TEXT

"""Turn a raw manifest into models, or into kubectl-style field errors.

The same function serves ``planet render`` (exit 2) and the operator (status + event), so a user
sees the same words wherever a manifest is refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from planet_contracts.api import resource
from planet_contracts.api import spec as spec_models
from planet_contracts.api.resource import KIND, PlanetPipeline

#: The most a spec may take as the per-revision ConfigMap writes it (JSON, indent 2, ASCII escapes).
#: The ConfigMap holds it twice (generate.json, upscale.json), so this keeps it at half of the 1 MiB
#: Kubernetes allows. The CRD's bounds keep an ASCII spec under this (tests/operator/test_api.py works
#: out the worst case); only text with many escaped characters (emoji: 12 bytes each) can reach it.
MAX_CONFIG_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One problem: where it is, what was given, what is allowed."""

    path: str
    reason: str
    message: str
    value: Any = None
    has_value: bool = False

    def __str__(self) -> str:
        if self.has_value:
            return f"{self.path}: {self.reason}: {_show(self.value)}: {self.message}"
        return (
            f"{self.path}: {self.reason}: {self.message}" if self.message else f"{self.path}: {self.reason}"
        )


class InvalidPipeline(ValueError):
    """A manifest that does not satisfy the API; carries every problem found."""

    def __init__(self, name: str, errors: Sequence[FieldError]) -> None:
        self.name = name
        self.errors = list(errors)
        super().__init__(self.render())

    def render(self) -> str:
        """Format like kubectl: one line per problem."""
        head = f'The {KIND} "{self.name}" is invalid:'
        if len(self.errors) == 1:
            return f"{head} {self.errors[0]}"
        return "\n".join([head, *(f"* {error}" for error in self.errors)])

    def short(self) -> str:
        """One line for a condition message."""
        return "; ".join(str(error) for error in self.errors)


def parse(manifest: Mapping[str, Any]) -> PlanetPipeline:
    """Validate a whole object (shape and cross-field rules) or raise :class:`InvalidPipeline`."""
    name = _name_of(manifest)
    # The API server runs the name rules beside the schema, so both kinds of problem come together.
    named = [
        FieldError(
            path="metadata.name", reason="Invalid value", message=rule.message, value=name, has_value=True
        )
        for rule in resource.NAME_RULES
        if name and not rule.check(name)
    ]
    try:
        pipeline = PlanetPipeline.model_validate(dict(manifest))
    except pydantic.ValidationError as exc:
        raise InvalidPipeline(name, [*named, *(_from_pydantic(error) for error in exc.errors())]) from None
    problems = named + [
        FieldError(path=v.path, reason="Invalid value", message=v.rule.message, value=v.value, has_value=True)
        for v in spec_models.violations(pipeline.spec)
    ]
    problems += _size_problems(pipeline.spec)
    if problems:
        raise InvalidPipeline(name, problems)
    return pipeline


def parse_spec(spec: Mapping[str, Any], *, name: str = "") -> spec_models.PlanetPipelineSpec:
    """Validate just a spec (what the operator gets from Kopf)."""
    try:
        model = spec_models.PlanetPipelineSpec.model_validate(dict(spec))
    except pydantic.ValidationError as exc:
        errors = [_from_pydantic(error, prefix=("spec",)) for error in exc.errors()]
        raise InvalidPipeline(name, errors) from None
    problems = [
        FieldError(path=v.path, reason="Invalid value", message=v.rule.message, value=v.value, has_value=True)
        for v in spec_models.violations(model)
    ]
    problems += _size_problems(model)
    if problems:
        raise InvalidPipeline(name, problems)
    return model


def config_bytes(value: Any) -> int:
    """Bytes ``value`` takes in the pipeline ConfigMap: builders.config's serialisation, one level deep."""
    return len(json.dumps({"spec": value}, sort_keys=True, indent=2))


def _size_problems(model: spec_models.PlanetPipelineSpec) -> list[FieldError]:
    """A spec too big for its ConfigMap, pointing at the part that makes it so."""
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    size = config_bytes(dumped)
    if size <= MAX_CONFIG_BYTES:
        return []
    path, value = "spec", dumped
    # Follow the biggest child while it is most of its parent: that names the field to shorten.
    while isinstance(value, dict | list) and value:
        children = value.items() if isinstance(value, dict) else enumerate(value)
        key, child = max(children, key=lambda item: config_bytes(item[1]))
        if 2 * config_bytes(child) < config_bytes(value):
            break
        path += f"[{key}]" if isinstance(key, int) else f".{key}"
        value = child
    message = (
        f"the spec takes {size} bytes in the pipeline ConfigMap, more than {MAX_CONFIG_BYTES} (it is"
        " stored twice there, and a ConfigMap holds at most 1 MiB)"
    )
    return [FieldError(path=path, reason="Too long", message=message)]


def _name_of(manifest: Mapping[str, Any]) -> str:
    metadata = manifest.get("metadata")
    if isinstance(metadata, Mapping):
        return str(metadata.get("name", ""))
    return ""


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "constrained-", "json-or-python")) or part in ("int", "str"):
            # pydantic names union branches in loc; users never wrote those.
            continue
        else:
            path += f".{part}" if path else part
    return path


def _from_pydantic(error: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> FieldError:
    loc = (*prefix, *error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return FieldError(path=_path(loc), reason="Required value", message="")
    if kind == "extra_forbidden":
        return FieldError(
            path=_path(loc), reason="Unknown field", message="this field is not part of the API"
        )
    if kind in ("literal_error", "enum"):
        allowed = error.get("ctx", {}).get("expected", "")
        return FieldError(
            path=_path(loc),
            reason="Unsupported value",
            message=f"supported values: {allowed}",
            value=given,
            has_value=True,
        )
    message = str(error["msg"])
    message = message[0].lower() + message[1:] if message else message
    return FieldError(path=_path(loc), reason="Invalid value", message=message, value=given, has_value=True)


def _show(value: Any) -> str:
    text = json.dumps(value, default=_plain)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return str(value)

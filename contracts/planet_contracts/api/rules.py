"""Cross-field rules, declared once: checked in Python and emitted as CEL into the CRD.

A rule lives on the model class it constrains (``__rules__``). The CRD generator writes each rule as
an ``x-kubernetes-validations`` entry on that object's schema, so the API server enforces it; the
operator and ``planet render`` run the same rule through :func:`check`, so both say the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pydantic
from pydantic import alias_generators


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """One cross-field rule: a CEL expression and its Python twin."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    #: Where the error points, relative to the object (kubectl style, e.g. ``.minReplicas``).
    field: str = ""

    def as_cel(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry for this rule."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field:
            entry["fieldPath"] = self.field
        return entry


class RuledModel(pydantic.BaseModel):
    """Base for API models: camelCase on the wire, unknown fields refused, rules attached."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    __rules__: ClassVar[tuple[Rule, ...]] = ()


@dataclasses.dataclass(frozen=True)
class RuleViolation:
    """A failed rule with the path of the object it failed on."""

    path: str
    rule: Rule
    value: Any


def check(model: pydantic.BaseModel, path: str) -> Iterator[RuleViolation]:
    """Yield every violated rule in ``model`` and its nested models, depth first."""
    for rule in getattr(type(model), "__rules__", ()):
        if not rule.check(model):
            where = path + rule.field
            value = _lookup(model, rule.field)
            yield RuleViolation(path=where, rule=rule, value=value)
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if isinstance(value, pydantic.BaseModel):
            yield from check(value, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, pydantic.BaseModel):
                    yield from check(item, f"{path}.{key}[{index}]")
        elif isinstance(value, dict):
            for item_key, item in value.items():
                if isinstance(item, pydantic.BaseModel):
                    yield from check(item, f"{path}.{key}.{item_key}")


def _lookup(model: pydantic.BaseModel, field: str) -> Any:
    """Best-effort value of ``.camelName`` (or ``.a.b``) on ``model`` for error messages."""
    if not field.startswith(".") or "[" in field:
        return None
    value: Any = model
    for alias in field[1:].split("."):
        if not isinstance(value, pydantic.BaseModel):
            return None
        names = {(info.alias or name): name for name, info in type(value).model_fields.items()}
        if alias not in names:
            return None
        value = getattr(value, names[alias])
    return value

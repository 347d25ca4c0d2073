"""Pydantic JSON Schema ▶ a Kubernetes *structural* OpenAPI v3 schema.

Kubernetes wants every node typed, no ``$ref``, no ``additionalProperties`` beside ``properties``,
OpenAPI 3.0 spellings (boolean ``exclusiveMinimum``) and defaults written out. Pydantic gives JSON
Schema 2020-12 with ``$defs``; this module rewrites one into the other and attaches each model's
``__rules__`` as ``x-kubernetes-validations``, guarded by :mod:`planet_operator.crd.cel`.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from planet_contracts.api.rules import RuledModel
from planet_operator.crd import cel

JSON = dict[str, Any]

# Keys that carry meaning for Kubernetes; anything else pydantic emits (title, ...) is dropped.
_KEPT = (
    "type",
    "description",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
)


def structural_schema(model: type[pydantic.BaseModel]) -> JSON:
    """The structural schema of ``model``, with defaults and CEL rules from the classes."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    classes = {cls.__name__: cls for cls in _model_classes(model)}
    return _Converter(defs=raw.get("$defs", {}), classes=classes).model(raw, model)


def _model_classes(model: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
    """Every model class reachable from ``model`` through its field annotations."""
    seen: dict[str, type[pydantic.BaseModel]] = {}
    pending = [model]
    while pending:
        cls = pending.pop()
        if cls.__name__ in seen:
            continue
        seen[cls.__name__] = cls
        for field in cls.model_fields.values():
            pending.extend(_models_in(field.annotation))
    return list(seen.values())


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


class _Converter:
    def __init__(self, *, defs: dict[str, JSON], classes: dict[str, type[pydantic.BaseModel]]) -> None:
        self.defs = defs
        self.classes = classes

    def model(self, node: JSON, cls: type[pydantic.BaseModel]) -> JSON:
        out: JSON = {"type": "object"}
        if node.get("description"):
            out["description"] = _one_line(node["description"])
        properties: JSON = {}
        by_alias = {(info.alias or name): info for name, info in cls.model_fields.items()}
        for key, prop in node.get("properties", {}).items():
            converted = self.node(prop)
            info = by_alias.get(key)
            if info is not None:
                if info.description and "description" not in converted:
                    converted["description"] = _one_line(info.description)
                default = _default_of(info)
                if default is not None:
                    converted["default"] = default
            properties[key] = converted
        out["properties"] = properties
        if node.get("required"):
            out["required"] = list(node["required"])
        if isinstance(cls, type) and issubclass(cls, RuledModel) and cls.__rules__:
            # Guarded, so each rule holds on the node's `default` and on specs that leave sections out.
            out["x-kubernetes-validations"] = [
                {**rule.as_cel(), "rule": cel.guard(rule.cel, cls)} for rule in cls.__rules__
            ]
        return out

    def node(self, node: JSON) -> JSON:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            target = self.defs[name]
            if name in self.classes and target.get("type") == "object":
                return self.model(target, self.classes[name])
            return self.node(target)
        if "anyOf" in node:
            return self._any_of(node)
        out: JSON = {key: node[key] for key in _KEPT if key in node}
        if "description" in out:
            out["description"] = _one_line(out["description"])
        if "const" in node:
            out["enum"] = [node["const"]]
        if "exclusiveMinimum" in node:
            out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
        if "exclusiveMaximum" in node:
            out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
        kind = node.get("type")
        if kind == "array":
            out["items"] = self.node(node.get("items", {}))
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self.node(node["additionalProperties"])
        elif kind == "object" and "properties" not in node and "additionalProperties" not in node:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    def _any_of(self, node: JSON) -> JSON:
        branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string") or {b.get("type") for b in branches} == {
            "integer",
            "string",
        }:
            out: JSON = {"x-kubernetes-int-or-string": True}
            # A bound on the string branch applies to the node: Kubernetes checks it on strings only.
            for branch in branches:
                if branch.get("type") == "string":
                    out.update({key: branch[key] for key in ("maxLength", "pattern") if key in branch})
        elif len(branches) == 1:
            # Optional[X]: absence means None, so no ``nullable`` is needed.
            out = self.node(branches[0])
        else:
            raise TypeError(f"cannot express a union of {branches} in a structural schema")
        if node.get("description"):
            out["description"] = _one_line(node["description"])
        return out


def _default_of(info: Any) -> Any:
    """A field's default as JSON, minimal for models so nested defaults still apply."""
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is not PydanticUndefined:
        value = info.default
    else:
        return None
    if value is None:
        return None
    return _json(value)


def _json(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).replace("``", "`").split())

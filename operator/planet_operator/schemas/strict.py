"""Strict validation of an object against a CRD's structural OpenAPI v3 schema.

A real API server silently prunes fields its schema does not know; for a renderer that is a bug
that ships (the field never takes effect), so here an unknown field is an error. CEL rules are not
evaluated (that needs a CEL runtime); everything else a structural schema says is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SchemaError:
    """One mismatch, kubectl style: ``spec.predictor.foo: unknown field``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def validate(value: Any, schema: Schema) -> list[SchemaError]:
    """Every way ``value`` (a whole object) breaks ``schema``."""
    return list(_check(value, schema, ""))


@dataclasses.dataclass(frozen=True)
class CrdIndex:
    """Schemas of the CRDs in a folder, by (apiVersion, kind)."""

    schemas: dict[tuple[str, str], Schema]

    def schema_for(self, obj: dict[str, Any]) -> Schema | None:
        """The schema ``obj`` must satisfy, or None when no CRD in the index defines its kind."""
        return self.schemas.get((str(obj.get("apiVersion")), str(obj.get("kind"))))

    def validate(self, obj: dict[str, Any]) -> list[SchemaError]:
        """Validate ``obj``; an unknown kind is itself an error."""
        schema = self.schema_for(obj)
        if schema is None:
            return [SchemaError("", f"no CRD for {obj.get('apiVersion')} {obj.get('kind')}")]
        return validate(obj, schema)


@lru_cache(maxsize=8)
def load_crds(folder: Path) -> CrdIndex:
    """Read every CRD in ``folder`` (YAML files)."""
    schemas: dict[tuple[str, str], Schema] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return CrdIndex(schemas=schemas)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    if value is None:
        if not schema.get("nullable"):
            yield SchemaError(path, "must not be null")
        return
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            yield SchemaError(path, f"must be an integer or a string, got {type(value).__name__}")
        return
    if "anyOf" in schema and "type" not in schema:
        if all(list(_check(value, branch, path)) for branch in schema["anyOf"]):
            yield SchemaError(path, "matches none of the allowed forms")
        return
    kind = schema.get("type")
    checker = _CHECKERS.get(kind) if kind else None
    if checker is not None:
        yield from checker(value, schema, path)
    elif schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if "enum" in schema and value not in schema["enum"]:
        yield SchemaError(path, f"unsupported value {value!r}; supported values: {schema['enum']}")


def _object(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    if not isinstance(value, dict):
        yield SchemaError(path, f"must be an object, got {type(value).__name__}")
        return
    if path == "metadata":
        return  # ObjectMeta is validated by the API server itself, not by the CRD's schema.
    properties: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    for key, item in value.items():
        where = _join(path, key)
        if key in properties:
            yield from _check(item, properties[key], where)
        elif isinstance(extra, dict):
            yield from _check(item, extra, where)
        elif not keep_unknown and properties:
            yield SchemaError(where, "unknown field (a real API server would prune it)")
        elif not keep_unknown and not properties and extra is None and path:
            yield SchemaError(where, "unknown field (the schema allows no fields here)")
    for key in schema.get("required", []):
        if key not in value:
            yield SchemaError(_join(path, key), "required value")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        yield SchemaError(path, f"must have at most {schema['maxProperties']} properties")


def _array(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    if not isinstance(value, list):
        yield SchemaError(path, f"must be a list, got {type(value).__name__}")
        return
    if "minItems" in schema and len(value) < schema["minItems"]:
        yield SchemaError(path, f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        yield SchemaError(path, f"must have at most {schema['maxItems']} items")
    items = schema.get("items", {})
    for index, item in enumerate(value):
        yield from _check(item, items, f"{path}[{index}]")


def _string(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    if not isinstance(value, str):
        yield SchemaError(path, f"must be a string, got {type(value).__name__}")
        return
    if "pattern" in schema and not re.search(schema["pattern"], value):
        yield SchemaError(path, f"{value!r} does not match {schema['pattern']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        yield SchemaError(path, f"must be at most {schema['maxLength']} characters")
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield SchemaError(path, f"must be at least {schema['minLength']} characters")


def _number(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    integer = schema.get("type") == "integer"
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        yield SchemaError(
            path, f"must be {'an integer' if integer else 'a number'}, got {type(value).__name__}"
        )
        return
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and (value <= low if schema.get("exclusiveMinimum") else value < low):
        yield SchemaError(path, f"must be {'>' if schema.get('exclusiveMinimum') else '>='} {low}")
    if high is not None and (value >= high if schema.get("exclusiveMaximum") else value > high):
        yield SchemaError(path, f"must be {'<' if schema.get('exclusiveMaximum') else '<='} {high}")


def _boolean(value: Any, schema: Schema, path: str) -> Iterator[SchemaError]:
    if not isinstance(value, bool):
        yield SchemaError(path, f"must be a boolean, got {type(value).__name__}")


_CHECKERS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": _boolean,
}

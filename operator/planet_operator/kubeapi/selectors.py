"""Label and field selectors, as list and watch take them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from planet_operator.kubeapi import errors

_SET = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def label_matcher(selector: str) -> Callable[[dict[str, str]], bool]:
    """A predicate over labels for ``a=b,c!=d,e in (x,y),f notin (z),g,!h``."""
    tests = [_label_test(part) for part in _split(selector or "")]
    return lambda labels: all(test(labels) for test in tests)


def _label_test(part: str) -> Callable[[dict[str, str]], bool]:
    eq = _EQ.match(part)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    found = _SET.match(part)
    if not found:
        raise errors.bad_request(f"unable to parse requirement: {part.strip()!r}")
    negate, key, op, values = found.groups()
    options = {v.strip() for v in (values or "").split(",") if v.strip()}
    if op == "in":
        return lambda labels: labels.get(key) in options
    if op == "notin":
        return lambda labels: labels.get(key) not in options
    if negate:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def _field(body: dict[str, Any], path: str) -> str:
    value: Any = body
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matcher(selector: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``metadata.name=x,involvedObject.uid!=y`` (any dotted path, string compare)."""
    tests = [_field_test(part) for part in _split(selector or "")]
    return lambda body: all(test(body) for test in tests)


def _field_test(part: str) -> Callable[[dict[str, Any]], bool]:
    found = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
    if not found:
        raise errors.bad_request(f"invalid field selector: {part.strip()!r}")
    path, op, value = found.groups()
    if op == "!=":
        return lambda body: _field(body, path) != value
    return lambda body: _field(body, path) == value


def matcher(labels: str, fields: str) -> Callable[[dict[str, Any]], bool]:
    """Both selectors over a whole object."""
    by_labels, by_fields = label_matcher(labels), field_matcher(fields)
    return lambda body: by_labels((body.get("metadata") or {}).get("labels") or {}) and by_fields(body)

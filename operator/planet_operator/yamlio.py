"""YAML in and out, the way kubectl users expect to read it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (embedded JSON configs) as ``|`` blocks instead of escaped one-liners."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_all(documents: Iterable[dict[str, Any]]) -> str:
    """A ``---``-separated stream, keys in insertion order."""
    return yaml.dump_all(list(documents), Dumper=_Dumper, sort_keys=False, width=120, explicit_start=True)


def dump(document: dict[str, Any]) -> str:
    """One document."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120)


def load_all(text: str) -> Iterator[Any]:
    """Every non-empty document of a stream."""
    for document in yaml.safe_load_all(text):
        if document is not None:
            yield document

"""``has()`` guards for CEL rules, derived from the models the rules are declared on.

The API server evaluates a rule on every object its schema node sees: full objects, specs that leave
optional sections out, and at CRD creation the node's own ``default`` (``{}`` for a section), with no
nested defaults applied. In CEL, reading an absent field is an error (``no such key``), and so is
``has(self.a.b)`` when ``self.a`` is absent. :func:`guard` reads the ``self.<a>.<b>...`` chains of a
rule, resolves each segment against the model classes and prefixes the rule with
``!has(self.a) || !has(self.a.b) || ...`` for every segment that is not required (optional or
defaulted), skipping what the rule already tests with ``has()``. A guard only skips a rule on an
object the server has not defaulted, so the Python twins, which see pydantic's defaults, still agree.

Comprehension variables (``s`` in ``self.steps.all(s, s.weight > 0)``) and segments after an index
(``self.lanes[l].steps``) cannot be guarded from outside the rule: they must read required fields
or be tested with ``has()`` in the rule, else generation fails. So does a name that is neither a
field of the model nor a CEL function: a typo is caught here, not by the API server.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Annotated, Any, Literal

import pydantic

#: CEL macros that bind a variable to the elements (lists) or keys (maps) of their receiver.
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
#: Functions and methods of the Kubernetes CEL environment (standard library, Kubernetes lists,
#: strings, regex, URL, quantity and IP/CIDR libraries); ``has`` and ``dyn`` are handled apart.
_FUNCTION_NAMES = (
    # standard library
    "size contains startsWith endsWith matches int uint double string bytes bool duration timestamp type"
    " getDate getDayOfMonth getDayOfWeek getDayOfYear getFullYear getHours getMilliseconds getMinutes"
    " getMonth getSeconds"
    # Kubernetes lists, strings extension, regex
    " isSorted sum min max indexOf lastIndexOf"
    " charAt lowerAscii upperAscii replace split substring trim join format quote reverse find findAll"
    # Kubernetes URL, quantity and IP/CIDR libraries
    " url isURL getScheme getHost getHostname getPort getEscapedPath getQuery"
    " quantity isQuantity isInteger asInteger asApproximateFloat sign add sub isGreaterThan isLessThan"
    " compareTo ip isIP cidr isCIDR family isUnspecified isLoopback isLinkLocalMulticast"
    " isLinkLocalUnicast isGlobalUnicast containsIP containsCIDR prefixLength masked"
)
FUNCTIONS = MACROS | frozenset(_FUNCTION_NAMES.split())
#: Names that are neither variables nor functions.
_KEYWORDS = frozenset({"true", "false", "null", "in"})
#: Variables the API server binds to the object (``oldSelf``: the previous one, on updates).
_ROOTS = ("self", "oldSelf")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))
    | (?P<number>0[xX][0-9a-fA-F]+[uU]?|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[uU]?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


class CelRuleError(ValueError):
    """A rule reads something the models do not have, or something no guard can protect."""


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str
    text: str


@dataclasses.dataclass(frozen=True)
class _Type:
    """What a CEL value is, as far as guards care."""

    kind: Literal["object", "list", "map", "scalar"]
    model: type[pydantic.BaseModel] | None = None
    element: _Type | None = None


_SCALAR = _Type("scalar")


@dataclasses.dataclass(frozen=True)
class _Segment:
    #: From the root to this field, ``[]`` for an index: ``("self", "lanes", "[]", "steps")``.
    path: tuple[str, ...]
    required: bool
    #: After an index (``lanes[l].steps``): no guard outside the rule can reach it.
    indexed: bool

    @property
    def text(self) -> str:
        return _dotted(self.path)


@dataclasses.dataclass(frozen=True)
class _Chain:
    root: str
    segments: tuple[_Segment, ...]
    #: The chain is the argument of ``has()``: its last segment is tested, not read.
    tested: bool

    @property
    def read(self) -> tuple[_Segment, ...]:
        return self.segments[:-1] if self.tested else self.segments


def guard(cel: str, model: type[pydantic.BaseModel]) -> str:
    """``cel`` with ``!has(...)`` guards for every optional field chain it reads on ``model``.

    Raises:
        CelRuleError: the rule names a field ``model`` lacks, calls an unknown function, or reads
            an optional field through a comprehension variable or an index without ``has()``.
    """
    chains = _Reader(cel, model).chains()
    tested = {chain.segments[-1].path for chain in chains if chain.tested}
    guards: list[str] = []
    for chain in chains:
        unguarded = [s for s in chain.read if not s.required and s.path not in tested]
        for segment in unguarded:
            if chain.root not in _ROOTS or segment.indexed:
                raise CelRuleError(
                    f"{model.__name__}: `{cel}` reads optional `{segment.text}` through a "
                    "comprehension variable or an index: test it with has() in the rule"
                )
        if not unguarded:
            continue
        # has(self.a.b) errors when self.a is absent: guard every optional prefix up to the deepest.
        deepest = chain.read.index(unguarded[-1])
        for segment in chain.read[: deepest + 1]:
            text = f"has({segment.text})"
            if not segment.required and text not in guards:
                guards.append(text)
    if not guards:
        return cel
    body = f"({cel})" if _has_top_level_conditional(cel) else cel
    return " || ".join([*(f"!{text}" for text in guards), body])


def _has_top_level_conditional(cel: str) -> bool:
    """``a || b ? c : d`` parses as ``(a || b) ? c : d``, so such a rule needs parentheses."""
    depth = 0
    for token in _tokens(cel):
        if token.text in _OPEN:
            depth += 1
        elif token.text in _CLOSE:
            depth -= 1
        elif token.text == "?" and depth == 0:
            return True
    return False


def _tokens(cel: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(cel):
        match = _TOKEN.match(cel, position)
        if match is None:
            raise CelRuleError(f"`{cel}`: cannot read CEL at {cel[position:]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group()))
        position = match.end()
    return out


class _Reader:
    """Finds every field chain of one rule, with the scopes of comprehension variables."""

    def __init__(self, cel: str, model: type[pydantic.BaseModel]) -> None:
        self.cel = cel
        self.model = model
        self.tokens = _tokens(cel)
        #: (name, first token, last token, type) of each comprehension variable.
        self.scopes: list[tuple[str, int, int, _Type]] = []

    def chains(self) -> list[_Chain]:
        found: list[_Chain] = []
        for index, token in enumerate(self.tokens):
            if token.kind != "ident" or self._text(index - 1) == ".":
                continue  # a field or method name: part of the chain before it
            name = token.text
            if self._text(index + 1) == "(":
                if name not in FUNCTIONS and name not in ("has", "dyn"):
                    raise CelRuleError(f"{self.model.__name__}: `{self.cel}` calls unknown `{name}()`")
                continue
            root = self._root(index, name)
            if root is None:
                continue
            in_has = self._text(index - 1) == "(" and self._text(index - 2) == "has"
            chain, end = self._chain(index, name, root)
            if in_has and (self._text(end) != ")" or not chain.segments):
                raise CelRuleError(f"{self.model.__name__}: `{self.cel}`: has() takes a field selection")
            found.append(dataclasses.replace(chain, tested=in_has))
        return found

    def _text(self, index: int) -> str:
        return self.tokens[index].text if 0 <= index < len(self.tokens) else ""

    def _root(self, index: int, name: str) -> _Type | None:
        if name in _ROOTS:
            return _Type("object", model=self.model)
        if name in _KEYWORDS:
            return None
        for variable, first, last, kind in reversed(self.scopes):
            if variable == name and first <= index <= last:
                return kind
        raise CelRuleError(f"{self.model.__name__}: `{self.cel}` names unknown `{name}`")

    def _chain(self, index: int, root_name: str, root: _Type) -> tuple[_Chain, int]:
        """The field chain starting at token ``index``, and the token after it."""
        segments: list[_Segment] = []
        kind, indexed, at = root, False, index + 1
        where: list[str] = [root_name]
        while at < len(self.tokens):
            if self._text(at) == "[":
                if kind.element is None:
                    raise CelRuleError(f"`{self.cel}`: `{_dotted(where)}` is not a list or map")
                kind, indexed, at = kind.element, True, self._closing(at) + 1
                where.append("[]")
                continue
            if self._text(at) != "." or at + 1 >= len(self.tokens) or self.tokens[at + 1].kind != "ident":
                break
            name = self.tokens[at + 1].text
            if self._text(at + 2) == "(":
                if name not in FUNCTIONS:
                    raise CelRuleError(
                        f"{self.model.__name__}: `{self.cel}`: `{name}` is neither a field of "
                        f"`{_dotted(where)}` nor a CEL function"
                    )
                if name in MACROS:
                    self._bind(at + 2, kind, where)
                break
            fields = _fields(kind.model) if kind.kind == "object" and kind.model else {}
            if name not in fields:
                raise CelRuleError(
                    f"{self.model.__name__}: `{self.cel}`: `{_dotted(where)}` has no field `{name}`"
                )
            info = fields[name]
            where.append(name)
            segments.append(_Segment(path=tuple(where), required=info.is_required(), indexed=indexed))
            kind, at = _type_of(info.annotation), at + 2
        return _Chain(root=root_name, segments=tuple(segments), tested=False), at

    def _bind(self, paren: int, receiver: _Type, where: list[str]) -> None:
        """Scope the variable(s) of ``receiver.macro(x, ...)`` (or ``(k, v, ...)``) opened at ``paren``."""
        if receiver.kind not in ("list", "map") or receiver.element is None:
            raise CelRuleError(f"`{self.cel}`: `{_dotted(where)}` is not a list or map")
        last = self._closing(paren)
        names: list[str] = []
        at = paren + 1
        while self.tokens[at].kind == "ident" and self._text(at + 1) == ",":
            names.append(self.tokens[at].text)
            at += 2
        if not names or len(names) > 2:
            raise CelRuleError(f"`{self.cel}`: a macro on `{_dotted(where)}` binds no variable")
        element = receiver.element if receiver.kind == "list" else _SCALAR
        kinds = [element] if len(names) == 1 else [_SCALAR, receiver.element]
        for name, kind in zip(names, kinds, strict=True):
            self.scopes.append((name, paren, last, kind))

    def _closing(self, index: int) -> int:
        depth = 0
        for at in range(index, len(self.tokens)):
            text = self.tokens[at].text
            depth += (text in _OPEN) - (text in _CLOSE)
            if depth == 0:
                return at
        raise CelRuleError(f"`{self.cel}`: unbalanced brackets")


def _dotted(path: typing.Iterable[str]) -> str:
    return ".".join(path).replace(".[]", "[]")


def _fields(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A model's fields by their wire (camelCase) name."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _type_of(annotation: Any) -> _Type:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _Type("object", model=annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_of(args[0])
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        # Optional[X] is X on the wire; int | str (a quantity) is a scalar.
        return _type_of(present[0]) if len(present) == 1 else _SCALAR
    if origin in (list, tuple, set, frozenset):
        return _Type("list", element=_type_of(args[0]) if args else _SCALAR)
    if origin is dict:
        return _Type("map", element=_type_of(args[1]) if len(args) == 2 else _SCALAR)
    return _SCALAR

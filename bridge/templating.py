"""A small, safe template language: literal text with `{expression}` holes, each a JMESPath expression.

Used wherever configuration builds a string out of data: a mapped source's title or url from the sender's
payload (`"{requestname} ({requestid})"`), and card templates over the event and the approval. Why not
str.format or jinja2: str.format reaches attributes (`{x.__class__}`) and jinja2 is a language of its own;
JMESPath is data lookup only (no calls into Python, no attribute access, no loops), it is already the path
language of mapped sources, and its built-in functions (`join`, `length`, `to_string`, `||` for defaults)
cover what a title or a url needs. One function is added: `url_encode(x)` percent-encodes a value for a query
string (every reserved character, `/` included), for links such as
`dingtalk://dingtalkclient/page/link?url={url_encode(approval.url)}&pc_slide=true`.

    {path}      the value of a JMESPath expression over the context dict
    {{  }}      a literal brace

A template is parsed once (`Template.parse`, at config load): a syntax error names the template and the
character position. Rendering is pure and never raises on data, except `MissingValue` when asked to be
strict: a hole whose value is null, "", or an empty list (a projection that matched nothing) is "missing";
by default it renders as "". A function given the wrong type of value (`length(null)`) makes its hole missing
too; an unknown function name is a TemplateError at parse time. Values render as text: strings as they are,
numbers without a trailing `.0`, booleans as true/false, lists as their items joined with ", ", objects as compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions as jmespath_functions
from jmespath.parser import ParsedResult

LIST_SEPARATOR = ", "
_COMPILED: dict[str, ParsedResult] = {}
_QUOTES = "'\"`"  # JMESPath raw strings, quoted identifiers, JSON literals: braces inside do not count


class _Functions(jmespath_functions.Functions):
    """JMESPath's built-in functions plus `url_encode`."""

    @jmespath_functions.signature({"types": []})
    def _func_url_encode(self, value: object) -> str:
        return "" if is_missing(value) else quote(to_text(value), safe="")


OPTIONS = jmespath.Options(custom_functions=_Functions())
FUNCTIONS = frozenset(_Functions().FUNCTION_TABLE)


class TemplateError(ValueError):
    """A template that cannot be parsed; the message names the template and the position (1-based)."""

    def __init__(self, name: str, position: int, why: str) -> None:
        super().__init__(f"{name}: {why} (at character {position + 1})")
        self.name, self.position, self.why = name, position, why


class MissingValue(LookupError):
    """A strict render found a hole with no value; `expression` is the hole's text."""

    def __init__(self, name: str, expression: str) -> None:
        super().__init__(f"{name}: {{{expression}}} matched nothing")
        self.name, self.expression = name, expression


@dataclass(frozen=True, slots=True)
class Hole:
    """One `{expression}`: its source text and where it starts; the compiled form is kept in `_COMPILED`."""

    text: str
    position: int

    def search(self, context: object) -> object:
        """The hole's value; None when a function was given the wrong type of value (the hole is missing)."""
        try:
            return compiled(self.text).search(context, options=OPTIONS)
        except jmespath_errors.JMESPathError:
            return None


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: alternating literal text and holes. Immutable, hashable by its source text."""

    name: str
    source: str
    parts: tuple[str | Hole, ...]

    @classmethod
    def parse(cls, source: object, name: str) -> Template:
        """Parse `source`; TemplateError names `name` (like "sources[0].mapping.fields.title") and the spot."""
        if not isinstance(source, str):
            raise TemplateError(name, 0, f"expected a template string, got {type(source).__name__}")
        return cls(name, source, tuple(_parse(source, name)))

    @property
    def holes(self) -> tuple[Hole, ...]:
        return tuple(p for p in self.parts if isinstance(p, Hole))

    @property
    def is_literal(self) -> bool:
        return not self.holes

    def render(self, context: Mapping[str, Any], *, strict: bool = False) -> str:
        """The text with every hole filled from `context`; `strict` raises MissingValue for an empty hole."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.search(context)
            if is_missing(value):
                if strict:
                    raise MissingValue(self.name, part.text)
                continue
            out.append(to_text(value))
        return "".join(out)

    def missing(self, context: Mapping[str, Any]) -> tuple[str, ...]:
        """The holes that would render empty for `context` (for error messages that name every one)."""
        return tuple(h.text for h in self.holes if is_missing(h.search(context)))


def is_missing(value: object) -> bool:
    return value is None or value == [] or value == ""


def to_text(value: object) -> str:
    """A JSON value as template text (see the module docs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return LIST_SEPARATOR.join(to_text(v) for v in value if v is not None)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JMESPathSyntax(ValueError):
    """Not a JMESPath expression: `reason` is jmespath's, `offset` the 0-based character it points at."""

    def __init__(self, text: str, reason: str, offset: int) -> None:
        super().__init__(f"bad JMESPath {text!r}: {reason}")
        self.reason, self.offset = reason, offset


def compile_jmespath(text: str) -> ParsedResult:
    """Compile one JMESPath expression, once: jmespath's own cache is bounded and purged at random, ours
    holds what the configuration uses (compiled at load, so nothing is compiled per request)."""
    text = text.strip()
    if (hit := _COMPILED.get(text)) is not None:
        return hit
    try:
        result = _COMPILED[text] = jmespath.compile(text)
        return result
    except jmespath_errors.JMESPathError as exc:
        offset = getattr(exc, "lex_position", None)
        raise JMESPathSyntax(text, _reason(exc), offset if isinstance(offset, int) else 0) from None


def compiled(text: str) -> ParsedResult:
    """The compiled form of an expression that `compile_jmespath` accepted."""
    return _COMPILED.get(text.strip()) or compile_jmespath(text)


def compile_expression(text: str, name: str, position: int = 0) -> ParsedResult:
    """Compile a hole's expression; TemplateError points at the offending character of the template."""
    if not text.strip():
        raise TemplateError(name, position, "empty expression {}")
    try:
        result = compile_jmespath(text)
    except JMESPathSyntax as exc:
        raise TemplateError(name, position + exc.offset, str(exc)) from None
    for function in function_names(result.parsed):
        if function not in FUNCTIONS:
            raise TemplateError(name, position, f"unknown function {function}() (JMESPath's functions and url_encode)")
    return result


def function_names(node: Mapping[str, Any]) -> Iterator[str]:
    """Every function a compiled expression's tree calls."""
    if node.get("type") == "function_expression":
        yield str(node.get("value"))
    for child in node.get("children") or ():
        if isinstance(child, Mapping):
            yield from function_names(child)


def _reason(exc: Exception) -> str:
    """jmespath's messages repeat the expression over three lines; keep the first line's reason."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first.split(": Parse error at column")[0].strip()


def _parse(source: str, name: str) -> list[str | Hole]:
    parts: list[str | Hole] = []
    literal: list[str] = []
    i = 0
    while i < len(source):
        c = source[i]
        if c in "{}" and source.startswith(c * 2, i):
            literal.append(c)
            i += 2
        elif c == "}":
            raise TemplateError(name, i, "a single '}' (write '}}' for a literal brace)")
        elif c == "{":
            end = _closing(source, i, name)
            text = source[i + 1 : end]
            if literal:
                parts.append("".join(literal))
                literal = []
            compile_expression(text, name, i + 1)
            parts.append(Hole(text.strip(), i))
            i = end + 1
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _closing(source: str, start: int, name: str) -> int:
    """The index of the '}' that closes the hole opened at `start` (JMESPath's own braces and quotes nest)."""
    depth, i, quote = 0, start + 1, ""
    while i < len(source):
        c = source[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in _QUOTES:
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise TemplateError(name, start, "'{' is never closed (write '{{' for a literal brace)")

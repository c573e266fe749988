"""Strict decoding of what arrives as bytes or loose values: JSON bodies and timestamps.

Split from bridge.events so the event record and its field rules read apart from the byte-level defences
(UTF-8 only, no NaN/Infinity, bounded nesting, timestamps that cannot confuse seconds with milliseconds).
Every source format decodes through these; pure, like the rest of the core.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bridge.errors import MalformedPayload

__all__ = ["MAX_DEPTH", "TIME_FORMATS", "kind_of", "parse_json", "parse_time", "show_value"]

MAX_DEPTH = 32  # JSON nesting levels
TIME_FORMATS = ("rfc3339", "unix_s", "unix_ms")

# Outside strings: brackets (depth) and the non-standard constants Python's json would accept.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?Infinity|NaN', re.DOTALL)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?")
_UNIX_TEXT = re.compile(r"\d{1,20}(?:\.\d{1,9})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SANE_FROM, _SANE_TO = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def parse_json(raw: bytes) -> object:
    """Decode a webhook body: strict UTF-8 JSON, no NaN/Infinity, at most MAX_DEPTH levels of nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload(f"invalid JSON: the body is not UTF-8 (bad byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff")  # RFC 8259 lets a parser ignore a byte order mark
    if text.count("{") + text.count("[") > MAX_DEPTH:  # only then can it nest too deep: scan (in Python) to see
        _scan(text)
    try:
        return _DECODER.decode(text)
    except _Constant:
        _scan(text)  # names where the constant is
        raise MalformedPayload("invalid JSON: NaN and Infinity are not JSON values") from None
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer with more digits than Python converts
        raise MalformedPayload(f"invalid JSON: {str(exc)[:120]}") from None


class _Constant(Exception):
    """json.loads met NaN, Infinity or -Infinity (Python's json accepts them; JSON does not)."""


def _constant(token: str) -> float:
    raise _Constant(token)


def _scan(text: str) -> None:
    """The slow check, token by token in Python: nesting deeper than MAX_DEPTH and the non-standard constants
    outside strings, each named by line and column. `parse_json` runs it only when the body has more brackets
    than MAX_DEPTH or when json.loads met a constant, so an ordinary body is parsed once, in C."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token, pos = match.group(), match.start()
        depth += (token in ("[", "{")) - (token in ("]", "}"))
        if depth > MAX_DEPTH or token[0] not in '"[]{}':
            why = f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH else f"{token} is not a JSON value"
            line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
            raise MalformedPayload(f"invalid JSON at line {line} column {column}: {why}")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice: parsers disagree on which one wins (a smuggling route)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedPayload(f"invalid JSON: the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def _finite(text: str) -> float:
    if (number := float(text)) in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large")
    return number


def parse_time(value: object, time_format: str, field: str) -> datetime:
    """A timestamp in `time_format` (rfc3339 | unix_s | unix_ms) as an aware UTC datetime.

    rfc3339 needs an offset or Z. unix values may be int, float or a digit string; results outside
    2000..2200 are refused (they mean seconds and milliseconds were confused). ValueError names the format.
    """
    at = f"{field}: " if field else ""
    if time_format == "rfc3339":
        m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
        if m is None:
            raise ValueError(f"{at}expected an RFC 3339 time like 2026-11-29T10:00:00+08:00, got {show_value(value)}")
        if m.group("offset") is None:
            raise ValueError(f"{at}RFC 3339 time {value!r} has no UTC offset (add Z or +08:00)")
        try:
            return datetime.fromisoformat(m.group().upper()).astimezone(UTC)
        except (ValueError, OverflowError):  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise ValueError(f"{at}{value!r} is not a valid RFC 3339 time") from None
    if time_format not in TIME_FORMATS:
        raise ValueError(f"{at}unknown time format {time_format!r} (expected one of {', '.join(TIME_FORMATS)})")
    unit = "seconds" if time_format == "unix_s" else "milliseconds"
    if isinstance(value, bool) or not isinstance(value, int | float | str) or not _UNIX_TEXT.fullmatch(str(value)):
        raise ValueError(
            f"{at}expected {time_format} ({unit} since 1970, number or digit string), got {show_value(value)}")
    try:
        result = _EPOCH + timedelta(microseconds=int(Decimal(str(value)) * (10**6 if unit == "seconds" else 10**3)))
    except OverflowError:
        result = _EPOCH
    if not _SANE_FROM <= result < _SANE_TO:
        raise ValueError(f"{at}{value!r} as {time_format} ({unit}) is not a time between 2000 and 2200; check the unit")
    return result


def show_value(value: object) -> str:
    """A short, safe rendering of a bad input value for a problem message."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return kind_of(value) if isinstance(value, dict | list) or value is None else repr(value)[:40]


def kind_of(value: object) -> str:
    kinds = {dict: "an object", list: "an array", tuple: "an array", str: "a string", bool: "a boolean"}
    kinds[type(None)] = "null"
    return kinds.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


# One decoder with bridge's hooks, built once: json.loads with hooks builds a new JSONDecoder on every call.
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_constant, object_pairs_hook=unique_keys)

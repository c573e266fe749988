"""A strict reader for one parsed TOML table: typed getters whose errors name the file and the dotted key.

Why it exists: the configuration loader (`bridge.config`) checks a dozen sections the same way (unknown
keys refused with a near-miss hint, booleans never taken for numbers, ranges, choices, patterns, URLs); this
keeps that machinery out of the loader so the loader reads as a list of the keys and their rules. It knows
nothing about secrets: the loader resolves those itself, so no secret value can reach a message built here.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from bridge.errors import ConfigError

__all__ = ["MISSING", "Table", "kind"]

MISSING: Any = object()  # "no default": the key is required


def kind(value: object) -> str:
    """What a TOML value is, for messages ("a string", "an array")."""
    if isinstance(value, bool):
        return "a boolean"
    names = {str: "a string", int: "an integer", float: "a number", list: "an array", dict: "a table"}
    return names.get(type(value), f"a TOML {type(value).__name__}")


def unknown(name: str, known: tuple[str, ...], what: str, where: str) -> ConfigError:
    """The error for an unknown key: `unknown key 'hots' in [server] (bridge.toml) (did you mean 'host'?); ...`."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {what} {name!r} in {where}{hint}; known {what}s: {', '.join(known)}")


class Table:
    """One TOML table: `key` is its dotted path ("server", "sources[0]"), `label` how the user wrote it."""

    def __init__(self, data: object, key: str, file: str, label: str | None = None) -> None:
        self.key, self.file, self.label = key, file, label or f"[{key}]"
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {key}: expected a table, got {kind(data)}")
        self.data: dict[str, Any] = data

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.path(name)}: {message}")

    def only(self, known: Iterable[str]) -> None:
        """Refuse every key not in `known`."""
        known = tuple(known)
        for name in self.data:
            if name not in known:
                raise unknown(name, known, "key", f"{self.label} ({self.file})")

    def raw(self, name: str, default: Any = MISSING) -> Any:
        if name in self.data:
            return self.data[name]
        if default is MISSING:
            raise self.fail(name, "required")
        return default

    def text(self, name: str, default: Any = MISSING, *, choices: tuple[str, ...] = (),
             pattern: re.Pattern[str] | None = None, shape: str = "") -> str:
        """A non-blank string, optionally one of `choices` or matching `pattern` (described as `shape`)."""
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {kind(value)}")
        if choices and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(name, f"must match {shape or pattern.pattern}; got {value!r}")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def integer(self, name: str, default: Any = MISSING, *, low: int = 1, high: int | None = None) -> int:
        """An integer in [low, high] (a boolean or a float is refused)."""
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {kind(value)}")
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(name, f"must be {span}; got {value}")
        return value

    def number(self, name: str, default: Any = MISSING, *, low: float = 0.0, open_low: bool = True,
               high: float | None = None) -> float:
        """A finite number (integer or float) above `low` (or at least `low` when not `open_low`), at most `high`."""
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            got = value if isinstance(value, float) else kind(value)
            raise self.fail(name, f"expected a finite number, got {got}")
        if value < low or (open_low and value == low):
            raise self.fail(name, f"must be {'greater than' if open_low else 'at least'} {low:g}; got {value:g}")
        if high is not None and value > high:
            raise self.fail(name, f"must be at most {high:g}; got {value:g}")
        return float(value)

    def url(self, name: str, default: Any = MISSING) -> str:
        """An http(s) URL with a host and no query or fragment, without its trailing slash."""
        value = self.text(name, default)
        scheme, sep, rest = value.partition("://")
        host = rest.split("/", 1)[0]
        if (not sep or scheme.lower() not in ("http", "https") or not host or "?" in rest or "#" in rest
                or "@" in host or any(c.isspace() or not c.isprintable() for c in value)):
            raise self.fail(name, f"must be an http:// or https:// URL with a host and no query; got {value!r}")
        return value.rstrip("/")

    def table(self, name: str, label: str | None = None) -> Table:
        """A sub-table (empty when absent)."""
        return Table(self.data.get(name, {}), self.path(name), self.file, label)

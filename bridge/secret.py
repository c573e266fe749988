"""Secrets: a string that never shows itself, and the one way a configured secret is read.

Why it exists: the config loader, the native callback parsers, the DingTalk client and the simulator all hold
secrets, and none of them should need the config loader to do so. `Secret` masks itself in repr, str, logs,
summaries and error messages; `resolve_secret` turns an inline value or ``env:NAME`` into one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bridge.errors import ConfigError
from bridge.tomltable import kind

__all__ = ["ENV_NAME", "Secret", "resolve_secret"]

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Secret:
    """A secret string that never shows itself in repr, str, logs or exceptions.

    `reveal()` is the only way to read it, so every place that uses a secret is easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        """For display: `****`, with the first and last two characters around it only when the secret is long
        enough (16+) that four shown characters tell secrets apart without helping anyone guess one."""
        return "****" if len(self._value) < 16 else f"{self._value[:2]}****{self._value[-2:]}"

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def resolve_secret(value: object, key: str, env: Mapping[str, str]) -> Secret:
    """An inline secret, or ``env:NAME`` read from `env`. `key` names the place for errors ("bridge.toml:
    sources[0].secret"); an unset variable is a ConfigError naming the variable, never a value."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string (the secret inline, or 'env:NAME'), got {kind(value)}")
    if not value.startswith("env:"):
        return Secret(value)
    name = value[len("env:") :]
    if not ENV_NAME.fullmatch(name):
        raise ConfigError(f"{key}: {name!r} is not an environment variable name (use env:NAME)")
    if name not in env:
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return Secret(env[name])

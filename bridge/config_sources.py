"""The [[sources]] tables of the configuration: who may send webhooks, how they sign and what format they send.

Why it exists: bridge.config reads every section; the sources are the largest and the only one with their own
sub-languages (mappings, presets, native platform keys), so they are checked here, each table on its own, and
`sources()` reports the first problem of every table (check-config shows them all in one run).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bridge.config_apps import APP_NAME
from bridge.config_model import ServerConfig, SourceConfig
from bridge.errors import ConfigError
from bridge.secret import Secret, resolve_secret
from bridge.sources import mapping as mapping_module
from bridge.sources import native, signatures
from bridge.tomltable import Table

SIGNATURES = signatures.SCHEMES
FORMATS = ("canonical", "mapping", "dingtalk", "feishu", "wecom")
NATIVE_FORMATS = ("dingtalk", "feishu", "wecom")
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
SOURCE_KEYS = ("name", "signature", "secret", "format", "timestamp_tolerance_s", "mapping", "app", "card")
# everything else goes to bridge.native; card (the card template) is read by bridge.config_card
NATIVE_OWN_KEYS = ("name", "format", "timestamp_tolerance_s", "app", "card")


def sources(data: dict[str, Any], file: str, server: ServerConfig, env: Mapping[str, str],
             attempt: Callable[[Callable[[], SourceConfig]], SourceConfig | None]) -> list[SourceConfig] | None:
    """Every [[sources]] table, each checked even when an earlier one is wrong; None if any was wrong (its
    problems went to `attempt`'s list)."""
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ConfigError(f"{file}: sources: at least one [[sources]] table is required (who may send webhooks)")
    sources: list[SourceConfig] = []
    failed = False
    for i, raw in enumerate(raw_sources):

        def check(i: int = i, raw: object = raw) -> SourceConfig:
            return _source(Table(raw, f"sources[{i}]", file, f"[[sources]] #{i + 1}"), server, env)

        source = attempt(check)
        if source is None:
            failed = True
        elif any(s.name == source.name for s in sources):
            raise ConfigError(f"{file}: sources[{i}].name: duplicate source name {source.name!r}")
        else:
            sources.append(source)
    return None if failed else sources


_SOURCE_DEFAULTS = SourceConfig(name="defaults")


def _source(t: Table, server: ServerConfig, env: Mapping[str, str]) -> SourceConfig:
    name = t.text("name", pattern=SOURCE_NAME, shape="^[a-z0-9][a-z0-9_-]{0,63}$ (it is a URL segment)")
    t.label = f"{t.label} ({name!r})"
    fmt, preset = _format(t)
    tolerance = t.integer("timestamp_tolerance_s", _SOURCE_DEFAULTS.timestamp_tolerance_s)
    app = t.text("app", pattern=APP_NAME, shape="the name of a [[dingtalk.apps]] entry") if "app" in t.data else None
    if fmt in NATIVE_FORMATS:
        rest = {k: v for k, v in t.data.items() if k not in NATIVE_OWN_KEYS}
        parsed = native.parse_config(fmt, rest, f"{t.file}: {t.key}", env)
        return SourceConfig(name=name, signature="native", format=fmt, timestamp_tolerance_s=tolerance,
                            native=parsed, app=app)
    t.only(SOURCE_KEYS if fmt == "mapping" else tuple(k for k in SOURCE_KEYS if k != "mapping"))
    scheme = t.text("signature", _SOURCE_DEFAULTS.signature, choices=SIGNATURES)
    secrets = _source_secrets(t, scheme, env)
    if scheme == "none" and not server.on_loopback:
        raise unsigned_off_loopback(t.file, t.path("signature"), server.host)
    mapping = None
    if fmt == "mapping":
        if "mapping" not in t.data and preset is None:
            raise t.fail("mapping", "required when format = 'mapping' (a [sources.mapping] table)")
        table = t.data.get("mapping", {})
        if preset is not None and isinstance(table, dict):
            table = {"preset": preset, **table}
        mapping = mapping_module.parse_config(table, f"{t.file}: {t.path('mapping')}")
    return SourceConfig(name=name, signature=scheme, secrets=secrets, format=fmt, timestamp_tolerance_s=tolerance,
                        mapping=mapping, app=app)


def _format(t: Table) -> tuple[str, str | None]:
    """`format`, and the preset of the short form `format = "preset:NAME"` (a mapped source; see
    bridge.sources.presets)."""
    raw = t.data.get("format")
    if isinstance(raw, str) and raw.startswith("preset:"):
        return "mapping", raw.removeprefix("preset:")
    return t.text("format", "canonical", choices=FORMATS), None


def _source_secrets(t: Table, scheme: str, env: Mapping[str, str]) -> tuple[Secret, ...]:
    raw = t.data.get("secret")
    if scheme == "none":
        if raw is not None:
            raise t.fail("secret", "given, but signature = 'none' never checks it; remove one of them")
        return ()
    if raw is None:
        raise t.fail("secret", f"required for signature = {scheme!r} (a string or a list of strings, inline or "
                               "'env:NAME')")
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise t.fail("secret", "must not be an empty list")
    out = []
    for i, item in enumerate(items):
        key = t.path("secret") + (f"[{i}]" if isinstance(raw, list) else "")
        value = resolve_secret(item, f"{t.file}: {key}", env)
        if not value.reveal():
            raise ConfigError(f"{t.file}: {key}: must not be empty")
        if scheme == "standard-webhooks":
            try:
                signatures.decode_whsec(value.reveal())
            except ValueError as exc:
                raise ConfigError(f"{t.file}: {key}: {exc}") from None
        out.append(value)
    return tuple(out)


def unsigned_off_loopback(file: str, key: str, host: str) -> ConfigError:
    return ConfigError(f"{file}: {key} = 'none' is only allowed when server.host is a loopback address "
                       f"(server.host = {host!r}); sign the webhooks or bind to 127.0.0.1")

"""Shipped mapping presets: `[sources.mapping]` tables for the systems integrators meet most.

Each preset is a TOML file beside this module (`weaver.toml` is `preset = "weaver"`), written in exactly the
syntax an integrator would write, with the system-side setup and the public documentation it was built from
in its comments. A source's own `[sources.mapping]` keys override the preset's: a scalar or list replaces
the preset's value; a table (fields, templates, constants, statuses, form, id_map) is merged key by key, so
`[sources.mapping.fields] url = "link"` changes only the url. `format = "preset:NAME"` is the short form of
`format = "mapping"` with `preset = "NAME"`.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

MERGED_TABLES = ("fields", "templates", "constants", "statuses", "form", "id_map")


def names() -> tuple[str, ...]:
    """Every shipped preset, sorted."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")))


@cache
def load(name: str) -> dict[str, Any]:
    """The preset's mapping table (parsed once). ValueError names the shipped presets for an unknown name."""
    if not isinstance(name, str) or name not in names():
        raise ValueError(f"unknown preset {name!r} (shipped: {', '.join(names())})")
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)["mapping"]
    assert isinstance(table, dict)
    return table


def merged(name: object, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's table with `overrides` (the source's own mapping table, `preset` key included) on top."""
    if not isinstance(name, str):
        raise ValueError(f"expected a preset name, got {type(name).__name__}")
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in load(name).items()}
    for key, value in overrides.items():
        if key in MERGED_TABLES and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = out[key] | value
        else:
            out[key] = value
    return out

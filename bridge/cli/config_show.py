"""Showing a loaded configuration: JSON-able summary and a readable one, secrets masked; `check-config`.

Why it exists: operators need to see what bridge will run with (`bridge check-config`, the admin API)
without any secret leaking. Every `Secret`, however deeply nested (native source keys included), is
rendered with `Secret.masked()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.config import Config, StatusStyle, load
from bridge.errors import ConfigError
from bridge.secret import Secret

__all__ = ["describe", "plain", "run_check_cli", "summary"]


def plain(value: Any) -> Any:
    """A JSON-able copy of a config value; every Secret is masked."""
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        if names == ["text", "steps"]:  # bridge.mapping.Path: its text is what the user wrote
            return value.text  # type: ignore[attr-defined]
        if names == ["name", "source", "parts"]:  # bridge.templating.Template: as the user wrote it
            return value.source  # type: ignore[attr-defined]
        return {n: plain(getattr(value, n)) for n in names}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def summary(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = plain(cfg)
    out["path"] = str(cfg.path) if cfg.path is not None else None
    out["dingtalk"]["apps"] = plain(cfg.dingtalk.all_apps)  # the single [dingtalk] app too, named "default"
    return out


def describe(cfg: Config, colour: bool = False) -> str:
    """A short human-readable summary, secrets masked; each status with its label on its colour (on a terminal)."""
    from bridge.cli.present import Style

    style = Style(colour)
    s, d = cfg.server, cfg.dingtalk
    token = s.admin_token.masked() if s.admin_token else "not set (admin API disabled)"
    lines = [
        f"configuration {cfg.path or '(built in)'} is valid",
        f"  server    http://{s.host}:{s.port}  max body {s.max_body_bytes} bytes  admin token {token}",
        f"  storage   {cfg.storage.path}  (synchronous={cfg.storage.synchronous})",
        *(f"  dingtalk  {a.name}{' (default)' if a.default and len(d.all_apps) > 1 else ''}  {a.base_url}  "
          f"app_key {a.app_key}  app_secret {a.app_secret.masked()}  agent_id {a.agent_id}  qps {a.qps:g}"
          for a in d.all_apps),
        f"  card      on_revoked={cfg.card.on_revoked}   worker concurrency={cfg.worker.concurrency}",
        "  statuses  " + "   ".join(f"{name} {style.bar(st.label, st.color)}" for name, st in _statuses(cfg)),
        f"  sources   {len(cfg.sources)}",
    ]
    for src in cfg.sources:
        secrets = ", ".join(x.masked() for x in src.secrets) or "-"
        lines.append(f"    /webhooks/{src.name:<20} format={src.format:<9} signature={src.signature:<17} "
                     f"app={cfg.app_of(src.name)}  card={'template' if src.card else 'as sent'}  secrets: {secrets}")
    return "\n".join(lines)


def _statuses(cfg: Config) -> list[tuple[str, StatusStyle]]:
    st = cfg.statuses
    return [("pending", st.pending), ("approved", st.approved), ("rejected", st.rejected), ("revoked", st.revoked)]


def run_check_cli(args: argparse.Namespace) -> int:
    """Exit 0 and the summary; or every problem found, one `error:` line each, and exit 2."""
    from bridge.cli.common import colour_wanted

    path = Path(args.config)
    if not path.is_file():
        print(f"error: configuration file {str(path)!r} not found (start from config.example.toml)", file=sys.stderr)
        return 2
    try:
        cfg = load(path)
    except ConfigError as exc:
        for message in exc.messages:
            print(f"error: {message}", file=sys.stderr)
        if len(exc.messages) > 1:
            print(f"{len(exc.messages)} problems in {path}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(summary(cfg), ensure_ascii=False, indent=2))
    else:
        print(describe(cfg, colour=colour_wanted()))
    return 0

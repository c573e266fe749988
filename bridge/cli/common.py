"""What every `bridge` subcommand shares: its two kinds of failure, loading the configuration, opening the store
and printing JSON.

Why it exists: the exit-code contract (0 success, 1 the operation failed, 2 bad usage or configuration) is kept
in one place: a command raises `UsageError` or `Failed` with a one-line message and `bridge.cli.main` prints it
as ``error: ...`` and exits with the code. No command prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.cli.present import Style
    from bridge.config import Config, SourceConfig
    from bridge.store import Store

SANDBOX_DB = "bridge-sandbox.db"
SANDBOX_PORT = 8080
DEFAULT_SIM_PORT = 8789
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure the user sees as one ``error: ...`` line per message, and an exit code."""

    code = EXIT_FAILED

    def __init__(self, *messages: str) -> None:
        super().__init__(messages[0] if messages else "failed")
        self.messages: tuple[str, ...] = messages or ("failed",)


class UsageError(CliError):
    """Bad arguments or configuration (an unreadable FILE argument included): exit 2."""

    code = EXIT_USAGE


class Failed(CliError):
    """The operation was tried and failed (not found, refused, unreachable): exit 1."""

    code = EXIT_FAILED


def config_errors(exc: Exception) -> tuple[str, ...]:
    """Every message of a ConfigError (it may carry several: `check-config` reports them all at once)."""
    return tuple(getattr(exc, "messages", ()) or (str(exc),))


def load_config(args: argparse.Namespace) -> Config:
    """The configuration the command line asks for: --sandbox's built-in one or a TOML file, with --host,
    --port and --db applied. Raises UsageError naming every problem."""
    from bridge import config, errors

    if getattr(args, "sandbox", False):
        cfg = config.sandbox(f"http://127.0.0.1:{getattr(args, 'sim_port', DEFAULT_SIM_PORT)}", SANDBOX_DB)
    else:
        path = Path(args.config or "bridge.toml")
        if not path.exists():
            hint = " (or use --sandbox for the built-in demo set-up)" if args.config is None else ""
            raise UsageError(f"configuration file {str(path)!r} not found{hint}")
        try:
            cfg = config.load(path)
        except errors.ConfigError as exc:
            raise UsageError(*config_errors(exc)) from None
    if getattr(args, "host", None) or getattr(args, "port", None) is not None:
        try:
            cfg = config.override_server(cfg, host=getattr(args, "host", None), port=getattr(args, "port", None))
        except errors.ConfigError as exc:
            raise UsageError(*config_errors(exc)) from None
    if getattr(args, "db", None):
        cfg = replace(cfg, storage=replace(cfg.storage, path=args.db))
    return cfg


def source(cfg: Config, name: str) -> SourceConfig:
    found = cfg.source(name)
    if found is None:
        known = ", ".join(s.name for s in cfg.sources) or "none"
        raise UsageError(f"no source named {name!r} in the configuration (configured: {known})")
    return found


def open_store(cfg: Config) -> Store:
    """The configured store (SQLite file or PostgreSQL), not opened yet."""
    from bridge import errors
    from bridge.store import open_store as open_configured

    try:
        return open_configured(cfg.storage)
    except errors.ConfigError as exc:  # a PostgreSQL url without its driver installed
        raise UsageError(*config_errors(exc)) from None


def read_input(name: str) -> bytes:
    """A FILE argument's bytes (``-`` is stdin); a file that cannot be read is a usage error, in one line."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name!r}: {exc.strerror or type(exc).__name__}") from None


def colour_wanted(stream: Any = None, *, json_output: bool = False) -> bool:
    """Colour only on a terminal, never for JSON, and never when NO_COLOR is set to anything (no-color.org)."""
    stream = stream if stream is not None else sys.stdout
    if json_output or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def style(args: argparse.Namespace) -> Style:
    from bridge.cli import present

    return present.Style(colour=colour_wanted(json_output=getattr(args, "json", False)),
                         utc=getattr(args, "utc", False))


def print_json(data: Any) -> None:
    """UTF-8 JSON as it is (Chinese stays Chinese), indented for people."""
    print(json.dumps(data, ensure_ascii=False, indent=2))

"""The `bridge` command line: argument parsing and dispatch.

Each subcommand's work lives in `bridge.commands`. Exit codes: 0 success, 1 the operation failed, 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.cli import commands
from bridge.cli import map as map_command
from bridge.records import JobState


# --- parser ---------------------------------------------------------------------------------------------
def _config_args(p: argparse.ArgumentParser, sandbox: bool = True) -> None:
    p.add_argument("--config", default=None, metavar="PATH", help="TOML configuration (default: bridge.toml)")
    if sandbox:
        p.add_argument("--sandbox", action="store_true",
                       help=f"use the built-in sandbox configuration ({commands.SANDBOX_DB}, source 'demo')")
        p.add_argument("--sim-port", type=int, default=commands.DEFAULT_SIM_PORT, help=argparse.SUPPRESS)


def _log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                   help="log format (default: console on a terminal, JSON lines otherwise)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Keeps DingTalk work-notification cards in step with approvals in other systems."
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the webhook receiver and the worker")
    _config_args(p)
    p.add_argument("--host", default=None, help="listen address (overrides [server] host)")
    p.add_argument("--port", type=int, default=None, help="listen port (overrides [server] port)")
    p.add_argument("--db", default=None, help="SQLite file (overrides [storage] path)")
    p.add_argument("--role", choices=["all", "receiver", "worker"], default="all",
                   help="receiver: verify, store and answer webhooks; worker: decide and deliver; all: both "
                        "(default). Several processes in any mix need PostgreSQL storage")
    _log_args(p)
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser("migrate", help="create or upgrade the storage schema (serve also does it on start)")
    _config_args(p, sandbox=False)
    p.add_argument("--db", default=None, help="SQLite file (overrides [storage] path)")
    p.set_defaults(func=commands.cmd_migrate)

    p = sub.add_parser("simulator", help="run the local DingTalk simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=commands.DEFAULT_SIM_PORT)
    p.add_argument("--status-bar-violation", choices=["ignore", "error"], default=None,
                   help="what to do with an OA status bar on a send to more than 5 userids")
    _log_args(p)
    p.set_defaults(func=commands.cmd_simulator)

    p = sub.add_parser("check-config", help="validate a configuration file and print a summary")
    p.add_argument("--config", default=None, metavar="PATH", help="TOML configuration (default: bridge.toml)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=commands.cmd_check_config)

    p = sub.add_parser("send", help="sign a JSON (or XML) file with a source's scheme and post it")
    _config_args(p)
    p.add_argument("--source", required=True)
    p.add_argument("--url", default=None, help="webhook URL (default: this configuration's server)")
    p.add_argument("file", help="the payload file, or - for stdin")
    p.set_defaults(func=commands.cmd_send)

    p = sub.add_parser("status", help="show an approval: cards, delivery, jobs and history")
    _config_args(p)
    p.add_argument("source")
    p.add_argument("approval_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_status)

    p = sub.add_parser("jobs", help="list jobs")
    _config_args(p)
    p.add_argument("--dead", action="store_true", help="only dead (dead-lettered) jobs")
    p.add_argument("--state", choices=[s.value for s in JobState], default=None)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_jobs)

    p = sub.add_parser("retry", help="put a dead job (or all dead jobs) back in the queue")
    _config_args(p)
    p.add_argument("job_id", nargs="?", type=int)
    p.add_argument("--all-dead", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_retry)

    p = sub.add_parser("recall", help="recall every card of an approval")
    _config_args(p)
    p.add_argument("source")
    p.add_argument("approval_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_recall)

    p = sub.add_parser("tail", help="show what bridge does, from storage (works from another terminal)")
    _config_args(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    p.add_argument("--source", default=None)
    p.add_argument("--lines", "-n", type=int, default=20, help="start with the last N lines (default 20)")
    p.add_argument("--all", action="store_true", help="start from the very first line")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.cmd_tail)

    p = sub.add_parser("ingest", help="read events as JSON lines from a file or stdin")
    _config_args(p)
    p.add_argument("--source", required=True)
    p.add_argument("--follow", "-f", action="store_true", help="keep reading lines appended to the file")
    p.add_argument("--progress-every", type=int, default=10000, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.add_argument("file", help="a JSON-lines file, or - for stdin")
    p.set_defaults(func=commands.cmd_ingest)

    map_command.add_parser(sub, _config_args)

    p = sub.add_parser("demo", help="run one approval through its whole life against the built-in simulator")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                   help="bridge's own log lines (default: warnings only, so the story stays readable)")
    p.set_defaults(func=commands.cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)  # a usage error: exit 2, and keep stdout clean for scripts
        return 2
    try:
        return int(args.func(args) or 0)
    except commands.UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

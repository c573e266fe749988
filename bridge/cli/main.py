"""The `bridge` command line (also installed as `dingbridge`, and `python -m bridge`): parsing and dispatch.

Each subcommand's work lives in `bridge.cli.commands`. Exit codes: 0 success, 1 the operation failed, 2 bad
usage or configuration; every error is one ``error: ...`` line on stderr, never a traceback. This module
imports nothing heavy, so `bridge --help` starts fast; display libraries are imported by the commands that
draw.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from bridge import __version__
from bridge.cli import commands, common, pipes
from bridge.cli import map as map_command
from bridge.cli import render as render_command
from bridge.cli.helptext import EXAMPLES, SUMMARIES
from bridge.records import JobState

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

LOG_LEVELS = ["debug", "info", "warning", "error"]


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions and examples as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(120, _columns()))


def _columns() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``bridge jobs: error: ... (see bridge jobs --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        if "--sandbox" in message and "--config" in message:
            message = ("--sandbox is the built-in demo set-up (its own port, storage and source) and replaces a "
                       "configuration file: give --sandbox or --config, not both")
        self.exit(common.EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """argparse swallows an OSError from writing --help or --version, so into a closed pipe they would end
        with 0 or 141 depending on buffering; on stdout let it through, and `main` ends with 141 every time."""
        if file is sys.stdout and message:
            file.write(message)
        else:
            super()._print_message(message, file)


# --- shared options -------------------------------------------------------------------------------------
def _config_args(p: argparse.ArgumentParser, sandbox: bool = True) -> None:
    where = p.add_mutually_exclusive_group() if sandbox else p
    where.add_argument("--config", default=None, metavar="PATH",
                       help="TOML configuration (default: bridge.toml in the current directory)")
    if sandbox:
        where.add_argument(
            "--sandbox", action="store_true",
            help=f"the built-in demo set-up instead of a file: bridge on 127.0.0.1:{common.SANDBOX_PORT}, the "
                 f"simulator on 127.0.0.1:{common.DEFAULT_SIM_PORT} (--sim-port), storage {common.SANDBOX_DB}, "
                 "source 'demo'; cannot be combined with --config")
        p.add_argument("--sim-port", type=int, default=common.DEFAULT_SIM_PORT, metavar="N",
                       help=f"with --sandbox: the simulator's port (default: {common.DEFAULT_SIM_PORT})")


def _log_args(p: argparse.ArgumentParser, default: str = "info") -> None:
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                   help="log format (default: auto = console on a terminal, JSON lines otherwise)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=default, help=f"lowest level logged (default: {default})")


def _json_arg(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as UTF-8 JSON instead of text (default: text)")


def _utc_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--utc", action="store_true",
                   help="show times in UTC (default: the local time zone, or TZ, with its offset)")


def _command(sub: argparse._SubParsersAction[Parser], name: str, func: Callable[[argparse.Namespace], int]
             ) -> argparse.ArgumentParser:
    """A subcommand with its one-line summary, a description and a worked example in --help."""
    summary = SUMMARIES[name]
    p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                       epilog="examples:\n" + EXAMPLES[name], formatter_class=Formatter)
    p.set_defaults(func=func)
    return p


def _describe(p: argparse.ArgumentParser, name: str) -> None:
    """Give a subcommand registered elsewhere (`bridge map`) the same description and examples as the rest."""
    summary = SUMMARIES[name]
    p.description = summary[0].upper() + summary[1:] + "."
    p.epilog = "examples:\n" + EXAMPLES[name]
    p.formatter_class = Formatter


# --- parser ---------------------------------------------------------------------------------------------
def build_parser(prog: str = "bridge") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog, formatter_class=Formatter,
        description="Keeps DingTalk work-notification cards in step with approvals in other systems.",
        epilog="Run `%(prog)s COMMAND --help` for a command's options and examples.\n"
               "Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.\n\n"
               "examples:\n" + EXAMPLES["bridge"],
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, title="commands")

    p = _command(sub, "serve", commands.cmd_serve)
    _config_args(p)
    p.add_argument("--host", default=None, help="listen address (default: [server] host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, metavar="N", help="listen port (default: [server] port, 8080)")
    p.add_argument("--db", default=None, metavar="FILE", help="SQLite file (default: [storage] path)")
    p.add_argument("--role", choices=["all", "receiver", "worker"], default="all",
                   help="receiver: verify, store and answer webhooks; worker: decide and deliver; all: both "
                        "(default: all). Several processes in any mix need PostgreSQL storage")
    _log_args(p)

    p = _command(sub, "migrate", commands.cmd_migrate)
    _config_args(p, sandbox=False)
    p.add_argument("--db", default=None, metavar="FILE", help="SQLite file (default: [storage] path)")

    p = _command(sub, "simulator", commands.cmd_simulator)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=common.DEFAULT_SIM_PORT, metavar="N",
                   help=f"listen port (default: {common.DEFAULT_SIM_PORT})")
    p.add_argument("--status-bar-violation", choices=["ignore", "error"], default=None,
                   help="an OA status bar on a send to more than 5 userids: ignore it as DingTalk does, or "
                        "answer an error (default: ignore)")
    p.add_argument("--app", action="append", metavar="KEY:SECRET:AGENT",
                   help="an app the simulator accepts (repeatable; default: the demo app)")
    p.add_argument("--user", action="append", metavar="USERID:MOBILE[:UNIONID]",
                   help="an employee getbymobile / getbyunionid know (repeatable; default: the demo directory)")
    p.add_argument("--directory", metavar="FILE",
                   help='the employees from a JSON file {"employees": [{"userid", "mobile", "unionid"}]} '
                        "(default: the demo directory)")
    p.add_argument("--qps", type=int, default=None, metavar="N",
                   help="calls per app per endpoint per second before answering 90018 (default: 20, DingTalk's)")
    p.add_argument("--token-ttl", type=float, default=None, metavar="S",
                   help="access token lifetime in seconds (default: 7200; short ones exercise refreshing)")
    _log_args(p)

    p = _command(sub, "check-config", commands.cmd_check_config)
    _config_args(p, sandbox=False)
    _json_arg(p, "the summary")

    p = _command(sub, "gen-secret", commands.cmd_gen_secret)
    p.add_argument("--bytes", type=int, default=32, metavar="N",
                   help="random bytes in the webhook secret (default: 32)")
    p.add_argument("--admin-token", action="store_true",
                   help="print a random [server] admin_token instead (43 URL-safe characters)")

    p = _command(sub, "send", commands.cmd_send)
    _config_args(p)
    p.add_argument("--source", required=True, help="the configured source whose signature scheme signs FILE "
                                                    "(required)")
    p.add_argument("--url", default=None, help="webhook URL (default: this configuration's server and "
                                               "/webhooks/SOURCE)")
    p.add_argument("file", metavar="FILE", help="the payload file, or - for stdin")

    p = _command(sub, "status", commands.cmd_status)
    _config_args(p)
    p.add_argument("source", metavar="SOURCE", nargs="?", default=None,
                   help="the source the approval came from (without SOURCE and APPROVAL_ID: each DingTalk app's "
                        "figures, from the running bridge's admin API)")
    p.add_argument("approval_id", metavar="APPROVAL_ID", nargs="?", default=None,
                   help="the approval's id in that source")
    p.add_argument("--url", default=None, help="the running bridge's admin API base URL, for the per-app figures "
                                               "(default: from this configuration)")
    _json_arg(p, "the approval")
    _utc_arg(p)

    p = _command(sub, "jobs", commands.cmd_jobs)
    _config_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--dead", action="store_true", help="only dead (dead-lettered) jobs; same as --state dead")
    which.add_argument("--state", choices=[s.value for s in JobState], default=None,
                       help="only jobs in this state (default: pending, running and dead)")
    which.add_argument("--all", action="store_true", help="every job, done ones included")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N jobs, newest first (default: 100)")
    _json_arg(p, "the jobs")
    _utc_arg(p)

    p = _command(sub, "retry", commands.cmd_retry)
    _config_args(p)
    p.add_argument("job_id", nargs="?", type=int, metavar="JOB_ID", help="the dead job to retry")
    p.add_argument("--all-dead", action="store_true", help="retry every dead job instead of one (default: off)")
    _json_arg(p)

    p = _command(sub, "recall", commands.cmd_recall)
    _config_args(p)
    p.add_argument("source", metavar="SOURCE", help="the source the approval came from")
    p.add_argument("approval_id", metavar="APPROVAL_ID", help="the approval's id in that source")
    _json_arg(p)

    p = _command(sub, "tail", commands.cmd_tail)
    _config_args(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument("--source", default=None, help="only lines about this source (default: every source)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--lines", "-n", type=int, default=20, metavar="N",
                       help="start with the last N lines; 0 prints none, so -n 0 -f shows only new ones (default: 20)")
    start.add_argument("--all", action="store_true", help="start from the very first line")
    p.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help="with --follow: seconds between looks at the storage when idle (default: 0.5)")
    _json_arg(p, "each line")
    _utc_arg(p)

    p = _command(sub, "ingest", commands.cmd_ingest)
    _config_args(p)
    p.add_argument("--source", required=True, help="the configured (canonical or mapping) source the lines come "
                                                    "from (required)")
    p.add_argument("--follow", "-f", action="store_true", help="keep reading lines appended to the file")
    p.add_argument("--progress-every", type=int, default=None, metavar="N",
                   help="also print a progress line every N lines (default: a bar on a terminal, else only "
                        "the summary)")
    _json_arg(p, "the summary")
    p.add_argument("file", metavar="FILE", help="a JSON-lines file, or - for stdin")

    map_command.add_parser(sub, _config_args)
    _describe(sub.choices["map"], "map")
    render_command.add_parser(sub, _config_args)
    _describe(sub.choices["render"], "render")

    p = _command(sub, "demo", commands.cmd_demo)
    p.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                   help="bridge's own log lines (default: warning, so the story stays readable)")

    p = _command(sub, "completion", commands.cmd_completion)
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete for")
    p.add_argument("--prog", default="bridge", choices=["bridge", "dingbridge"],
                   help="the command name to complete (default: bridge)")
    p.set_defaults(build_parser=build_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a reader that closed stdout early ends it quietly with 141 (see bridge.cli.pipes)."""
    try:
        try:
            code = _dispatch(argv)
        except SystemExit:  # argparse's --help, --version and usage errors: their output is written here too
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        if not pipes.stdout_closed():
            raise
        return pipes.end_quietly()


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser(os.path.basename(sys.argv[0]) if argv is None and _is_script() else "bridge")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)  # a usage error: exit 2, and keep stdout clean for scripts
        return common.EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except common.CliError as exc:
        for message in exc.messages:
            print(f"error: {message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if pipes.stdout_closed():
            raise  # the reader went away: main ends quietly
        return _failed(exc)  # a socket's or a child's pipe: a real failure
    except Exception as exc:  # the last line of defence: one line, not a traceback
        return _failed(exc)


def _failed(exc: Exception) -> int:
    if os.environ.get("BRIDGE_DEBUG"):
        raise exc
    print(f"error: {type(exc).__name__}: {exc} (BRIDGE_DEBUG=1 shows the traceback)", file=sys.stderr)
    return common.EXIT_FAILED


def _is_script() -> bool:
    """True when run as `bridge` or `dingbridge` (not `python -m bridge`, whose argv[0] is a path to a .py)."""
    return os.path.basename(sys.argv[0]) in ("bridge", "dingbridge")


if __name__ == "__main__":
    sys.exit(main())

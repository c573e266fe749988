"""The `bridge` command line.

Each subcommand parses its arguments here and calls one function elsewhere; nothing else lives here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge import __version__


def _cmd_simulator(args: argparse.Namespace) -> int:
    from bridge import simulator

    return simulator.run_cli(args)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from bridge import config

    return config.run_check_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("simulator", help="run the local DingTalk simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8789)
    p.add_argument("--status-bar-violation", choices=["ignore", "error"], default=None,
                   help="what to do with an OA status bar on a send to more than 5 userids")
    p.set_defaults(func=_cmd_simulator)

    p = sub.add_parser("check-config", help="validate a configuration file and print a summary")
    p.add_argument("--config", default="bridge.toml", help="path to the TOML file (default: bridge.toml)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

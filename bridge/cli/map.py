"""`bridge map --source NAME payload.json [--header K:V]`: the canonical event a payload becomes, offline.

Why it exists: developing a `[sources.mapping]` table (or checking a preset against a real payload) by sending
webhooks means a running bridge, signatures and a store for every try. `bridge map` runs exactly the
receiver's parsing and mapping (the same `normalise`, headers included, so `event_id_header` works) on a file
and prints the event as JSON, or every problem with the payload, named by the sender's own paths, and exits 1.
Signatures are not checked and nothing is stored or sent. A first event without card data (title,
recipients, url) would be refused by the receiver unless an earlier event stored them: that is printed as a
warning naming the path that matched nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bridge import errors, events
from bridge.clock import SystemClock
from bridge.config import SourceConfig
from bridge.sources import intake, signatures

P = TypeVar("P", bound=argparse.ArgumentParser)  # bridge.cli.main's parser class


def add_parser(sub: argparse._SubParsersAction[P], config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `map` on the subcommand parser (`config_args` adds --config / --sandbox like the others)."""
    p = sub.add_parser("map", help="show the canonical event a payload becomes (or every problem with it)")
    config_args(p)
    p.add_argument("--source", required=True, help="a mapped (or canonical) source of the configuration")
    p.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="a request header, as the sender would send it (repeatable), e.g. X-GitHub-Delivery:abc "
                        "(default: none)")
    p.add_argument("--json", action="store_true", help="print problems as the receiver's 400 body (JSON)")
    p.add_argument("file", help="the payload (JSON) file, or - for stdin")
    p.set_defaults(func=cmd_map)


def parse_headers(items: list[str]) -> dict[str, str]:
    """`K:V` strings as a header dict; ValueError names a malformed one."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ValueError(f"--header {item!r}: expected NAME:VALUE, like X-GitHub-Delivery:72d3162e")
        headers[name.strip()] = value.strip()
    return headers


def map_payload(
    source: SourceConfig, raw: bytes, headers: dict[str, str]
) -> tuple[events.ApprovalEvent, list[errors.Problem]]:
    """The event and the card-data warnings for a first event; raises InputError like the receiver."""
    webhook_id = signatures.delivery_id(headers)
    # the receiver's own decoder; `now` matters to native sources only, which `bridge map` refuses
    event = intake.decode(source, raw, SystemClock().now(), headers=headers, webhook_id=webhook_id).event
    assert event is not None  # only native handshakes carry no event
    warnings = [] if event.has_card_data or event.status in (None, events.Status.DELETED) else \
        events.missing_card_fields(event)  # fmt: skip
    return event, warnings


def cmd_map(args: argparse.Namespace) -> int:
    from bridge.cli import commands

    cfg = commands._load_config(args)
    source = commands._source(cfg, args.source)
    if source.format not in ("mapping", "canonical"):
        raise commands.UsageError(f"source {source.name!r} is a native {source.format} callback (encrypted, "
                                  "with its own handshake); bridge map shows mapped and canonical sources")
    try:
        headers = parse_headers(args.header)
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except (ValueError, OSError) as exc:
        raise commands.UsageError(str(exc)) from None
    try:
        event, warnings = map_payload(source, raw, headers)
    except errors.InputError as exc:
        if args.json:
            print(json.dumps(exc.as_dict(), ensure_ascii=False, indent=2))
        else:
            print(f"error: {exc.message}", file=sys.stderr)
            for p in exc.problems:
                print(f"  {p.field}: {p.message}", file=sys.stderr)
        return 1
    print(json.dumps(event.to_dict(), ensure_ascii=False, indent=2))
    for p in warnings:
        print(f"warning: as the first event of approval {event.approval_id!r} this would be refused: "
              f"{p.field}: {p.message}", file=sys.stderr)
    return 0

"""`bridge render --source NAME event.json`: the card a source's event would send, offline.

Why it exists: writing a card template (`[sources.card]`, docs/cards.md) by sending webhooks and looking at a
phone is slow. This decodes the file exactly as the receiver would (canonical or mapped: `bridge map`'s
decoder; for a native DingTalk or Feishu source the callback's decrypted JSON, through the platform's own
normaliser, the one HTTP push and Stream mode use), makes the card with the decision's own function
(bridge.decide.card_message: the source's template, the approval reference row, the 2048-byte fit) and
prints the OA `msg` as JSON, byte for byte what would be sent. On a terminal it first draws the card as
text: head, title, form rows, figure, content, author, status bar and links. Nothing is stored or sent.
Every problem is one `error:` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from bridge import errors, events
from bridge.cli import common
from bridge.cli import map as map_command
from bridge.clock import SystemClock

if TYPE_CHECKING:
    from bridge.cli.present import Style
    from bridge.config import SourceConfig

P = TypeVar("P", bound=argparse.ArgumentParser)  # bridge.cli.main's parser class
STATES = ("pending", "approved", "rejected", "revoked")
NATIVE_JSON = ("dingtalk", "feishu")  # native formats whose decrypted callback is JSON


def add_parser(sub: argparse._SubParsersAction[P], config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `render` on the subcommand parser (`config_args` adds --config / --sandbox like the others)."""
    p = sub.add_parser("render", help="print the card an event would send (JSON; drawn as text on a terminal)")
    config_args(p)
    p.add_argument("--source", required=True, help="a canonical or mapped source of the configuration")
    p.add_argument("--status", choices=STATES, default=None,
                   help="the state the card shows (default: the event's status, or pending)")
    p.add_argument("--generation", type=int, default=1, metavar="N",
                   help="the card's generation: 2+ is a resubmission, with its （第 N 次提交） line (default: 1)")
    p.add_argument("--header", action="append", default=[], metavar="K:V",
                   help="a request header, as the sender would send it (repeatable; default: none)")
    p.add_argument("file", help="the event (JSON, in the source's format) file, or - for stdin")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from bridge import decide, service  # not at import: `bridge --help` stays fast
    from bridge.cli import present

    cfg = common.load_config(args)
    source = common.source(cfg, args.source)
    if source.format not in ("mapping", "canonical", *NATIVE_JSON):
        raise common.UsageError(f"source {source.name!r} is a native {source.format} callback (XML); bridge render "
                                f"reads canonical and mapped events and decrypted {' / '.join(NATIVE_JSON)} JSON")
    if args.generation < 1:
        raise common.UsageError(f"--generation must be at least 1, got {args.generation}")
    try:
        headers = map_command.parse_headers(args.header)
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None
    raw = common.read_input(args.file)
    try:
        event = _native(source, raw) if source.format in NATIVE_JSON else map_command.map_payload(source, raw,
                                                                                                  headers)[0]
    except errors.InputError as exc:
        first = f": {exc.problems[0].field}: {exc.problems[0].message}" if exc.problems else ""
        extra = len(exc.problems) - 1
        more = f" (and {extra} more problems; bridge map shows them all)" if extra > 0 else ""
        raise common.UsageError(f"{args.file}: {exc.message}{first}{more}") from None
    status = args.status or (event.status if event.status not in (None, events.Status.DELETED) else "pending")
    card = decide.merge_card({}, event)
    try:
        rendered = decide.card_message(service.policy_for(cfg), card, event, status, args.generation)
    except errors.MessageInvalid as exc:
        raise common.UsageError(f"{args.file}: no card can be made: {exc}") from None
    if sys.stdout.isatty():
        print(draw(rendered.msg, present.Style(common.colour_wanted())))
        print()
    print(json.dumps(rendered.msg, ensure_ascii=False, indent=2))
    if rendered.cut:
        print(f"warning: the card was too long for DingTalk and was shortened: {', '.join(rendered.cut)}",
              file=sys.stderr)
    return 0


def _native(source: SourceConfig, raw: bytes) -> events.ApprovalEvent:
    """A decrypted DingTalk or Feishu callback (its JSON, as the platform's log or Stream frame shows it)."""
    from bridge.sources.native import dingtalk, feishu

    payload = events.parse_json(raw)
    if not isinstance(payload, dict) or source.native is None:
        raise errors.MalformedPayload("expected the decrypted callback: a JSON object")
    now = SystemClock().now()  # only when the callback carries no time of its own
    if source.format == "dingtalk":
        return dingtalk.normalise(source.native, source.name, payload, raw, now)
    return feishu.normalise(source.native, source.name, payload, now)


def draw(msg: dict[str, Any], style: Style) -> str:
    """An OA `msg` drawn as text, top to bottom as DingTalk lays it out (no HTML, no colour but the bars)."""
    oa = msg.get("oa") or {}
    head, body, bar = oa.get("head") or {}, oa.get("body") or {}, oa.get("status_bar") or {}
    lines = [f"┌ {head.get('text', '')}  (head {head.get('bgcolor', '')})"]
    if body.get("title"):
        lines.append(f"│ {body['title']}")
    for row in body.get("form") or ():
        lines.append(f"│   {row.get('key')}：{row.get('value')}")
    rich = body.get("rich") or {}
    if rich:
        lines.append(f"│   {rich.get('num', '')} {rich.get('unit', '')}".rstrip())
    for line in str(body.get("content") or "").splitlines():
        lines.append(f"│ {line}")
    if body.get("image"):
        lines.append(f"│ [image {body['image']}]")
    if body.get("author"):
        lines.append(f"│ {body['author']}")
    lines.append(f"└ status bar: {style.bar(bar.get('status_value'), bar.get('status_bg'))}")
    lines.append(f"  message_url:    {oa.get('message_url', '')}")
    if oa.get("pc_message_url"):
        lines.append(f"  pc_message_url: {oa['pc_message_url']}")
    return "\n".join(lines)

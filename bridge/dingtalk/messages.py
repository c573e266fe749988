"""Builders and validation for the `msg` object of DingTalk work notifications (pure, no I/O).

DingTalk accepts a `msg` it cannot display and tells nobody: a bad colour turns the status bar black, a
message over 2048 bytes or a missing field fails the send with a vague code. So every `msg` bridge sends is
built here (snake_case keys except `link`, which DingTalk spells in camelCase; optional keys left out rather
than sent empty; colours normalised) and checked by `validate()` before it leaves the process. Every error
names the field and the limit, so a dead-lettered job says exactly what to fix.

Limits enforced (reference: dingtalk-work-notice-api.md §2.1): the whole `msg` at most 2048 bytes of compact
UTF-8 JSON; `oa.head.bgcolor` 8 hex digits without `0x`; `oa.status_bar.status_bg` `0x` + 8 hex digits;
`oa.head.text` at most 10 characters; `action_card.title` 64, `single_title` 20, `single_url` 500, button
titles 20, button `action_url` 700, `btn_json_list` 1000 characters in total; `markdown.text` 5000
characters; all four `link` fields required. `oa.body.form` may hold more than 6 entries: DingTalk shows the
first 6 and hides the rest, so that is allowed here (a renderer that wants everything visible must trim).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bridge.errors import MessageInvalid

MAX_MSG_BYTES = 2048
OA_HEAD_TEXT_MAX = 10
OA_FORM_VISIBLE = 6  # DingTalk shows this many form rows and hides the rest (not an error)
ACTION_CARD_TITLE_MAX = 64
ACTION_CARD_SINGLE_TITLE_MAX = 20
ACTION_CARD_SINGLE_URL_MAX = 500
ACTION_CARD_BUTTON_TITLE_MAX = 20
ACTION_CARD_ACTION_URL_MAX = 700
ACTION_CARD_BUTTONS_MAX_CHARS = 1000
MARKDOWN_TEXT_MAX = 5000
VOICE_DURATION_MAX = 60

MSGTYPES = ("text", "image", "voice", "file", "link", "oa", "markdown", "action_card")

_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")


# --- colours ------------------------------------------------------------------------------------------


def normalise_head_bgcolor(value: str, field: str = "oa.head.bgcolor") -> str:
    """`oa.head.bgcolor` as DingTalk wants it: 8 hex digits (ARGB), no `0x`. Accepts `0xFFBBBBBB` too."""
    raw = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else value
    if not isinstance(raw, str) or not _HEX8.fullmatch(raw):
        raise MessageInvalid(f"msg.{field} must be 8 hex digits (ARGB, e.g. FFBBBBBB); got {value!r}")
    return raw.upper()


def normalise_status_bg(value: str, field: str = "oa.status_bar.status_bg") -> str:
    """`oa.status_bar.status_bg` as DingTalk wants it: `0x` + 8 hex digits. Accepts `FF78C06E` too."""
    raw = value[2:] if isinstance(value, str) and value[:2] in ("0x", "0X") else value
    if not isinstance(raw, str) or not _HEX8.fullmatch(raw):
        raise MessageInvalid(f"msg.{field} must be 0x + 8 hex digits (e.g. 0xFF78C06E); got {value!r}")
    return "0x" + raw.upper()


# --- builders -----------------------------------------------------------------------------------------


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` unless the value is None or an empty string: DingTalk wants absent keys, not empty ones."""
    if value is None or value == "":
        return
    target[key] = value


def oa(
    *,
    message_url: str,
    head_bgcolor: str,
    head_text: str,
    pc_message_url: str | None = None,
    status_value: str | None = None,
    status_bg: str | None = None,
    title: str | None = None,
    form: Sequence[tuple[str, str]] = (),
    rich_num: str | None = None,
    rich_unit: str | None = None,
    content: str | None = None,
    image: str | None = None,
    file_count: str | int | None = None,
    author: str | None = None,
) -> dict[str, Any]:
    """An OA card (`msgtype: oa`). Colours are normalised (raises MessageInvalid if malformed); optional
    parts are left out when None. Does not check sizes: call `validate()` on the result."""
    card: dict[str, Any] = {"message_url": message_url}
    _put(card, "pc_message_url", pc_message_url)
    card["head"] = {"bgcolor": normalise_head_bgcolor(head_bgcolor), "text": head_text}
    bar: dict[str, Any] = {}
    _put(bar, "status_value", status_value)
    if status_bg is not None and status_bg != "":
        bar["status_bg"] = normalise_status_bg(status_bg)
    if bar:
        card["status_bar"] = bar
    body: dict[str, Any] = {}
    _put(body, "title", title)
    if form:
        body["form"] = [{"key": str(key), "value": str(value)} for key, value in form]
    rich: dict[str, Any] = {}
    _put(rich, "num", rich_num)
    _put(rich, "unit", rich_unit)
    if rich:
        body["rich"] = rich
    _put(body, "content", content)
    _put(body, "image", image)
    if isinstance(file_count, bool):
        raise MessageInvalid("msg.oa.body.file_count must be a number or a string, not a boolean")
    _put(body, "file_count", None if file_count is None else str(file_count))
    _put(body, "author", author)
    if body:
        card["body"] = body
    return {"msgtype": "oa", "oa": card}


def text(content: str) -> dict[str, Any]:
    """A plain text message (`msgtype: text`)."""
    return {"msgtype": "text", "text": {"content": content}}


def markdown(title: str, text: str) -> dict[str, Any]:
    """A markdown message; `title` is the preview shown in the conversation list."""
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def link(*, message_url: str, pic_url: str, title: str, text: str) -> dict[str, Any]:
    """A link message. DingTalk spells these keys in camelCase (`messageUrl`, `picUrl`)."""
    return {"msgtype": "link", "link": {"messageUrl": message_url, "picUrl": pic_url, "title": title, "text": text}}


def action_card(
    *,
    title: str,
    markdown: str,
    single_title: str | None = None,
    single_url: str | None = None,
    buttons: Sequence[tuple[str, str]] = (),
    btn_orientation: str = "0",
) -> dict[str, Any]:
    """An action card: either one whole-card link (`single_title` + `single_url`) or separate `buttons`
    given as (title, action_url) pairs, stacked vertically (`btn_orientation="0"`) or side by side ("1")."""
    card: dict[str, Any] = {"title": title, "markdown": markdown}
    _put(card, "single_title", single_title)
    _put(card, "single_url", single_url)
    if buttons:
        card["btn_orientation"] = btn_orientation
        card["btn_json_list"] = [{"title": t, "action_url": url} for t, url in buttons]
    return {"msgtype": "action_card", "action_card": card}


# --- validation ---------------------------------------------------------------------------------------


def encoded_size(msg: Mapping[str, Any]) -> int:
    """Bytes of `msg` as DingTalk receives it: compact JSON, non-ASCII kept as UTF-8."""
    return len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class _Checker:
    """Collects every problem in one `msg`, so a single error lists all of them."""

    def __init__(self, msg: Mapping[str, Any], msgtype: str) -> None:
        part = msg.get(msgtype)
        self.part: Mapping[str, Any] = part if isinstance(part, Mapping) else {}
        self.prefix = f"msg.{msgtype}"
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def string(self, path: str, *, required: bool = False, max_chars: int | None = None) -> str | None:
        """Check the string at dotted `path` (relative to the msgtype object); returns it when usable."""
        node: Any = self.part
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        name = f"{self.prefix}.{path}"
        if node is None or node == "":
            if required:
                self.fail(f"{name} is required")
            return None
        if not isinstance(node, str):
            self.fail(f"{name} must be a string, got {type(node).__name__}")
            return None
        if max_chars is not None and len(node) > max_chars:
            self.fail(f"{name} is {len(node)} characters; DingTalk accepts at most {max_chars}")
        return node


def validate(msg: Mapping[str, Any]) -> None:
    """Raise MessageInvalid (naming each field and its limit) unless DingTalk will accept `msg` as is."""
    if not isinstance(msg, Mapping):
        raise MessageInvalid(f"msg must be an object, got {type(msg).__name__}")
    msgtype = msg.get("msgtype")
    if msgtype not in MSGTYPES:
        raise MessageInvalid(f"msg.msgtype must be one of {', '.join(MSGTYPES)}; got {msgtype!r}")
    if not isinstance(msg.get(msgtype), Mapping):
        raise MessageInvalid(f"msg.{msgtype} is required (an object) for msgtype {msgtype!r}")
    c = _Checker(msg, msgtype)
    _CHECKS[msgtype](c)
    size = encoded_size(msg)
    if size > MAX_MSG_BYTES:
        c.fail(f"msg is {size} bytes; DingTalk accepts at most {MAX_MSG_BYTES}")
    if c.problems:
        raise MessageInvalid("; ".join(c.problems))


def _check_text(c: _Checker) -> None:
    c.string("content", required=True)


def _check_media(c: _Checker) -> None:
    c.string("media_id", required=True)


def _check_voice(c: _Checker) -> None:
    c.string("media_id", required=True)
    duration = c.string("duration", required=True)
    if duration is not None and not (duration.isdigit() and 0 < int(duration) < VOICE_DURATION_MAX):
        c.fail(f"{c.prefix}.duration must be a whole number of seconds from 1 to {VOICE_DURATION_MAX - 1}")


def _check_link(c: _Checker) -> None:
    for key in ("messageUrl", "picUrl", "title", "text"):
        c.string(key, required=True)


def _check_markdown(c: _Checker) -> None:
    c.string("title", required=True)
    c.string("text", required=True, max_chars=MARKDOWN_TEXT_MAX)


def _check_action_card(c: _Checker) -> None:
    c.string("title", required=True, max_chars=ACTION_CARD_TITLE_MAX)
    c.string("markdown", required=True)
    single_title = c.string("single_title", max_chars=ACTION_CARD_SINGLE_TITLE_MAX)
    single_url = c.string("single_url", max_chars=ACTION_CARD_SINGLE_URL_MAX)
    buttons = c.part.get("btn_json_list")
    single = single_title is not None or single_url is not None
    if single and (single_title is None or single_url is None):
        c.fail(f"{c.prefix}.single_title and {c.prefix}.single_url must be given together")
    if single and buttons:
        c.fail(f"{c.prefix}: give either single_title/single_url or btn_json_list, not both")
    if not single and not buttons:
        c.fail(f"{c.prefix} needs single_title + single_url or a non-empty btn_json_list")
    if buttons:
        _check_buttons(c, buttons)


def _check_buttons(c: _Checker, buttons: Any) -> None:
    name = f"{c.prefix}.btn_json_list"
    if not isinstance(buttons, list):
        c.fail(f"{name} must be a list of {{title, action_url}} objects")
        return
    orientation = c.part.get("btn_orientation")
    if orientation not in (None, "0", "1"):
        c.fail(f'{c.prefix}.btn_orientation must be "0" (vertical) or "1" (horizontal); got {orientation!r}')
    for i, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            c.fail(f"{name}[{i}] must be an object with title and action_url")
            continue
        for key, limit in (("title", ACTION_CARD_BUTTON_TITLE_MAX), ("action_url", ACTION_CARD_ACTION_URL_MAX)):
            value = button.get(key)
            if not isinstance(value, str) or not value:
                c.fail(f"{name}[{i}].{key} is required (a string)")
            elif len(value) > limit:
                c.fail(f"{name}[{i}].{key} is {len(value)} characters; DingTalk accepts at most {limit}")
    chars = len(json.dumps(buttons, ensure_ascii=False, separators=(",", ":")))
    if chars > ACTION_CARD_BUTTONS_MAX_CHARS:
        c.fail(f"{name} is {chars} characters; DingTalk accepts at most {ACTION_CARD_BUTTONS_MAX_CHARS}")


def _check_oa(c: _Checker) -> None:
    c.string("message_url", required=True)
    c.string("pc_message_url")
    if not isinstance(c.part.get("head"), Mapping):
        c.fail(f"{c.prefix}.head is required (an object with bgcolor and text)")
    else:
        bgcolor = c.string("head.bgcolor", required=True)
        if bgcolor is not None and not _HEX8.fullmatch(bgcolor):
            c.fail(f"{c.prefix}.head.bgcolor must be 8 hex digits without 0x (e.g. FFBBBBBB); got {bgcolor!r}")
        c.string("head.text", required=True, max_chars=OA_HEAD_TEXT_MAX)
    bar = c.part.get("status_bar")
    if bar is not None:
        if not isinstance(bar, Mapping):
            c.fail(f"{c.prefix}.status_bar must be an object")
        else:
            c.string("status_bar.status_value", required=True)
            bg = c.string("status_bar.status_bg")
            if bg is not None and not (bg[:2] == "0x" and _HEX8.fullmatch(bg[2:])):
                c.fail(f"{c.prefix}.status_bar.status_bg must be 0x + 8 hex digits (e.g. 0xFF78C06E); got {bg!r}")
    body = c.part.get("body")
    if body is None:
        return
    if not isinstance(body, Mapping):
        c.fail(f"{c.prefix}.body must be an object")
        return
    for key in ("title", "content", "image", "file_count", "author", "rich.num", "rich.unit"):
        c.string(f"body.{key}")
    form = body.get("form")
    if form is None:
        return
    if not isinstance(form, list):
        c.fail(f"{c.prefix}.body.form must be a list of {{key, value}} objects")
        return
    for i, row in enumerate(form):
        if not (isinstance(row, Mapping) and isinstance(row.get("key"), str) and isinstance(row.get("value"), str)):
            c.fail(f"{c.prefix}.body.form[{i}] must be an object with string key and value")


_CHECKS = {
    "text": _check_text,
    "image": _check_media,
    "file": _check_media,
    "voice": _check_voice,
    "link": _check_link,
    "markdown": _check_markdown,
    "action_card": _check_action_card,
    "oa": _check_oa,
}

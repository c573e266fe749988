"""An OA work-notification card drawn in HTML the way DingTalk shows it (pure: no I/O).

Both faces of bridge use it: the console draws each notice bridge sent, and the simulator's `/_sim/ui` draws
each user's inbox, so an operator and an approver see the same card. The input is the DingTalk `msg` object
exactly as sent (`msgtype` "oa") plus the status bar as it is now, which DingTalk lets bridge change later.
Every value is HTML-escaped here; colours are accepted only as hex digits.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["FORM_ROWS_SHOWN", "css_colour", "oa_card"]

FORM_ROWS_SHOWN = 6  # DingTalk shows the first 6 form rows of an OA card
HEAD_DEFAULT = "#1E7CF7"
BAR_DEFAULT = "#858E99"


def css_colour(value: object, default: str) -> str:
    """A DingTalk colour ("0xFFFF9D46" ARGB, "FF1E7CF7" or "1E7CF7") as CSS "#RRGGBB"; `default` otherwise."""
    digits = str(value or "").strip().upper().removeprefix("0X")
    if not digits or any(c not in string.hexdigits for c in digits):
        return default
    if len(digits) == 8:
        return "#" + digits[2:]
    return "#" + digits if len(digits) == 6 else default


def _text(value: object) -> str:
    return escape(str(value)) if value is not None else ""


def _form(rows: object) -> str:
    if not isinstance(rows, list) or not rows:
        return ""
    items = []
    for row in rows[:FORM_ROWS_SHOWN]:
        if isinstance(row, Mapping):
            key, value = _text(row.get("key")), _text(row.get("value"))
            items.append(f'<div class="oa-row"><dt>{key}</dt><dd>{value}</dd></div>')
    return f'<dl class="oa-form">{"".join(items)}</dl>'


def _rich(rich: object) -> str:
    if not isinstance(rich, Mapping) or not rich.get("num"):
        return ""
    return (f'<p class="oa-rich"><span class="oa-num">{_text(rich.get("num"))}</span>'
            f'<span class="oa-unit">{_text(rich.get("unit") or "")}</span></p>')


def oa_card(
    msg: Mapping[str, Any],
    *,
    status_value: str | None,
    status_bg: str | None,
    recalled: bool = False,
    read: bool | None = None,
    footer: str = "",
) -> str:
    """The card as HTML. `footer` is trusted HTML appended under the card (the caller escapes its parts)."""
    oa = msg.get("oa") if isinstance(msg.get("oa"), Mapping) else {}
    assert isinstance(oa, Mapping)
    head = oa.get("head") if isinstance(oa.get("head"), Mapping) else {}
    body = oa.get("body") if isinstance(oa.get("body"), Mapping) else {}
    assert isinstance(head, Mapping) and isinstance(body, Mapping)
    head_bg = css_colour(head.get("bgcolor"), HEAD_DEFAULT)
    parts = [
        f'<header class="oa-head" style="background:{head_bg}">{_text(head.get("text") or "审批")}</header>',
        '<div class="oa-body">',
        f'<h3 class="oa-title">{_text(body.get("title") or "")}</h3>',
        _form(body.get("form")),
        _rich(body.get("rich")),
        f'<p class="oa-content">{_text(body["content"])}</p>' if body.get("content") else "",
        f'<p class="oa-author">{_text(body["author"])}</p>' if body.get("author") else "",
        "</div>",
    ]
    if status_value:
        bar_bg = css_colour(status_bg, BAR_DEFAULT)
        parts.append(f'<div class="oa-status" style="background:{bar_bg}" data-status="{_text(status_value)}">'
                     f'{_text(status_value)}</div>')
    classes = ["oa-card"]
    if recalled:
        classes.append("oa-recalled")
        parts.append('<div class="oa-recall-mark">已撤回 recalled</div>')
    if read is not None:
        classes.append("oa-read" if read else "oa-unread")
        parts.insert(0, f'<span class="oa-dot" title="{"已读 read" if read else "未读 unread"}"></span>')
    return f'<article class="{" ".join(classes)}">{"".join(parts)}{footer}</article>'

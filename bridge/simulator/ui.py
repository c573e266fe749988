"""`/_sim/ui`: each simulated user's DingTalk work-notification inbox, drawn as on a phone (pure rendering).

So `bridge demo` and `bridge serve --sandbox` can be watched in a browser: the cards as the approvers see
them, their status bars, read or not, recalled. The card itself is drawn by `bridge.console.card`, the same
code the console uses, so the console and the "phone" cannot disagree on how a card looks.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from bridge.console.card import oa_card
from bridge.simulator.model import SHANGHAI
from bridge.simulator.state import SimState

__all__ = ["css", "render"]

REFRESH_S = 2


@cache
def _template() -> string.Template:
    return string.Template(resources.files("bridge.simulator").joinpath("templates", "ui.html")
                           .read_text(encoding="utf-8"))


@cache
def css() -> bytes:
    """The console's stylesheet, which holds the card and phone styles too."""
    return resources.files("bridge.console").joinpath("static", "console.css").read_bytes()


def _sent(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%m-%d %H:%M")
    except ValueError:
        return ""


def _card(card: Mapping[str, Any]) -> str:
    bar = card.get("status_bar") or {}
    sent = escape(_sent(str(card.get("sent_at", ""))))
    when = f'<div class="sent">{sent} · task {escape(str(card["task_id"]))}</div>'
    if card.get("msgtype") != "oa":
        text = escape(str(card.get("msg", ""))[:300])
        return f'{when}<article class="oa-card"><div class="oa-body"><p class="oa-content">{text}</p></div></article>'
    return when + oa_card(card["msg"], status_value=bar.get("value"), status_bg=bar.get("bg"),
                          recalled=bool(card.get("recalled")), read=bool(card.get("read")))


def _phone(userid: str, cards: list[dict[str, Any]]) -> str:
    unread = sum(1 for c in cards if not c.get("read") and not c.get("recalled"))
    inner = "".join(_card(c) for c in cards) or '<p class="empty">没有通知 no notifications</p>'
    return (f'<section class="phone" data-user="{escape(userid)}"><div class="screen">'
            f'<div class="bar"><strong>工作通知</strong><span>{escape(userid)} · 未读 {unread} unread</span></div>'
            f'<div class="inbox">{inner}</div></div></section>')


def render(state: SimState, user: str | None = None, *, refresh: bool = True) -> str:
    """The page: one phone per user who has cards (or just `user`)."""
    users = [user] if user else state.users()
    phones = "".join(_phone(u, state.inbox(u)) for u in users)
    if not phones:
        phones = '<p class="muted">还没有用户收到卡片 no user has a card yet</p>'
    return _template().substitute(
        refresh=f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else "",
        summary=escape(f"{len(state.tasks)} 个任务 tasks · {len(users)} 位用户 users"),
        pause=(f'每 {REFRESH_S} 秒刷新 refreshed every {REFRESH_S} s (<a href="?refresh=0">暂停 pause</a>)' if refresh
               else '已暂停刷新 refresh paused (<a href="?">继续 resume</a>)'),
        phones=phones,
    )

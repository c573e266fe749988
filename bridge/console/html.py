"""Small HTML helpers for the console: escaping, the page layout, tables, labels (pure: no I/O).

Templates are plain `string.Template` files shipped as package data; every value that reaches them is
escaped here first (`esc`), and the fragments built by these helpers are the only trusted HTML. No build
step, no JavaScript framework: pages are rendered on the server and work without scripts, which only add
confirmations and the live journal.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from html import escape
from importlib import resources
from urllib.parse import quote, urlencode

from bridge.records import ApprovalState, JobState

__all__ = ["STATUS_LABELS", "esc", "link", "page", "status_badge", "table", "template", "url"]

# Chinese first, English beside: the approvers and most operators read Chinese.
STATUS_LABELS: Mapping[str, str] = {
    ApprovalState.NEW: "新建 new",
    ApprovalState.PENDING: "待审批 pending",
    ApprovalState.APPROVED: "已同意 approved",
    ApprovalState.REJECTED: "已拒绝 rejected",
    ApprovalState.REVOKED: "已撤销 revoked",
    ApprovalState.RECALLED: "已撤回 recalled",
}
JOB_STATE_LABELS: Mapping[str, str] = {
    JobState.PENDING: "等待 pending",
    JobState.RUNNING: "执行中 running",
    JobState.DONE: "完成 done",
    JobState.DEAD: "死信 dead",
}
NAV = (
    ("/console", "概览 Overview"),
    ("/console/approvals", "审批 Approvals"),
    ("/console/dead", "死信 Dead letters"),
    ("/console/journal", "日志 Journal"),
)


def esc(value: object) -> str:
    """Text as HTML (quotes too, so it is safe in attributes); None is empty."""
    return "" if value is None else escape(str(value), quote=True)


def url(path: str, **query: str | None) -> str:
    """A console URL with its query; empty values are left out. Path segments are quoted by the caller."""
    q = {k: v for k, v in query.items() if v}
    return path + ("?" + urlencode(q) if q else "")


def approval_path(source: str, approval_id: str) -> str:
    return f"/console/approvals/{quote(source, safe='')}/{quote(approval_id, safe='')}"


def link(href: str, text: object, cls: str = "") -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f'<a href="{esc(href)}"{attr}>{esc(text)}</a>'


def status_badge(status: str) -> str:
    return f'<span class="badge st-{esc(status)}">{esc(STATUS_LABELS.get(status, status))}</span>'


def job_badge(state: str) -> str:
    return f'<span class="badge job-{esc(state)}">{esc(JOB_STATE_LABELS.get(state, state))}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "无 none", cls: str = "") -> str:
    """A table of trusted cell HTML (escape the cells with `esc` or build them with these helpers)."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">{esc(empty)}</td></tr>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def hidden_csrf(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def action_form(action: str, label: str, csrf: str, *, confirm: str, cls: str = "btn") -> str:
    """A POST button; console.js asks `confirm` first (without scripts the POST goes straight through)."""
    return (f'<form method="post" action="{esc(action)}" class="inline" data-confirm="{esc(confirm)}">'
            f'{hidden_csrf(csrf)}<button type="submit" class="{esc(cls)}">{esc(label)}</button></form>')


@cache
def template(name: str) -> string.Template:
    """A template from bridge/console/templates (package data), read once."""
    text = resources.files("bridge.console").joinpath("templates", name).read_text(encoding="utf-8")
    return string.Template(text)


def page(title: str, body: str, *, csrf: str | None, active: str = "", flash: str = "") -> str:
    """A whole console page: `body` is trusted HTML; `csrf` None means a page without the logout button."""
    on = ' class="on"'
    nav = "".join(
        f'<a href="{href}"{on if href == active else ""}>{esc(text)}</a>' for href, text in NAV
    ) if csrf is not None else ""
    logout = (f'<form method="post" action="/console/logout" class="inline">{hidden_csrf(csrf)}'
              '<button type="submit" class="link">退出 Log out</button></form>') if csrf is not None else ""
    return template("layout.html").substitute(
        title=esc(title), nav=nav, logout=logout, body=body,
        flash=f'<p class="flash">{esc(flash)}</p>' if flash else "",
    )

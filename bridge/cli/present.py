"""Human-readable output for the CLI: approval status, job lists, journal lines.

Colours only on a terminal (and never under NO_COLOR). The words stay the same either way, so output can be
grepped. Columns are padded by their width on screen (wcwidth: a CJK character takes two cells, a colour code
none), so `tail` and `jobs` line up with Chinese titles and colours alike. Times show in the local time zone
(the TZ environment variable picks another) with their offset, or in UTC with `--utc`; JSON output keeps UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from wcwidth import wcswidth

from bridge import store

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cells(text: str) -> int:
    """How many terminal cells `text` takes: colour codes take none, wide (CJK) characters two."""
    plain = _ANSI.sub("", text)
    width = wcswidth(plain)
    return width if width >= 0 else len(plain)  # a control character: count it as one, never fail


def pad(text: str, width: int) -> str:
    """`text` left-aligned in a column `width` cells wide (like f"{text:<width}", but measured on screen)."""
    return text + " " * max(0, width - cells(text))

_COLOURS = {
    "pending": "33", "approved": "32", "rejected": "31", "revoked": "90", "recalled": "90", "new": "36",
    "dead": "31", "running": "36", "done": "32",
    "applied": "32", "unchanged": "90", "stale": "33", "conflict": "31", "ignored": "90", "unresolved": "31",
}


class Style:
    """How to draw: with colour or not, times in the local zone or in UTC."""

    def __init__(self, colour: bool, utc: bool = False) -> None:
        self.colour = colour
        self.utc = utc

    def when(self, value: str | datetime | None) -> str:
        """A stored time (an ISO string or a datetime) as `2026-12-01 14:03:05+08:00`: local zone or UTC."""
        if value is None or value == "":
            return "-"
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        at = at.astimezone(UTC) if self.utc else at.astimezone()
        return at.isoformat(sep=" ", timespec="seconds")

    def word(self, text: str | None, key: str | None = None) -> str:
        text = text or "-"
        code = _COLOURS.get(key or text)
        if not self.colour or code is None:
            return text
        return f"\033[{code}m{text}\033[0m"

    def bar(self, value: str | None, argb: str | None) -> str:
        """A status bar as the approver sees it: the label on its background colour."""
        if not value:
            return "(no status bar)"
        if not self.colour or not argb or len(argb) != 10:
            return f"[{value}] {argb or ''}".rstrip()
        r, g, b = int(argb[4:6], 16), int(argb[6:8], 16), int(argb[8:10], 16)
        return f"\033[48;2;{r};{g};{b}m\033[97m {value} \033[0m {argb}"


def approval(detail: dict[str, Any], style: Style) -> str:
    out = []
    card = detail.get("card") or {}
    out.append(f"{detail['source']}/{detail['approval_id']}  {style.word(detail['status'])}"
               + (f"  {card.get('title')}" if card.get("title") else ""))
    out.append("")
    out.append(f"Cards ({len(detail['notices'])}):")
    if not detail["notices"]:
        out.append("  none yet")
    for n in detail["notices"]:
        out.append(f"  #{n['id']} task_id={n['task_id'] or '-'} gen={n['generation']} {pad(n['state'], 9)} "
                   f"{style.bar(n['status_bar']['value'], n['status_bar']['color'])}  → {','.join(n['userids'])}")
        times = [f"{k}={style.when(n[k])}" for k in ("sent_at", "updated_at", "recalled_at") if n[k]]
        if times:
            out.append("      " + "  ".join(times))
        d = n.get("delivery")
        out.extend(recipient_lines(d or {}))
        if d and any(k.endswith("_user_id_list") for k in d):
            parts = [f"{k.replace('_user_id_list', '')}={','.join(v)}" for k, v in d.items()
                     if k.endswith("_user_id_list") and v]
            forbidden = d.get("forbidden_list") or []
            if forbidden:
                parts.append("forbidden_codes=" + ",".join(f"{f['userid']}:{f['code']}" for f in forbidden))
            out.append("      delivery: " + ("  ".join(parts) if parts else "all delivered"))
        elif n["state"] == "sent":
            out.append("      delivery: not checked yet")
        if n.get("orphaned_at"):
            out.append(f"      ORPHANED since {n['orphaned_at']}: this task_id reaches nobody (a lost answer, then "
                       "143106); see the runbook, orphaned cards")
        if n.get("note"):
            out.append(f"      note: {n['note']}")
    jobs = detail["jobs"]
    out.append("")
    out.append(f"Jobs: {len(jobs['pending'])} pending, {len(jobs['dead'])} dead, {len(jobs['done'])} done")
    for j in jobs["dead"] + jobs["pending"]:
        out.append("  " + job_line(j, style))
    out.append("")
    out.append("History:")
    for e in detail["history"]:
        reason = f"  ({e['reason']})" if e.get("reason") else ""
        dup = f"  +{e['duplicates']} duplicate deliveries" if e.get("duplicates") else ""
        outcome = e["outcome"] or "waiting"
        out.append(f"  {style.when(e['occurred_at'])}  {pad(e['status'] or '-', 9)} {e['event_id']}  "
                   f"{style.word(outcome)}{reason}{dup}")
    return "\n".join(out)


def recipient_lines(delivery: dict[str, Any]) -> list[str]:
    """What the send made of the card's mobile:/unionid: recipients: the userid each became, or why none."""
    lines = []
    resolved = delivery.get("resolved_recipients") or {}
    if resolved:
        lines.append("      resolved: " + "  ".join(f"{k} → {v}" for k, v in resolved.items()))
    for key, why in (delivery.get("unresolved_recipients") or {}).items():
        lines.append(f"      unresolved: {key}: {why}")
    return lines


def job_line(j: dict[str, Any], style: Style) -> str:
    err = f"  last_error: {j['last_error']}" if j.get("last_error") else ""
    return (f"job {j['id']:<6} {pad(j['kind'], 6)} {pad(style.word(j['state']), 7)} {j['source']}/{j['approval_id']}"
            f"  attempts={j['attempts']} run_at={style.when(j['run_at'])}{err}")


def journal_line(e: store.JournalEntry, style: Style) -> str:
    where = "/".join(x for x in (e.source, e.approval_id) if x)
    ids = " ".join(f"{k}={v}" for k, v in (("event", e.event_id), ("job", e.job_id), ("task", e.task_id)) if v)
    kind = e.kind
    key = kind.split(".", 1)[1] if "." in kind else kind
    coloured = style.word(kind, key if key in _COLOURS else ("dead" if kind == "job.dead" else None))
    return f"{style.when(e.at)}  {pad(coloured, 28)} {where}  {e.message}" + (f"  [{ids}]" if ids else "")

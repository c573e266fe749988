"""The overview page: approvals by status, the backlog, and what went wrong with DingTalk in the last hour.

Every figure comes from the store, not from this process's memory, so the page is right for a fleet: any
replica shows what all workers did. DingTalk failures are read from the journal: each failed attempt writes
`job.retry_scheduled` or `job.dead` with the most specific DingTalk code and the exception's class in its
data (bridge.worker); lines written before that carried the code only in their text, which is parsed instead.
Only the alert lines of the last hour are read (`Store.journal_alerts`, by kind and time through an index),
however many other lines the journal holds; at most `ALERT_SCAN` of them, the newest: when the hour holds
more, the page says "at least".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bridge.appkeys import CLOCK, CONFIG, STORE
from bridge.config import Config
from bridge.console.auth import csrf_token
from bridge.console.html import STATUS_LABELS, esc, link, page, table, url
from bridge.console.times import time_tag
from bridge.records import AlertKind, ApprovalState, Job, JobState, JournalEntry

__all__ = ["Failure", "failure_of", "overview"]

SCAN_LIMIT = 1000  # dead jobs read for the per-app figures (the count itself is job_counts')
ALERT_SCAN = 5000  # the last hour's alert lines read at most (the newest), for its figures
WINDOW = timedelta(hours=1)
FAILURE_KINDS = frozenset({AlertKind.RETRY_SCHEDULED, AlertKind.DEAD})
THROTTLED_ERROR = "DingTalkThrottled"  # bridge.errors' class for 900xx, HTTP 429 and the IP-ban page
_SUB_CODE = re.compile(r"\bsub_code=([^\s,;)]+)")
_ERRCODE = re.compile(r"\berrcode=(-?\d+)")
_HTTP = re.compile(r"\bhttp_status=(\d+)")


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed DingTalk call, as a journal line recorded it."""

    at: datetime
    source: str
    app: str  # the DingTalk app that made the call ("" if unknown)
    code: str
    throttled: bool
    dead: bool
    message: str


def _is_throttle_code(code: str) -> bool:
    """900xx except 90020 (the monthly quota, which waiting does not fix), or HTTP 429."""
    if code == "http_429":
        return True
    return code.isdigit() and 90000 <= int(code) <= 90999 and code != "90020"


def _code_from_text(message: str) -> str | None:
    for pattern, prefix in ((_SUB_CODE, ""), (_ERRCODE, ""), (_HTTP, "http_")):
        if m := pattern.search(message):
            return prefix + m.group(1)
    return None


def failure_of(entry: JournalEntry, app_of: Callable[[str], str | None] = lambda _s: None) -> Failure | None:
    """The DingTalk failure a journal line records, or None (another kind, or a failure without a code).

    Its app is the one the line names; lines from before apps were recorded get `app_of(source)`."""
    if entry.kind not in FAILURE_KINDS:
        return None
    data: Mapping[str, object] = entry.data or {}
    code = str(data["code"]) if data.get("code") else _code_from_text(entry.message)
    if code is None:
        return None
    throttled = data.get("error") == THROTTLED_ERROR or _is_throttle_code(code)
    source = entry.source or ""
    app = str(data["app"]) if data.get("app") else (app_of(source) or "")
    return Failure(at=entry.at, source=source, app=app, code=code, throttled=throttled,
                   dead=entry.kind == AlertKind.DEAD, message=entry.message)


def _card(label: str, value: object, href: str = "", cls: str = "") -> str:
    inner = f'<span class="n">{esc(value)}</span><span class="l">{esc(label)}</span>'
    body = f'<a href="{esc(href)}">{inner}</a>' if href else inner
    return f'<div class="stat {esc(cls)}">{body}</div>'


def _by_code(failures: Sequence[Failure]) -> str:
    groups: dict[str, list[Failure]] = {}
    for f in failures:
        groups.setdefault(f.code, []).append(f)
    rows = []
    for code, fs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        last = max(fs, key=lambda f: f.at)
        kind = "限流 throttled" if last.throttled else "错误 error"
        sources = ", ".join(f"{s} ×{n}" for s, n in Counter(f.source for f in fs).most_common())
        rows.append([f"<code>{esc(code)}</code>", esc(kind), esc(len(fs)), esc(sum(f.dead for f in fs)),
                     esc(sources), time_tag(last.at), f'<code>{esc(last.message[:160])}</code>'])
    return table(["代码 Code", "类别 Kind", "次数 Count", "致死 Dead", "来源 Sources", "最近 Last",
                  "最近一条 Last message"], rows, empty="最近一小时没有钉钉错误 no DingTalk errors in the last hour",
                 cls="compact by-code")


def _per_app(cfg: Config, dead: Sequence[Job], failures: Sequence[Failure], orphaned: Counter[str]) -> str:
    """One row per configured DingTalk app: its agent and sources, dead jobs now, the last hour's failures.
    A job or an orphaned notice counts against its source's app as configured now."""
    dead_by_app = Counter(cfg.app_of(j.source) or "" for j in dead)
    orphaned_by_app: Counter[str] = Counter()
    for src, n in orphaned.items():
        orphaned_by_app[cfg.app_of(src) or ""] += n
    rows = []
    for a in cfg.dingtalk.all_apps:
        fs = [f for f in failures if f.app == a.name]
        sources = ", ".join(s.name for s in cfg.sources if cfg.app_of(s.name) == a.name)
        rows.append([f"<strong>{esc(a.name)}</strong>" + (' <span class="muted">默认 default</span>'
                                                          if a.name == cfg.dingtalk.default_app else ""),
                     esc(a.agent_id), esc(sources or "—"), esc(dead_by_app.get(a.name, 0)),
                     esc(sum(not f.throttled for f in fs)), esc(sum(f.throttled for f in fs)),
                     esc(sum(f.dead for f in fs)), esc(orphaned_by_app.get(a.name, 0))])
    return table(["应用 App", "AgentId", "来源 Sources", "死信 Dead", "错误 1h Errors", "限流 1h Throttled",
                  "死信 1h Died", "孤立 1h Orphaned"], rows, cls="per-app")


async def overview(request: web.Request) -> web.Response:
    st, now = request.app[STORE], request.app[CLOCK].now()
    approval_counts = await st.approval_counts()
    counts = await st.job_counts(now)
    waiting_per_source = await st.waiting_events()  # a read: pending_events would lease decisions
    dead = await st.list_jobs(JobState.DEAD, SCAN_LIMIT)
    hour = await st.journal_alerts(now - WINDOW, ALERT_SCAN)
    more = len(hour) >= ALERT_SCAN  # the hour may hold more than was read
    cfg = request.app[CONFIG]
    failures = [f for f in (failure_of(e, cfg.app_of) for e in hour) if f is not None]
    orphaned_hour = Counter(e.source or "" for e in hour if e.kind == AlertKind.ORPHANED)
    at_least = "≥" if more else ""

    by_status: Counter[str] = Counter()
    for (_src, status), n in approval_counts.items():
        by_status[status] += n
    shown = [s for s in ApprovalState if s != ApprovalState.NEW]
    stats = "".join(_card(STATUS_LABELS[s], by_status.get(s, 0), url("/console/approvals", status=s), f"st-{s}")
                    for s in shown)
    backlog = "".join([
        _card("待处理事件 Events waiting", sum(waiting_per_source.values())),
        _card("待执行任务 Jobs waiting", counts.pending + counts.running),
        _card("死信 Dead jobs", counts.dead, "/console/dead", "warn" if counts.dead else ""),
        _card("孤立通知 Orphaned notices", counts.orphaned, "", "warn" if counts.orphaned else ""),
    ])
    throttled = [f for f in failures if f.throttled]
    errors = [f for f in failures if not f.throttled]
    dingtalk = "".join([
        _card("钉钉错误 DingTalk errors", f"{at_least}{len(errors)}", "", "warn" if errors else ""),
        _card("限流 Throttled", f"{at_least}{len(throttled)}", "", "warn" if throttled else ""),
        _card("转为死信 Died", f"{at_least}{sum(f.dead for f in failures)}", "/console/dead",
              "warn" if any(f.dead for f in failures) else ""),
        _card("新孤立通知 Newly orphaned", f"{at_least}{sum(orphaned_hour.values())}", "",
              "warn" if orphaned_hour else ""),
    ])

    sources = sorted({src for src, _ in approval_counts} | {s.name for s in request.app[CONFIG].sources})
    per_source = approval_counts
    dead_per_source = Counter(j.source for j in dead)
    errors_per_source = Counter(f.source for f in errors)
    throttled_per_source = Counter(f.source for f in throttled)
    rows = [
        [link(url("/console/approvals", source=src), src)]
        + [str(per_source.get((src, s), 0)) for s in shown]
        + [str(waiting_per_source.get(src, 0)),
           link(url("/console/dead", source=src), dead_per_source[src]) if dead_per_source.get(src) else "0",
           str(errors_per_source.get(src, 0)), str(throttled_per_source.get(src, 0)),
           str(orphaned_hour.get(src, 0))]
        for src in sources
    ]
    body = (
        '<h1>概览 Overview</h1>'
        f'<h2>审批 Approvals</h2><div class="stats">{stats}</div>'
        f'<h2>积压 Backlog</h2><div class="stats">{backlog}</div>'
        f'<h2>钉钉 最近一小时 DingTalk, last hour</h2><div class="stats" id="dingtalk-hour">{dingtalk}</div>'
        f'<h3 class="sub">按错误码 By code</h3>{_by_code(failures)}'
        f'<h2>按应用 Per DingTalk app</h2>{_per_app(cfg, dead, failures, orphaned_hour)}'
        '<h2>按来源 Per source</h2>'
        + table(["来源 Source", *(STATUS_LABELS[s] for s in shown), "待处理事件 Events", "死信 Dead",
                 "错误 1h Errors", "限流 1h Throttled", "孤立 1h Orphaned"], rows, cls="per-source")
        + f'<p class="muted">审批按全部统计；最近一小时读自日志中的告警行（最多 {ALERT_SCAN} 行）· every approval '
        f'counted, the last hour from the journal\'s alert lines (the newest {ALERT_SCAN} at most), '
        f'for every worker sharing this store · {time_tag(now)}</p>'
    )
    return web.Response(text=page("概览 Overview", body, csrf=csrf_token(request), active="/console"),
                        content_type="text/html", charset="utf-8")

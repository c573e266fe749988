"""The console's pages (GET): overview, approvals, one approval, dead letters, the live journal.

Each handler reads the store through the same calls and views the admin API uses (`bridge.views`), so the
console shows what `GET /approvals/...` answers, drawn for people. Lists are bounded (`LIST_LIMIT`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge import views
from bridge.appkeys import CLOCK, CONFIG, STORE
from bridge.console import detail
from bridge.console.auth import csrf_token
from bridge.console.html import (
    STATUS_LABELS,
    approval_path,
    esc,
    hidden_csrf,
    job_badge,
    link,
    page,
    status_badge,
    table,
    url,
)
from bridge.records import ApprovalState, JobState

LIST_LIMIT = 200
SCAN_LIMIT = 1000  # the overview counts over at most this many approvals, jobs and waiting events


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _since(raw: str | None) -> datetime | None:
    """An RFC 3339 time or date from a filter box; anything else is ignored (the box shows it back)."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _time(value: datetime | str | None) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else value
    return f'<time datetime="{esc(text)}">{esc(text[:19].replace("T", " "))} UTC</time>'


def _card(label: str, value: object, href: str = "", cls: str = "") -> str:
    inner = f'<span class="n">{esc(value)}</span><span class="l">{esc(label)}</span>'
    body = f'<a href="{esc(href)}">{inner}</a>' if href else inner
    return f'<div class="stat {esc(cls)}">{body}</div>'


async def overview(request: web.Request) -> web.Response:
    st, now = request.app[STORE], request.app[CLOCK].now()
    approvals = await st.list_approvals(limit=SCAN_LIMIT)
    counts = await st.job_counts(now)
    waiting = await st.pending_events(limit=SCAN_LIMIT)
    dead = await st.list_jobs(JobState.DEAD, SCAN_LIMIT)
    by_status = Counter(a.status for a in approvals)
    stats = "".join(
        _card(STATUS_LABELS[s], by_status.get(s, 0), url("/console/approvals", status=s), f"st-{s}")
        for s in ApprovalState if s != ApprovalState.NEW
    )
    backlog = "".join([
        _card("待处理事件 Events waiting", len(waiting)),
        _card("待执行任务 Jobs waiting", counts.pending + counts.running),
        _card("死信 Dead jobs", counts.dead, "/console/dead", "warn" if counts.dead else ""),
        _card("孤立通知 Orphaned notices", counts.orphaned, "", "warn" if counts.orphaned else ""),
    ])
    sources = sorted({a.source for a in approvals} | {s.name for s in request.app[CONFIG].sources})
    per_source = Counter((a.source, a.status) for a in approvals)
    dead_per_source = Counter(j.source for j in dead)
    waiting_per_source = Counter(e.event.source for e in waiting)
    shown = [s for s in ApprovalState if s != ApprovalState.NEW]
    rows = [
        [link(url("/console/approvals", source=src), src)]
        + [str(per_source.get((src, s), 0)) for s in shown]
        + [str(waiting_per_source.get(src, 0)),
           link(url("/console/dead", source=src), dead_per_source.get(src, 0)) if dead_per_source.get(src) else "0"]
        for src in sources
    ]
    body = (
        '<h1>概览 Overview</h1>'
        f'<h2>审批 Approvals</h2><div class="stats">{stats}</div>'
        f'<h2>积压 Backlog</h2><div class="stats">{backlog}</div>'
        '<h2>按来源 Per source</h2>'
        + table(["来源 Source", *(STATUS_LABELS[s] for s in shown), "待处理事件 Events", "死信 Dead"], rows)
        + f'<p class="muted">统计最近 {SCAN_LIMIT} 条审批 · counted over the last {SCAN_LIMIT} approvals · '
        f'{_time(now)}</p>'
    )
    return html(page("概览 Overview", body, csrf=csrf_token(request), active="/console"))


def _select(name: str, options: list[tuple[str, str]], chosen: str) -> str:
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
                   for v, t in options)
    return f'<select name="{esc(name)}">{opts}</select>'


async def approvals(request: web.Request) -> web.Response:
    q = request.query
    source, status, since_raw, needle = q.get("source", ""), q.get("status", ""), q.get("since", ""), q.get("q", "")
    st = request.app[STORE]
    status_ok = status if status in tuple(ApprovalState) else None
    rows = await st.list_approvals(status=status_ok, source=source or None, since=_since(since_raw), limit=LIST_LIMIT)
    if needle:
        n = needle.strip().casefold()
        rows = [a for a in rows if n in a.approval_id.casefold() or n in str(a.card.get("title", "")).casefold()]
        for src in [source] if source else [s.name for s in request.app[CONFIG].sources]:
            exact = await st.get_approval(src, needle.strip())
            if exact is not None and all((a.source, a.approval_id) != (src, exact.approval_id) for a in rows):
                rows.insert(0, exact)
    sources = [("", "全部来源 all sources")] + [(s.name, s.name) for s in request.app[CONFIG].sources]
    statuses = [("", "全部状态 all statuses")] + [(s.value, STATUS_LABELS[s]) for s in ApprovalState]
    form = (
        '<form method="get" class="filters">'
        f'{_select("source", sources, source)}{_select("status", statuses, status)}'
        f'<label>更新于之后 Updated since <input name="since" value="{esc(since_raw)}" '
        'placeholder="2026-11-29T00:00+08:00"></label>'
        f'<input name="q" value="{esc(needle)}" placeholder="审批号或标题 id or title" type="search">'
        '<button class="btn" type="submit">筛选 Filter</button></form>'
    )
    lines = [
        [link(approval_path(a.source, a.approval_id), a.approval_id), esc(a.card.get("title", "")), esc(a.source),
         status_badge(a.status), esc(a.generation), _time(a.updated_at)]
        for a in rows
    ]
    body = (f'<h1>审批 Approvals</h1>{form}'
            + table(["审批号 Approval", "标题 Title", "来源 Source", "状态 Status", "版本 Gen.", "更新 Updated"],
                    lines, empty="没有匹配的审批 no approval matches")
            + f'<p class="muted">{len(rows)} 条 shown (最多 at most {LIST_LIMIT})</p>')
    return html(page("审批 Approvals", body, csrf=csrf_token(request), active="/console/approvals"))


async def approval(request: web.Request) -> web.Response:
    source, approval_id = request.match_info["source"], request.match_info["approval_id"]
    found: dict[str, Any] | None = await views.approval_detail(request.app[STORE], source, approval_id)
    csrf = csrf_token(request)
    if found is None:
        body = (f'<section class="error"><h1>404</h1><p>未找到审批 no approval {esc(approval_id)} from source '
                f'{esc(source)}</p><p>{link("/console/approvals", "返回列表 Back to the list")}</p></section>')
        return html(page("未找到 Not found", body, csrf=csrf), status=404)
    notices = await request.app[STORE].notices_for(source, approval_id)
    flash = detail.FLASH.get(request.query.get("done", ""), "")
    body = detail.render(found, notices, csrf)
    return html(page(f"{approval_id} · 审批", body, csrf=csrf, active="/console/approvals", flash=flash))


async def dead_letters(request: web.Request) -> web.Response:
    q = request.query
    source, code, since_raw = q.get("source", ""), q.get("code", ""), q.get("since", "")
    since = _since(since_raw)
    jobs = await request.app[STORE].list_jobs(JobState.DEAD, SCAN_LIMIT)
    jobs = [j for j in jobs if (not source or j.source == source) and (not code or code in (j.last_error or ""))
            and (since is None or j.updated_at >= since)][:LIST_LIMIT]
    csrf = csrf_token(request)
    sources = [("", "全部来源 all sources")] + [(s.name, s.name) for s in request.app[CONFIG].sources]
    form = (
        '<form method="get" class="filters">'
        f'{_select("source", sources, source)}'
        f'<input name="code" value="{esc(code)}" placeholder="错误码 error code, e.g. 40035">'
        f'<label>之后 since <input name="since" value="{esc(since_raw)}" placeholder="2026-11-29T00:00+08:00"></label>'
        '<button class="btn" type="submit">筛选 Filter</button></form>'
    )
    rows = [
        [f'<input type="checkbox" name="job_id" value="{j.id}" aria-label="job {j.id}">', esc(j.id), esc(j.kind),
         link(approval_path(j.source, j.approval_id), f"{j.source}/{j.approval_id}"), esc(j.attempts),
         f'<code>{esc(j.last_error)}</code>', _time(j.updated_at), job_badge(j.state)]
        for j in jobs
    ]
    retry = (f'<form method="post" action="/console/dead/retry" data-confirm="重试所选死信任务？ Retry the selected '
             f'dead jobs?">{hidden_csrf(csrf)}'
             + table(["", "任务 Job", "类型 Kind", "审批 Approval", "尝试 Attempts", "最后错误 Last error",
                      "时间 Time", "状态 State"], rows, empty="没有死信 no dead jobs")
             + '<button class="btn danger" type="submit">重试所选 Retry selected</button></form>')
    flash = detail.FLASH.get(q.get("done", ""), "")
    body = f'<h1>死信 Dead letters</h1>{form}{retry}'
    return html(page("死信 Dead letters", body, csrf=csrf, active="/console/dead", flash=flash))


async def journal(request: web.Request) -> web.Response:
    body = (
        '<h1>日志 Live journal</h1>'
        '<p class="muted">与 <code>bridge tail --follow</code> 相同，每 2 秒自动更新 · what bridge tail --follow '
        'shows, updated every 2 s</p>'
        '<table id="journal" data-src="/console/journal.json"><thead><tr><th>#</th><th>时间 Time</th>'
        '<th>事件 Kind</th><th>审批 Approval</th><th>说明 Message</th></tr></thead><tbody></tbody></table>'
        '<p class="muted" id="journal-state">加载中 loading…</p>'
    )
    return html(page("日志 Journal", body, csrf=csrf_token(request), active="/console/journal"))


async def journal_json(request: web.Request) -> web.Response:
    """Journal lines after `after` (the last id the page has); the first call gets the last 100."""
    st = request.app[STORE]
    raw = request.query.get("after", "")
    if raw and not raw.isdigit():
        return web.json_response({"error": "bad_request", "message": "'after' must be a journal id"}, status=400)
    entries = await st.journal(int(raw), limit=200) if raw else await st.journal_tail(100)
    lines = [{"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "source": e.source, "approval_id": e.approval_id,
              "job_id": e.job_id, "task_id": e.task_id, "message": e.message,
              "href": approval_path(e.source, e.approval_id) if e.source and e.approval_id else None}
             for e in entries]
    return web.json_response({"lines": lines, "last": lines[-1]["id"] if lines else int(raw or 0)})

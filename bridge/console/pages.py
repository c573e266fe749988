"""The console's pages (GET): overview, approvals, one approval, dead letters, the live journal.

Each handler reads the store through the same calls and views the admin API uses (`bridge.views`), so the
console shows what `GET /approvals/...` answers, drawn for people. Lists are bounded (`LIST_LIMIT`).
"""

from __future__ import annotations

import hashlib
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
from bridge.console.overview import SCAN_LIMIT
from bridge.console.times import SINCE_FORMATS, BadTime, parse_since, time_tag
from bridge.journal_follow import BadCursor, JournalFollower
from bridge.records import ApprovalState, JobState

LIST_LIMIT = 200
JOURNAL_FIRST = 100  # lines the live journal opens with
JOURNAL_PAGE = 200  # lines one journal.json answer carries at most


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _bad_since(field: str, raw: str) -> str:
    """The 400 explanation for a "since" box that does not hold a time: the field and what it takes."""
    examples = ", ".join(f"<code>{esc(e)}</code>" for e in SINCE_FORMATS)
    return (f'<div class="flash error" role="alert" id="bad-since"><strong>{esc(field)}</strong> (<code>since</code>) '
            f'不是时间 is not a time: <code>{esc(raw)}</code>. 可用格式 Accepted: ISO 8601 / RFC 3339, e.g. '
            f'{examples}; 无时区则为 UTC without an offset it is UTC.</div>')


def _since_box(raw: str, bad: bool) -> str:
    invalid = ' aria-invalid="true" aria-describedby="bad-since" class="invalid"' if bad else ""
    return f'<input name="since" value="{esc(raw)}" placeholder="2026-11-29T08:00+08:00"{invalid}>'


def _select(name: str, options: list[tuple[str, str]], chosen: str) -> str:
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
                   for v, t in options)
    return f'<select name="{esc(name)}">{opts}</select>'


async def approvals(request: web.Request) -> web.Response:
    q = request.query
    source, status, since_raw, needle = q.get("source", ""), q.get("status", ""), q.get("since", ""), q.get("q", "")
    st = request.app[STORE]
    status_ok = status if status in tuple(ApprovalState) else None
    try:
        since = parse_since(since_raw)
    except BadTime:
        since, problem = None, _bad_since("更新于之后 Updated since", since_raw)
    else:
        problem = ""
    rows = [] if problem else await st.list_approvals(status=status_ok, source=source or None, since=since,
                                                      limit=LIST_LIMIT)
    if needle and not problem:
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
        f'<label>更新于之后 Updated since {_since_box(since_raw, bool(problem))}</label>'
        f'<input name="q" value="{esc(needle)}" placeholder="审批号或标题 id or title" type="search">'
        '<button class="btn" type="submit">筛选 Filter</button></form>'
    )
    lines = [
        [link(approval_path(a.source, a.approval_id), a.approval_id), esc(a.card.get("title", "")), esc(a.source),
         status_badge(a.status), esc(a.generation), time_tag(a.updated_at)]
        for a in rows
    ]
    body = (f'<h1>审批 Approvals</h1>{form}{problem}'
            + table(["审批号 Approval", "标题 Title", "来源 Source", "状态 Status", "版本 Gen.", "更新 Updated"],
                    lines, empty="没有匹配的审批 no approval matches")
            + f'<p class="muted">{len(rows)} 条 shown (最多 at most {LIST_LIMIT})</p>')
    return html(page("审批 Approvals", body, csrf=csrf_token(request), active="/console/approvals"),
                status=400 if problem else 200)


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
    inner = detail.render(found, notices, csrf)
    live = approval_path(source, approval_id) + "/live"
    body = (f'<div id="live" data-live="{esc(live)}" data-etag="{esc(_etag(inner))}">{inner}</div>'
            '<p class="muted" id="live-state">每 2 秒自动更新 updates itself every 2 s</p>')
    return html(page(f"{approval_id} · 审批", body, csrf=csrf, active="/console/approvals", flash=flash))


def _etag(text: str) -> str:
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:24] + '"'


async def approval_live(request: web.Request) -> web.Response:
    """The approval page's body alone, for console.js to swap in; 304 while it has not changed."""
    source, approval_id = request.match_info["source"], request.match_info["approval_id"]
    found: dict[str, Any] | None = await views.approval_detail(request.app[STORE], source, approval_id)
    if found is None:
        return web.json_response({"error": "not_found", "message": f"no approval {approval_id} from {source}"},
                                 status=404)
    notices = await request.app[STORE].notices_for(source, approval_id)
    return _fragment(request, detail.render(found, notices, csrf_token(request)))


async def _dead_list(request: web.Request, csrf: str) -> tuple[str, str]:
    """The dead-letter list (its retry form) under the query's filters, and the 400 explanation if any."""
    q = request.query
    source, code, since_raw = q.get("source", ""), q.get("code", ""), q.get("since", "")
    try:
        since = parse_since(since_raw)
    except BadTime:
        since, problem = None, _bad_since("之后 Since", since_raw)
    else:
        problem = ""
    jobs = [] if problem else await request.app[STORE].list_jobs(JobState.DEAD, SCAN_LIMIT)
    jobs = [j for j in jobs if (not source or j.source == source) and (not code or code in (j.last_error or ""))
            and (since is None or j.updated_at >= since)][:LIST_LIMIT]
    rows = [
        [f'<input type="checkbox" name="job_id" value="{j.id}" aria-label="job {j.id}">', esc(j.id), esc(j.kind),
         link(approval_path(j.source, j.approval_id), f"{j.source}/{j.approval_id}"), esc(j.attempts),
         f'<code>{esc(j.last_error)}</code>', time_tag(j.updated_at), job_badge(j.state)]
        for j in jobs
    ]
    retry = (f'<form method="post" action="/console/dead/retry" data-confirm="重试所选死信任务？ Retry the selected '
             f'dead jobs?">{hidden_csrf(csrf)}'
             + table(["", "任务 Job", "类型 Kind", "审批 Approval", "尝试 Attempts", "最后错误 Last error",
                      "时间 Time", "状态 State"], rows, empty="没有死信 no dead jobs")
             + '<button class="btn danger" type="submit">重试所选 Retry selected</button></form>')
    return retry, problem


async def dead_letters(request: web.Request) -> web.Response:
    q = request.query
    source, code, since_raw = q.get("source", ""), q.get("code", ""), q.get("since", "")
    csrf = csrf_token(request)
    retry, problem = await _dead_list(request, csrf)
    sources = [("", "全部来源 all sources")] + [(s.name, s.name) for s in request.app[CONFIG].sources]
    form = (
        '<form method="get" class="filters">'
        f'{_select("source", sources, source)}'
        f'<input name="code" value="{esc(code)}" placeholder="错误码 error code, e.g. 40035">'
        f'<label>之后 Since {_since_box(since_raw, bool(problem))}</label>'
        '<button class="btn" type="submit">筛选 Filter</button></form>'
    )
    if problem:
        listing = retry
    else:  # refreshes itself as the approval page does; console.js keeps the ticked boxes across refreshes
        live = url("/console/dead/live", source=source, code=code, since=since_raw)
        listing = (f'<div id="live" data-live="{esc(live)}" data-etag="{esc(_etag(retry))}">{retry}</div>'
                   '<p class="muted" id="live-state">每 2 秒自动更新，保留所选 updates itself every 2 s, '
                   'keeping what is ticked</p>')
    flash = detail.FLASH.get(q.get("done", ""), "")
    body = f'<h1>死信 Dead letters</h1>{form}{problem}{listing}'
    return html(page("死信 Dead letters", body, csrf=csrf, active="/console/dead", flash=flash),
                status=400 if problem else 200)


async def dead_live(request: web.Request) -> web.Response:
    """The dead-letter list alone, under the same filters, for console.js to swap in; 304 while unchanged."""
    retry, problem = await _dead_list(request, csrf_token(request))
    if problem:
        return web.json_response({"error": "bad_request", "message": "'since' is not a time"}, status=400)
    return _fragment(request, retry)


def _fragment(request: web.Request, inner: str) -> web.Response:
    """A live page's body: 304 when the browser's If-None-Match is its ETag (nothing changed), else the HTML."""
    etag = _etag(inner)
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(text=inner, content_type="text/html", charset="utf-8", headers={"ETag": etag})


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
    """The live journal's lines, followed as `bridge tail --follow` follows them (bridge.journal_follow): the
    first call answers the last JOURNAL_FIRST lines and a cursor; each call with that cursor answers the lines
    not yet sent, those that committed late below ids already sent included (PostgreSQL), and the next cursor.
    At most JOURNAL_PAGE lines a call (`more`: ask again at once). `after` (an id) starts after that line."""
    st, clock, q = request.app[STORE], request.app[CLOCK], request.query
    raw_after, raw_cursor = q.get("after", ""), q.get("cursor", "")
    if raw_after and not raw_after.isdigit():
        return web.json_response({"error": "bad_request", "message": "'after' must be a journal id"}, status=400)

    def wall() -> float:  # the cursor's times: every replica that may answer the next call shares this clock
        return clock.now().timestamp()

    try:
        if raw_cursor:
            follower = JournalFollower.resume(st, clock, raw_cursor, timer=wall)
        elif raw_after:
            follower = JournalFollower(st, clock, after=int(raw_after), timer=wall)
        else:
            recent = await st.journal_tail(JOURNAL_FIRST)
            follower = JournalFollower(st, clock, after=recent[0].id - 1 if recent else 0, timer=wall)
    except BadCursor as exc:
        return web.json_response({"error": "bad_request", "message": f"'cursor': {exc}"}, status=400)
    entries = await follower.poll(limit=JOURNAL_PAGE)
    lines = [{"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "source": e.source, "approval_id": e.approval_id,
              "job_id": e.job_id, "task_id": e.task_id, "message": e.message,
              "href": approval_path(e.source, e.approval_id) if e.source and e.approval_id else None}
             for e in entries]
    return web.json_response({"lines": lines, "cursor": follower.cursor(), "more": follower.more,
                              "last": max((e.id for e in entries), default=follower.low)})

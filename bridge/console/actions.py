"""The console's actions (POST) and its login: each does what the matching admin API call does.

Recall, resync and retry go through `bridge.operate`, like the admin API and the CLI, so the journal and the
audit trail say the same whichever face an operator used. Every action answers with a redirect back to the
page it came from (303), carrying only a fixed result key for the flash line.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from aiohttp import web

from bridge import logs, operate, operator_http
from bridge.admin import host_allowed
from bridge.appkeys import CLOCK, CONFIG, STORE, WAKE
from bridge.console import auth
from bridge.console.html import approval_path, esc, page, template

log = logs.get_logger("bridge.console")

VIA = "console"  # who did it, in the journal and in the operator.* log lines


def _back(path: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?done={quote(done)}")


def _safe_next(raw: str) -> str:
    """Only a console path may follow a login (no open redirect to another site)."""
    return raw if raw.startswith("/console") and not raw.startswith("//") and "\\" not in raw else "/console"


def _login_page(next_path: str, error: str = "") -> str:
    body = template("login.html").substitute(
        next=esc(_safe_next(next_path)), error=f'<p class="flash error">{esc(error)}</p>' if error else "")
    return page("登录 Log in", body, csrf=None)


def _closed(request: web.Request) -> web.Response | None:
    """Why the login may not be offered here: no admin token, or a Host header not in [admin] allowed_hosts."""
    cfg = request.app[CONFIG]
    if cfg.server.admin_token is None:
        return auth.refuse(request, 403, "console_disabled", "the console is disabled: set [server] admin_token")
    if not host_allowed(request.headers.get("Host", ""), cfg.admin.allowed_hosts):
        log.warning("console.host_refused", path=request.path[:200])
        return auth.refuse(request, 403, "host_not_allowed", "this Host header is not in [admin] allowed_hosts")
    return None


async def login_form(request: web.Request) -> web.Response:
    if (closed := _closed(request)) is not None:
        return closed
    return web.Response(text=_login_page(request.query.get("next", "/console")), content_type="text/html")


async def login(request: web.Request) -> web.StreamResponse:
    token = request.app[CONFIG].server.admin_token
    if (closed := _closed(request)) is not None or token is None:
        return closed or auth.refuse(request, 403, "console_disabled", "set [server] admin_token")
    form = await request.post()
    next_path = _safe_next(str(form.get("next", "/console")))
    throttle, now = request.app[auth.THROTTLE], request.app[CLOCK].monotonic()
    device = auth.device_of(request, token.reveal())
    if (wait := throttle.wait(device, now)) > 0:  # refused before the token is compared: no oracle
        return _too_many(next_path, wait)
    if not auth.token_matches(str(form.get("token", "")), token.reveal()):
        verdict = throttle.failed(device, now)
        if verdict.burst_started:
            log.warning("console.login_throttled", failures=verdict.failures,
                        retry_after_s=verdict.retry_after_s, bucket="device" if device else "shared")
        elif not verdict.in_burst:
            log.warning("console.login_failed", failures=verdict.failures)
        error = "令牌错误 Wrong token"
        headers = {}
        if verdict.retry_after_s:
            seconds = math.ceil(verdict.retry_after_s)
            error += f" · 请 {seconds} 秒后再试 try again in {seconds} s"
            headers["Retry-After"] = str(seconds)
        return web.Response(status=401, content_type="text/html", headers=headers,
                            text=_login_page(next_path, error))
    throttle.succeeded(device)
    log.info("console.login")
    resp = web.HTTPSeeOther(next_path)
    auth.set_session(request, resp, token.reveal())
    auth.set_device(request, resp, token.reveal())
    raise resp


def _too_many(next_path: str, wait: float) -> web.Response:
    """429 while the throttle is closed to this client: how long to wait, in the page and in Retry-After."""
    seconds = math.ceil(wait)
    text = (f"登录失败次数过多，请 {seconds} 秒后再试 · Too many failed logins: try again in {seconds} s. "
            "已登录过的浏览器不受影响 a browser that logged in here before is not held up by others' failures.")
    return web.Response(status=429, content_type="text/html", headers={"Retry-After": str(seconds)},
                        text=_login_page(next_path, text))


async def logout(request: web.Request) -> web.StreamResponse:
    resp = web.HTTPSeeOther("/console/login")
    auth.clear_session(resp)
    raise resp


async def recall(request: web.Request) -> web.StreamResponse:
    try:
        event = await operator_http.recall(request, via=VIA)
    except operator_http.Refused as r:
        return auth.refuse(request, r.status, r.code, r.message)
    raise _back(approval_path(event.source, event.approval_id), "recall")


async def resync(request: web.Request) -> web.StreamResponse:
    try:
        await operator_http.resync(request, via=VIA)
    except operator_http.Refused as r:
        return auth.refuse(request, r.status, r.code, r.message)
    raise _back(approval_path(request.match_info["source"], request.match_info["approval_id"]), "resync")


async def retry_job(request: web.Request) -> web.StreamResponse:
    try:
        job, n = await operator_http.retry_job(request, by=VIA)
    except operator_http.Refused as r:
        return auth.refuse(request, r.status, r.code, r.message)
    log.info("console.job_retried", job_id=job.id, source=job.source, approval_id=job.approval_id)
    raise _back(approval_path(job.source, job.approval_id), "retry" if n else "none")


async def retry_selected(request: web.Request) -> web.StreamResponse:
    """Retry the dead jobs ticked on the dead-letter page (ids that are no longer dead are skipped)."""
    form = await request.post()
    raw_ids = [str(v) for v in form.getall("job_id", [])]
    job_ids = [job_id for r in raw_ids if (job_id := operator_http.job_id_of(r)) is not None]
    if len(job_ids) != len(raw_ids):  # (a None would mean "every dead job" to operate.retry_dead)
        return auth.refuse(request, 400, "bad_request",
                           f"job ids must be integers between 1 and {operator_http.MAX_JOB_ID}")
    st, now = request.app[STORE], request.app[CLOCK].now()
    n = 0
    for job_id in dict.fromkeys(job_ids):
        n += await operate.retry_dead(st, now, job_id, by=VIA)
    if n:
        request.app[WAKE]()
    log.info("console.dead_jobs_retried", count=n, selected=len(raw_ids))
    raise _back("/console/dead", "retry" if n else "none")

"""The operator's HTTP surface: admin API, health, readiness and metrics.

Admin endpoints need `Authorization: Bearer <[server] admin_token>`, always: without a configured token
they answer 403, whatever the listen address. "Open on loopback" would be decided by where bridge listens,
not by who asks, and behind a TLS proxy on the same host every request arrives from loopback; forwarded
headers (X-Forwarded-For, Forwarded) are never consulted. Because the token travels in a header, a
cross-site form or `text/plain` POST (CSRF) cannot carry it. With `[admin] allowed_hosts` the Host header
must be one of them (DNS rebinding); with `[admin] port` the admin API is served only on its own listener.
/healthz, /readyz and /metrics are open (no secrets, no approval data). Every answer is JSON (metrics
aside), errors name the problem.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bridge import errors, logs, operate, operator_http, views
from bridge import openapi as spec
from bridge.appkeys import ADMIN_PORTS, CLIENTS, CLOCK, CONFIG, METRICS, ROLE, STORE, STREAMS, WAKE, WORKER, Role
from bridge.records import ApprovalState, JobState
from bridge.web import Handler, Wrap, json_error, json_response, local_port, not_on_this_listener

log = logs.get_logger("bridge.admin")

VIA = "admin API"  # who did it, in the journal and in the operator.* log lines


_ADMIN_MARK = "bridge_admin_route"


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header value is on the allow-list; an entry without a port allows every port."""
    host = host.strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return not allowed or host in allowed or name in allowed


def admin_only(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        cfg = request.app[CONFIG]
        token = cfg.server.admin_token
        if token is None:
            return json_error(403, "admin_disabled",
                              "the admin API is disabled: set [server] admin_token (a random string of 16+ "
                              "characters); it is required on every address, loopback included")
        if not host_allowed(request.headers.get("Host", ""), cfg.admin.allowed_hosts):
            log.warning("admin.host_refused", path=request.path[:200])
            return json_error(403, "host_not_allowed", "this Host header is not in [admin] allowed_hosts")
        got = request.headers.get("Authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.reveal().encode()):
            log.warning("admin.unauthorized", path=request.path[:200])
            resp = json_error(401, "unauthorized",
                              "missing or wrong bearer token (Authorization: Bearer <admin_token>)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="bridge"'
            return resp
        return await handler(request)

    setattr(wrapped, _ADMIN_MARK, True)
    return wrapped


def wrong_listener(request: web.Request) -> web.Response | None:
    """With a separate admin listener, admin routes exist only there: on the other one each answers 404, as
    if the route did not exist (None: the request may go on). Open probes are served on both; webhooks only
    on the other one, which their route checks itself (bridge.web.receive_webhook). Applied around every
    other route by bridge.routing.edge."""
    ports = request.app[ADMIN_PORTS]
    if ports and getattr(request.match_info.route.handler, _ADMIN_MARK, False) and local_port(request) not in ports:
        return not_on_this_listener(request)
    return None


def _int_arg(request: web.Request, name: str, default: int, lo: int = 1, hi: int = 1000) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.EventInvalid(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise errors.EventInvalid(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name) or None
    if raw is not None and raw not in allowed:
        raise errors.EventInvalid(f"query parameter {name!r} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw


def _bad_request(exc: errors.InputError) -> web.Response:
    return json_response({"error": "bad_request", "message": exc.message}, status=400)


async def get_approval(request: web.Request) -> web.Response:
    source, approval_id = request.match_info["source"], request.match_info["approval_id"]
    detail = await views.approval_detail(request.app[STORE], source, approval_id)
    if detail is None:
        return json_error(404, "not_found", f"no approval {approval_id!r} from source {source!r} is known")
    return json_response(detail)


async def list_approvals(request: web.Request) -> web.Response:
    try:
        status = _choice(request, "status", tuple(ApprovalState))
        limit = _int_arg(request, "limit", 100)
        since = None
        if request.query.get("since"):
            try:
                since = datetime.fromisoformat(request.query["since"].replace("Z", "+00:00"))
            except ValueError:
                raise errors.EventInvalid("query parameter 'since' must be an RFC 3339 time") from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
    except errors.InputError as exc:
        return _bad_request(exc)
    rows = await request.app[STORE].list_approvals(
        status=status, source=request.query.get("source") or None, since=since, limit=limit
    )
    return json_response({"approvals": [views.approval_summary(a) for a in rows], "count": len(rows)})


async def get_event(request: web.Request) -> web.Response:
    source, event_id = request.match_info["source"], request.match_info["event_id"]
    ie = await request.app[STORE].get_event(source, event_id)
    if ie is None:
        return json_error(404, "not_found", f"no event {event_id!r} from source {source!r} is stored")
    body = views.event(ie)
    body["event"] = ie.event.to_dict()
    return json_response(body)


async def list_jobs(request: web.Request) -> web.Response:
    try:
        state = _choice(request, "state", tuple(JobState))
        limit = _int_arg(request, "limit", 100)
    except errors.InputError as exc:
        return _bad_request(exc)
    jobs = await request.app[STORE].list_jobs(state, limit)
    return json_response({"jobs": [views.job(j) for j in jobs], "count": len(jobs)})


async def retry_job(request: web.Request) -> web.Response:
    try:
        job, n = await operator_http.retry_job(request, by=VIA)
    except operator_http.Refused as r:
        return json_error(r.status, r.code, r.message)
    log.info("admin.job_retried", job_id=job.id, job_kind=job.kind, source=job.source, approval_id=job.approval_id,
             event_id=job.event_id)
    return json_response({"retried": n, "job_id": job.id})


async def retry_jobs(request: web.Request) -> web.Response:
    if request.query.get("state") != JobState.DEAD:
        return json_error(400, "bad_request", "bulk retry needs ?state=dead")
    st, clock = request.app[STORE], request.app[CLOCK]
    n = await operate.retry_dead(st, clock.now(), None, by="admin API")
    request.app[WAKE]()
    log.info("admin.dead_jobs_retried", count=n)
    return json_response({"retried": n})


async def recall_approval(request: web.Request) -> web.Response:
    """A manual recall: stored as an operator's `deleted` event (see bridge.operate)."""
    try:
        event = await operator_http.recall(request, via=VIA)
    except operator_http.Refused as r:
        return json_error(r.status, r.code, r.message)
    return json_response({"status": "accepted", "event_id": event.event_id}, status=202)


async def resync_approval(request: web.Request) -> web.Response:
    """Re-apply the approval's current status to every card it has (for suspected drift)."""
    try:
        ids = await operator_http.resync(request, via=VIA)
    except operator_http.Refused as r:
        return json_error(r.status, r.code, r.message)
    return json_response({"jobs": ids}, status=202)


async def readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app)
    failing = [name for name, c in checks.items() if not c["ok"]]
    role = request.app.get(ROLE, Role.ALL)
    body: dict[str, Any] = {"status": "ok" if not failing else "unavailable", "role": str(role), "checks": checks}
    if failing:
        body["failing"] = failing
    return json_response(body, status=200 if not failing else 503)


async def readiness(app: web.Application) -> dict[str, dict[str, Any]]:
    """The checks behind /readyz (storage writable, worker running, DingTalk token), also exported on /metrics
    as bridge_ready and bridge_readiness_check{check} so an alert needs no second probe."""
    checks: dict[str, dict[str, Any]] = {}
    try:
        await app[STORE].check_writable()
        checks["storage"] = {"ok": True}
    except errors.StorageUnavailable as exc:
        checks["storage"] = {"ok": False, "error": str(exc)}
    role = app.get(ROLE, Role.ALL)
    w = app.get(WORKER)
    if not role.works:
        checks["worker"] = {"ok": True, "detail": f"not run in this process (role {role})"}
    else:
        checks["worker"] = {"ok": bool(w is not None and w.running)}
        if not checks["worker"]["ok"]:
            checks["worker"]["error"] = "the worker is not running"
    checks["dingtalk_token"] = _token_check(app)
    for sc in app.get(STREAMS, []):
        st = sc.status()
        checks[f"stream:{sc.source.name}"] = {"ok": st["connected"], "detail": st} if st["connected"] else \
            {"ok": False, "error": f"the DingTalk Stream connection is {st['state']}"
             + (f" ({st['last_error']})" if st["last_error"] else ""), "detail": st}
    return checks


def _token_check(app: web.Application) -> dict[str, Any]:
    """Each DingTalk app's token: failing when any app's last gettoken failed (they are named)."""
    clients = app.get(CLIENTS)
    apps: dict[str, dict[str, Any]] = {}
    for name, client in clients or ():
        ok_at = getattr(client, "last_token_ok_at", None)
        failed_at = getattr(client, "last_token_error_at", None)
        if failed_at is not None and (ok_at is None or failed_at > ok_at):
            apps[name] = {"ok": False, "error": "the last attempt to get a DingTalk access token failed"}
        else:
            apps[name] = {"ok": True, "detail": "token obtained" if ok_at else "not needed yet"}
    failing = [name for name, a in apps.items() if not a["ok"]]
    if failing:
        return {"ok": False, "error": "the last attempt to get a DingTalk access token failed for app "
                + ", ".join(failing), "apps": apps}
    obtained = any(a["detail"] == "token obtained" for a in apps.values())
    return {"ok": True, "detail": "token obtained" if obtained else "not needed yet", "apps": apps}


async def list_apps(request: web.Request) -> web.Response:
    """Each DingTalk app with this process's figures (token, calls, errors, throttled), and this process's
    DingTalk Stream connections (state, connected_at, counts): what `bridge status` prints."""
    app = request.app
    clients = app.get(CLIENTS)
    apps = clients.figures(app[CLOCK]) if clients is not None else []
    streams = [sc.status() for sc in app.get(STREAMS, [])]
    return json_response({"apps": apps, "role": str(app.get(ROLE, Role.ALL)), "count": len(apps),
                          "streams": streams})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[METRICS]
    try:
        m.set_job_counts(await app[STORE].job_counts(app[CLOCK].now()), app[CLOCK].now())
    except errors.StorageUnavailable:
        pass
    m.set_readiness({name: bool(c["ok"]) for name, c in (await readiness(app)).items()})
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    resp = web.Response(body=encoder(m.registry))
    resp.headers["Content-Type"] = content_type
    return resp


async def openapi(request: web.Request) -> web.Response:
    return json_response(spec.document())


def add_routes(app: web.Application, *, wrap: Wrap) -> None:
    """The probes, metrics, the API's description and the admin API, each handler wrapped by `wrap` (the rules
    every answer passes: bridge.routing.edge)."""
    r = app.router
    r.add_get("/readyz", wrap(readyz))
    r.add_get("/metrics", wrap(metrics))
    r.add_get("/openapi.json", wrap(openapi))
    r.add_get("/apps", wrap(admin_only(list_apps)))
    r.add_get("/approvals", wrap(admin_only(list_approvals)))
    r.add_get("/approvals/{source}/{approval_id}", wrap(admin_only(get_approval)))
    r.add_post("/approvals/{source}/{approval_id}/recall", wrap(admin_only(recall_approval)))
    r.add_post("/approvals/{source}/{approval_id}/resync", wrap(admin_only(resync_approval)))
    r.add_get("/events/{source}/{event_id}", wrap(admin_only(get_event)))
    r.add_get("/jobs", wrap(admin_only(list_jobs)))
    r.add_post("/jobs/retry", wrap(admin_only(retry_jobs)))
    r.add_post("/jobs/{job_id}/retry", wrap(admin_only(retry_job)))

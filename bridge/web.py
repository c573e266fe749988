"""The webhook receiver: HTTP request → verified, normalised, durably stored event → answer.

Order of work for `POST /webhooks/{source}`: size limit → source lookup → signature over the raw body →
JSON parse → normalise to one `ApprovalEvent` → validate → store → answer. Nothing here calls DingTalk;
the worker is only woken. Every answer is JSON naming what happened:

    202 accepted · 200 duplicate · 400 malformed or invalid (every bad field named) · 401 signature ·
    404 unknown source · 413 too large · 415 not JSON · 503 storage unavailable

Native platform sources (DingTalk, Feishu, WeCom callbacks) answer in the platform's own format instead,
built by `bridge.native`. Bad input is logged once (`webhook.rejected`) without secrets, and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from bridge import errors, events, logs
from bridge.appkeys import ADMIN_PORTS, CLOCK, CONFIG, INTAKE, METRICS, REJECTIONS, STORE, WAKE
from bridge.config import Config, SourceConfig
from bridge.sources import intake, signatures
from bridge.store import Store

log = logs.get_logger("bridge.web")

JSON_TYPES = ("application/json", "text/json")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Wrap = Callable[[Handler], Handler]  # what bridge.routing.edge is: the rules around one route's handler


def dumps(data: Any) -> str:
    """JSON text for every answer bridge gives: UTF-8 as it is, so 采购申请 stays readable (not \\u91c7...)."""
    return json.dumps(data, ensure_ascii=False)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    """A JSON answer (`application/json; charset=utf-8`) written with `dumps`."""
    return web.json_response(data, status=status, dumps=dumps)


def fast_json_response(data: dict[str, Any], *, status: int) -> web.Response:
    """`json_response` for the webhook path's own small answers (str and int values only), encoded by orjson:
    the same JSON, written in a tenth of the time."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", charset="utf-8")


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": code, "message": message, **extra}, status=status)


def json_answer_for(request: web.Request, exc: web.HTTPException) -> web.Response | None:
    """aiohttp's own 404 / 405 / 413 answers are plain text; ours are JSON, everywhere. The JSON answer for
    `exc`, or None when it is to be raised as it is (already JSON, or not an error). Used around every
    route (bridge.routing.edge) and by the webhook route itself."""
    if exc.content_type == "application/json" or exc.status < 400:
        return None
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "error")
    message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path[:200]}"
    resp = json_error(exc.status, code, message)
    if "Allow" in exc.headers:  # RFC 9110: a 405 names the methods the resource has
        resp.headers["Allow"] = exc.headers["Allow"]
    return resp


def local_port(request: web.Request) -> int | None:
    """The port of the listener the request came in on (None when the transport is gone or not a socket)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def not_on_this_listener(request: web.Request) -> web.Response:
    """The 404 for a route that exists only on the other listener (admin routes, webhooks), worded as if it
    did not exist here."""
    return json_error(404, "not_found", f"no such endpoint on this listener: {request.method} {request.path[:200]}")


def _source_label(cfg: Config, name: str) -> str:
    return name if cfg.source(name) is not None else "_unknown"


async def receive_webhook(request: web.Request) -> web.StreamResponse:
    app = request.app
    ports = app[ADMIN_PORTS]
    if ports and local_port(request) in ports:  # with a separate admin listener, webhooks are not served there
        return not_on_this_listener(request)
    cfg, metrics = app[CONFIG], app[METRICS]
    started = time.perf_counter()
    name = request.match_info["source"]
    bound = logs.bind_request(source=name[:64])
    app[INTAKE].arrived(app[CLOCK].monotonic())  # the worker's clock: it compares the two
    response: web.StreamResponse
    try:
        response = await _receive(request, name)
    except errors.InputError as exc:
        log.warning("webhook.rejected", status=exc.status, error=exc.code, reason=exc.message,
                    problems=[p.as_dict() for p in exc.problems] or None)
        app[REJECTIONS].note(_source_label(cfg, name), exc.code)
        response = json_response(exc.as_dict(), status=exc.status)
    except errors.StorageUnavailable as exc:
        log.error("webhook.storage_unavailable", reason=str(exc))
        response = json_error(503, "storage_unavailable", str(exc), retry=True)
        response.headers["Retry-After"] = "5"
    except web.HTTPException as exc:  # one of aiohttp's own, not wrapped by bridge.routing.edge on this route
        answer = json_answer_for(request, exc)
        if answer is None:
            raise
        response = answer
    finally:
        logs.reset_request(bound)
    metrics.webhook_answered(_source_label(cfg, name), response.status, time.perf_counter() - started)
    return response


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    timeout_s = request.app[CONFIG].server.body_timeout_s
    try:
        if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
            body = await request.read()
        else:
            async with asyncio.timeout(timeout_s):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise errors.PayloadTooLarge(f"body is larger than the limit of {limit} bytes") from exc
    except TimeoutError:
        raise errors.RequestTimeout(f"the body was not received within {timeout_s:g} s "
                                    "([server] body_timeout_s)") from None
    if len(body) > limit:
        raise errors.PayloadTooLarge(f"body is {len(body)} bytes; the limit is {limit}")
    return body


async def _receive(request: web.Request, name: str) -> web.StreamResponse:
    app = request.app
    cfg, st, clock = app[CONFIG], app[STORE], app[CLOCK]
    body = await _read_body(request, cfg.server.max_body_bytes)
    source = cfg.source(name)
    if source is None:
        raise errors.UnknownSource(f"no source named {name[:64]!r} is configured")
    if source.native is not None:
        return await _receive_native(request, source, body)
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["POST"])
    webhook_id = signatures.verify(source, request.headers, body, clock.now())
    if request.content_type not in JSON_TYPES:
        raise errors.UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.content_type or 'nothing'!r}"
        )
    webhook_id = webhook_id or signatures.delivery_id(request.headers)
    event = intake.decode(source, body, clock.now(), headers=request.headers, webhook_id=webhook_id,
                          window=intake.window_of(cfg.server)).event
    assert event is not None  # only native handshakes carry no event
    logs.bind_request(approval_id=event.approval_id, event_id=event.event_id)
    await _require_card_data(st, event)
    return await _store(request, event, intake.redact(source, body), accepted_reply=None)


async def _require_card_data(st: Store, event: events.ApprovalEvent) -> None:
    """title, recipients and url are needed on the first event of an approval that makes a card."""
    problems = await intake.first_event_problems(st, event)
    if problems:
        raise errors.EventInvalid(
            "invalid event: this is the first event for approval "
            f"{event.approval_id!r}, so it must carry {', '.join(p.field for p in problems)}",
            problems=problems,
        )


async def _store(
    request: web.Request, event: events.ApprovalEvent, raw: bytes, accepted_reply: web.StreamResponse | None
) -> web.StreamResponse:
    app = request.app
    st, clock = app[STORE], app[CLOCK]
    result = await st.add_event(event, raw, clock.now())
    ids = {"event_id": event.event_id, "approval_id": event.approval_id, "inbox_id": result.inbox_id}
    if result.inserted:
        app[WAKE]()
        log.info("webhook.accepted", status=event.status.value if event.status else None)
        return accepted_reply or fast_json_response({"status": "accepted", **ids}, status=202)
    log.info("webhook.duplicate")
    return accepted_reply or fast_json_response(
        {"status": "duplicate", "message": "this event id was already accepted; nothing changed", **ids}, status=200
    )


async def _receive_native(request: web.Request, source: SourceConfig, body: bytes) -> web.StreamResponse:
    clock = request.app[CLOCK]
    result = intake.decode(source, body, clock.now(), method=request.method, query=request.query,
                           headers=request.headers, window=intake.window_of(request.app[CONFIG].server))
    assert result.reply is not None  # a native source always answers in its platform's format
    reply = web.Response(status=result.reply.status, body=result.reply.body)
    reply.headers["Content-Type"] = result.reply.content_type
    if result.event is None:
        log.info("webhook.handshake")
        return reply
    logs.bind_request(approval_id=result.event.approval_id, event_id=result.event.event_id)
    return await _store(request, result.event, intake.redact(source, body), accepted_reply=reply)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def add_routes(app: web.Application, *, wrap: Wrap, webhooks: bool = True) -> None:
    """The receiver's routes; without `webhooks` (a worker-role process) /webhooks/* answers 404. `wrap` applies
    the rules every answer passes (bridge.routing.edge) to every route but the webhook's, which applies them
    itself: it is the hot path, and a wrapper's frame per request is measurable there."""
    if webhooks:
        app.router.add_route("*", "/webhooks/{source}", receive_webhook)
    app.router.add_get("/healthz", wrap(healthz))

"""The simulated DingTalk Stream gateway: open-connection, the WebSocket, tickets, pings, disconnect, redelivery.

Why it exists: a Stream source (`transport = "stream"`) has no HTTP endpoint to post to; DingTalk pushes events over
a WebSocket the app opened. To test that end to end (and to check it with the official `dingtalk-stream` SDK) the
simulator plays the gateway (reference: approval-callbacks.md §1.9):

- `POST /v1.0/gateway/connections/open` `{"clientId","clientSecret","subscriptions":[...]}` → `{"endpoint",
  "ticket"}` for a simulator app (clientId = app_key, clientSecret = app_secret); 401 for a bad pair, 400 for a
  bad body. Tickets are single-use and expire (`ticket_ttl_s`, 90 s like DingTalk).
- `GET /connect?ticket=…` upgrades to the WebSocket (401 without a valid ticket). Frames are the SYSTEM / EVENT
  JSON of §1.9; each EVENT goes to one randomly chosen connection of its app.
- An EVENT stays pending until acked with code 200 and a `status` other than `LATER`; un-acked messages are
  redelivered after `ack_timeout_s`, LATER ones after `later_delay_s` (counted per message as `deliveries`).
- The inspection API: `POST /_sim/stream/events` (an approval event to push), `POST /_sim/stream/ping`,
  `POST /_sim/stream/disconnect` (SYSTEM disconnect, then the socket is closed), `GET /_sim/stream` (connections,
  pending messages, acks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from bridge.simulator.model import SimApp

log = structlog.get_logger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
CONNECT_PATH = "/connect"
EVENT_TYPES = ("bpms_instance_change", "bpms_task_change")
LATER = "LATER"


@dataclass(slots=True)
class StreamMessage:
    """One EVENT frame the gateway owes a client, until it is acked."""

    message_id: str
    app_key: str
    frame: dict[str, Any]
    deliveries: int = 0
    due_at: float = 0.0  # when it is (re)sent next; inf while waiting for an ack
    acked: bool = False
    answers: list[str] = field(default_factory=list)  # "SUCCESS" / "LATER" / "code:<n>", in order


@dataclass(slots=True)
class _Conn:
    app_key: str
    ws: web.WebSocketResponse
    conn_id: int


class StreamGateway:
    """The gateway's state. `clock` is monotonic seconds (injectable), `rng` picks a connection per message."""

    def __init__(
        self,
        apps: tuple[SimApp, ...],
        *,
        ticket_ttl_s: float = 90.0,
        ack_timeout_s: float = 5.0,
        later_delay_s: float = 1.0,
        disconnect_grace_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.apps = {a.app_key: a for a in apps}
        self.ticket_ttl_s, self.ack_timeout_s, self.later_delay_s = ticket_ttl_s, ack_timeout_s, later_delay_s
        self.disconnect_grace_s = disconnect_grace_s
        self.clock, self.rng = clock, rng or random.Random()
        self.tickets: dict[str, tuple[str, float]] = {}
        self.conns: list[_Conn] = []
        self.messages: dict[str, StreamMessage] = {}
        self.connections_opened = 0
        self.tickets_issued = 0
        self.pongs = 0
        self._wake = asyncio.Event()
        self._seq = 0

    # --- tickets ---------------------------------------------------------------------------------------
    def open_connection(self, client_id: str, client_secret: str) -> str:
        app = self.apps.get(client_id)
        if app is None or app.app_secret != client_secret:
            raise PermissionError("unknown clientId or wrong clientSecret")
        ticket = secrets.token_urlsafe(24)
        self.tickets[ticket] = (app.app_key, self.clock() + self.ticket_ttl_s)
        self.tickets_issued += 1
        return ticket

    def redeem(self, ticket: str) -> str | None:
        """The app key of a valid ticket, which is used up; None for an unknown, used or expired one."""
        entry = self.tickets.pop(ticket, None)
        if entry is None or entry[1] < self.clock():
            return None
        return entry[0]

    # --- messages --------------------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:06d}_{secrets.token_hex(4)}"

    def push_event(self, app_key: str, event_type: str, data: dict[str, Any], *, event_id: str | None = None,
                   corp_id: str = "dingsimcorp") -> StreamMessage:
        """Queue an EVENT for `app_key`'s connections; it is sent as soon as one is connected."""
        now_ms = str(int(time.time() * 1000))
        message_id = self._next_id("msg")
        headers = {
            "messageId": message_id, "topic": "*", "contentType": "application/json", "time": now_ms,
            "eventType": event_type, "eventId": event_id or self._next_id("evt"), "eventBornTime": now_ms,
            "eventCorpId": corp_id, "eventUnifiedAppId": app_key,
        }
        frame = {"specVersion": "1.0", "type": "EVENT", "headers": headers,
                 "data": json.dumps(data, ensure_ascii=False)}
        msg = StreamMessage(message_id=message_id, app_key=app_key, frame=frame, due_at=self.clock())
        self.messages[message_id] = msg
        self._wake.set()
        return msg

    def on_ack(self, frame: dict[str, Any]) -> None:
        """A client's answer: 200 + status != LATER acks the message; anything else schedules a redelivery."""
        headers = frame.get("headers")
        msg = self.messages.get(str(headers.get("messageId", ""))) if isinstance(headers, dict) else None
        if msg is None or msg.acked:
            self.pongs += 1  # answers to pings (or late duplicates) need no bookkeeping
            return
        status = "SUCCESS"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            data = json.loads(frame.get("data") or "{}")
            status = str(data.get("status", "SUCCESS")) if isinstance(data, dict) else "SUCCESS"
        if frame.get("code") != 200:
            status = f"code:{frame.get('code')}"
        msg.answers.append(status)
        if status == "SUCCESS":
            msg.acked = True
        else:
            msg.due_at = self.clock() + self.later_delay_s
            self._wake.set()

    def _conns_of(self, app_key: str) -> list[_Conn]:
        return [c for c in self.conns if c.app_key == app_key and not c.ws.closed]

    async def deliver_due(self) -> None:
        """Send every message that is due to one random connection of its app (no connection: it waits)."""
        now = self.clock()
        for msg in list(self.messages.values()):
            if msg.acked or msg.due_at > now:
                continue
            conns = self._conns_of(msg.app_key)
            if not conns:
                continue
            conn = self.rng.choice(conns)
            msg.deliveries += 1
            msg.due_at = now + self.ack_timeout_s
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(json.dumps(msg.frame, ensure_ascii=False))

    async def run(self, tick_s: float = 0.05) -> None:
        """Deliver and redeliver until cancelled (woken early by new messages, acks and connections)."""
        while True:
            await self.deliver_due()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick_s)

    async def system(self, topic: str, data: dict[str, Any]) -> int:
        """Send a SYSTEM frame to every connection; returns how many got it."""
        frame = {"specVersion": "1.0", "type": "SYSTEM",
                 "headers": {"messageId": self._next_id("sys"), "topic": topic, "contentType": "application/json",
                             "time": str(int(time.time() * 1000))},
                 "data": json.dumps(data)}
        sent = 0
        for conn in [c for c in self.conns if not c.ws.closed]:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(json.dumps(frame))
                sent += 1
        return sent

    async def disconnect_all(self) -> int:
        """SYSTEM disconnect to every connection, then close them after the grace period (DingTalk: ~10 s)."""
        sent = await self.system("disconnect", {"reason": "simulated disconnect"})
        conns = list(self.conns)

        async def close_later() -> None:
            await asyncio.sleep(self.disconnect_grace_s)
            for conn in conns:
                await conn.ws.close()

        asyncio.get_running_loop().create_task(close_later())
        return sent

    def view(self) -> dict[str, Any]:
        pending = [m for m in self.messages.values() if not m.acked]
        return {
            "connections": [{"conn_id": c.conn_id, "app_key": c.app_key} for c in self.conns if not c.ws.closed],
            "connections_opened": self.connections_opened, "tickets_issued": self.tickets_issued,
            "pending": len(pending), "pongs": self.pongs,
            "messages": [{"message_id": m.message_id, "event_id": m.frame["headers"]["eventId"],
                          "event_type": m.frame["headers"]["eventType"], "deliveries": m.deliveries,
                          "acked": m.acked, "answers": m.answers} for m in self.messages.values()],
        }


STREAM = web.AppKey("STREAM", StreamGateway)


async def _open(request: web.Request) -> web.Response:
    gw = request.app[STREAM]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("clientId"), str) \
            or not isinstance(body.get("clientSecret"), str):
        return web.json_response({"code": "InvalidParameter", "message": "clientId and clientSecret are required"},
                                 status=400)
    try:
        ticket = gw.open_connection(body["clientId"], body["clientSecret"])
    except PermissionError as exc:
        return web.json_response({"code": "InvalidAuthentication", "message": str(exc)}, status=401)
    endpoint = f"ws://{request.host}{CONNECT_PATH}"
    return web.json_response({"endpoint": endpoint, "ticket": ticket})


async def _connect(request: web.Request) -> web.StreamResponse:
    gw = request.app[STREAM]
    app_key = gw.redeem(request.query.get("ticket", ""))
    if app_key is None:
        return web.json_response({"code": "InvalidTicket", "message": "unknown, used or expired ticket"}, status=401)
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    gw.connections_opened += 1
    conn = _Conn(app_key=app_key, ws=ws, conn_id=gw.connections_opened)
    gw.conns.append(conn)
    gw._wake.set()
    log.info("simulator.stream_connected", app_key=app_key, conn_id=conn.conn_id)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            with contextlib.suppress(ValueError):
                frame = json.loads(msg.data)
                if isinstance(frame, dict):
                    gw.on_ack(frame)
    finally:
        gw.conns.remove(conn)
        log.info("simulator.stream_closed", app_key=app_key, conn_id=conn.conn_id)
    return ws


async def _sim_event(request: web.Request) -> web.Response:
    """Push an approval event: {"event_type", "app_key"?, "event_id"?, "data": {...}} or the data fields flat."""
    gw = request.app[STREAM]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    event_type = body.pop("event_type", "bpms_instance_change")
    app_key = body.pop("app_key", None) or next(iter(gw.apps))
    event_id = body.pop("event_id", None)
    data = body.pop("data", None) if "data" in body else body
    if event_type not in EVENT_TYPES or app_key not in gw.apps or not isinstance(data, dict):
        return web.json_response({"error": f"event_type must be one of {list(EVENT_TYPES)}, app_key a simulator "
                                  "app, data an object"}, status=400)
    msg = gw.push_event(app_key, event_type, data, event_id=event_id)
    return web.json_response({"message_id": msg.message_id, "event_id": msg.frame["headers"]["eventId"]})


async def _sim_ping(request: web.Request) -> web.Response:
    sent = await request.app[STREAM].system("ping", {"opaque": secrets.token_hex(8)})
    return web.json_response({"sent": sent})


async def _sim_disconnect(request: web.Request) -> web.Response:
    return web.json_response({"sent": await request.app[STREAM].disconnect_all()})


async def _sim_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[STREAM].view())


def add_routes(app: web.Application, gateway: StreamGateway) -> None:
    """Serve the gateway on `app`; its delivery loop runs while the app does."""
    app[STREAM] = gateway
    app.router.add_post(OPEN_PATH, _open)
    app.router.add_get(CONNECT_PATH, _connect)
    app.router.add_post("/_sim/stream/events", _sim_event)
    app.router.add_post("/_sim/stream/ping", _sim_ping)
    app.router.add_post("/_sim/stream/disconnect", _sim_disconnect)
    app.router.add_get("/_sim/stream", _sim_view)

    async def loop_ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gateway.run(), name="sim-stream-gateway")
        yield
        for conn in list(gateway.conns):
            await conn.ws.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(loop_ctx)

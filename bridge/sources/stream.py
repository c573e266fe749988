"""The DingTalk Stream mode client: one long-lived WebSocket per `transport = "stream"` source.

Why it exists: with Stream mode DingTalk needs no public URL; bridge opens the connection and DingTalk pushes
`bpms_instance_change` / `bpms_task_change` over it. Each connection gets a fresh single-use ticket
(`POST {gateway_url}/v1.0/gateway/connections/open`), then the WebSocket; every EVENT goes through the same
normaliser as HTTP push and into the store, and is acked SUCCESS only once `add_event` has returned (the row is
committed). A store that fails answers LATER, so DingTalk redelivers; a redelivered event the inbox already
holds (same eventId, the inbox's unique key) is acked and counted, never stored twice. SYSTEM `ping` is echoed,
`disconnect` and any error lead to a reconnect after jittered exponential backoff (clock and rng injectable).

Built on aiohttp's WebSocket client rather than the official `dingtalk-stream` SDK, whose open-connection call
uses blocking `requests` on the event loop and whose reconnect path sleeps a fixed 3-10 s (docs/native-callbacks.md).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import aiohttp

from bridge import errors, events, logs
from bridge.clock import Clock
from bridge.config_model import SourceConfig
from bridge.sources.native.stream_frames import (
    OPEN_PATH,
    SUBSCRIPTIONS,
    AckStatus,
    Frame,
    FrameType,
    SystemTopic,
    ack,
    backoff_s,
    parse_frame,
    to_event,
)
from bridge.sources.native.stream_keys import StreamKeys
from bridge.store import Store

log = logs.get_logger("bridge.stream")

USER_AGENT = "bridge-stream/1.0 (aiohttp)"


class StreamState(StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting to reconnect
    STOPPED = "stopped"


class StreamObserver(Protocol):
    """What the metrics implement (bridge.metrics.Metrics)."""

    def stream_connected(self, source: str, connected: bool) -> None: ...
    def stream_reconnect(self, source: str, reason: str) -> None: ...
    def stream_ack(self, source: str, status: str) -> None: ...
    def stream_redelivery(self, source: str) -> None: ...


class _NoObserver:
    def stream_connected(self, source: str, connected: bool) -> None:
        pass

    def stream_reconnect(self, source: str, reason: str) -> None:
        pass

    def stream_ack(self, source: str, status: str) -> None:
        pass

    def stream_redelivery(self, source: str) -> None:
        pass


class GatewayError(Exception):
    """The open-connection call failed (HTTP error, bad answer); the client backs off and retries."""


class StreamClient:
    """Keeps one Stream connection for `source` open until `stop()`; `status()` says how it is doing."""

    def __init__(
        self,
        source: SourceConfig,
        store: Store,
        session: aiohttp.ClientSession,
        clock: Clock,
        *,
        wake: Callable[[], None] = lambda: None,
        observer: StreamObserver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        assert source.native is not None and source.native.stream is not None, "a transport = 'stream' source"
        self.source, self.cfg, self.keys = source, source.native, source.native.stream
        self.store, self.session, self.clock, self.wake = store, session, clock, wake
        self.observer: StreamObserver = observer or _NoObserver()
        self.rng = rng or random.Random()
        self.state = StreamState.STARTING
        self.connections = 0
        self.failures = 0  # consecutive failed attempts (the backoff exponent)
        self.last_error: str | None = None
        self.connected_at: datetime | None = None
        self.counts = {"events": 0, "duplicates": 0, "later": 0, "pings": 0, "disconnects": 0}
        self._stop = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"source": self.source.name, "state": str(self.state), "connected": self.state is StreamState.CONNECTED,
                "connections": self.connections, "consecutive_failures": self.failures,
                "last_error": self.last_error, "gateway_url": self.keys.gateway_url,
                "connected_at": self.connected_at.isoformat() if self.connected_at else None, **self.counts}

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None and not self._ws.closed:
            asyncio.get_running_loop().create_task(self._ws.close())

    async def run(self) -> None:
        """Connect, serve, reconnect; returns after `stop()`."""
        log.info("stream.starting", source=self.source.name, gateway_url=self.keys.gateway_url)
        while not self._stop.is_set():
            reason = "closed"
            try:
                reason = await self._connect_once()
            except (GatewayError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = type(exc).__name__
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self.failures += 1
                log.warning("stream.connect_failed", source=self.source.name, error=self.last_error,
                            attempt=self.failures)
            self._set_connected(False)
            if self._stop.is_set():
                break
            delay = backoff_s(self.failures, self.keys.reconnect_base_s, self.keys.reconnect_max_s, self.rng)
            self.state = StreamState.BACKOFF
            self.observer.stream_reconnect(self.source.name, reason)
            log.info("stream.reconnecting", source=self.source.name, reason=reason, delay_s=round(delay, 3))
            await self._sleep_or_stop(delay)
        self.state = StreamState.STOPPED
        log.info("stream.stopped", source=self.source.name)

    async def _sleep_or_stop(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    def _set_connected(self, connected: bool) -> None:
        if connected == (self.state is StreamState.CONNECTED):
            return
        self.state = StreamState.CONNECTED if connected else StreamState.BACKOFF
        self.connected_at = self.clock.now() if connected else None
        self.observer.stream_connected(self.source.name, connected)

    async def open_connection(self) -> tuple[str, str]:
        """A fresh (endpoint, ticket) from the gateway. The secret goes only into the request body."""
        body = {"clientId": self.keys.client_id, "clientSecret": self.keys.client_secret.reveal(),
                "subscriptions": list(SUBSCRIPTIONS), "ua": USER_AGENT, "localIp": "127.0.0.1"}
        url = self.keys.gateway_url + OPEN_PATH
        async with self.session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise GatewayError(f"open connection answered HTTP {resp.status}: {text[:200]}")
        try:
            answer = json.loads(text)
            endpoint, ticket = answer["endpoint"], answer["ticket"]
        except (ValueError, KeyError, TypeError):
            raise GatewayError("open connection answered without endpoint and ticket") from None
        if not isinstance(endpoint, str) or not isinstance(ticket, str) or not endpoint or not ticket:
            raise GatewayError("open connection answered an empty endpoint or ticket")
        return endpoint, ticket

    async def _connect_once(self) -> str:
        endpoint, ticket = await self.open_connection()
        ws = await self.session.ws_connect(endpoint, params={"ticket": ticket}, heartbeat=self.keys.keepalive_s,
                                           timeout=aiohttp.ClientWSTimeout(ws_close=5))
        self._ws = ws
        self.connections += 1
        self.failures = 0
        self.last_error = None
        self._set_connected(True)
        log.info("stream.connected", source=self.source.name, connection=self.connections)
        reason = "closed"
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                answer, disconnect = await self.handle_text(msg.data)
                if answer is not None:
                    await ws.send_str(json.dumps(answer, ensure_ascii=False))
                if disconnect:
                    reason = "disconnect"
                    break
        finally:
            await ws.close()
            self._ws = None
        if reason == "closed" and ws.exception() is not None:
            reason = type(ws.exception()).__name__
        log.info("stream.closed", source=self.source.name, reason=reason)
        return reason

    # --- frames ----------------------------------------------------------------------------------------
    async def handle_text(self, text: str) -> tuple[dict[str, Any] | None, bool]:
        """(the answer to send or None, whether to reconnect now) for one server frame."""
        try:
            frame = parse_frame(text)
        except errors.MalformedPayload as exc:
            log.warning("stream.bad_frame", source=self.source.name, reason=exc.message)
            return None, False
        if frame.type == FrameType.SYSTEM:
            if frame.topic == SystemTopic.PING:
                self.counts["pings"] += 1
                return ack(frame.message_id, data=frame.data), False
            if frame.topic == SystemTopic.DISCONNECT:
                self.counts["disconnects"] += 1
                log.info("stream.disconnect_requested", source=self.source.name)
                return None, True
            return None, False
        if frame.type != FrameType.EVENT:
            log.info("stream.ignored_frame", source=self.source.name, type=frame.type, topic=frame.topic)
            return None, False
        status = await self.store_event(frame)
        self.observer.stream_ack(self.source.name, str(status))
        return ack(frame.message_id, status=status), False

    async def store_event(self, frame: Frame) -> AckStatus:
        """Store one EVENT durably and say how to ack it: SUCCESS once stored (or already held), else LATER."""
        event_id = frame.headers.get("eventId")
        try:
            event = to_event(self.cfg, self.source.name, frame, self.clock.now())
        except errors.InputError as exc:  # unusable data: redelivering it would not help
            log.warning("stream.rejected", source=self.source.name, event_id=event_id, reason=exc.message)
            return AckStatus.SUCCESS
        bound = {"source": self.source.name, "event_id": event.event_id, "approval_id": event.approval_id}
        try:
            if not event.has_card_data and event.status not in (None, events.Status.DELETED) and \
                    events.missing_card_fields(event) and \
                    not await self.store.has_card_data(event.source, event.approval_id):
                log.warning("stream.rejected", **bound, reason="the first event of an approval lacks card data")
                return AckStatus.SUCCESS
            result = await self.store.add_event(event, frame.data.encode(), self.clock.now())
        except Exception as exc:  # any failure to store means "not durable": ask for a redelivery
            self.counts["later"] += 1
            log.error("stream.store_failed", **bound, error=f"{type(exc).__name__}: {exc}"[:300])
            return AckStatus.LATER
        if result.inserted:
            self.counts["events"] += 1
            self.wake()
            log.info("stream.accepted", **bound, status=event.status.value if event.status else None)
        else:
            self.counts["duplicates"] += 1
            self.observer.stream_redelivery(self.source.name)
            log.info("stream.duplicate", **bound)
        return AckStatus.SUCCESS


def stream_sources(sources: tuple[SourceConfig, ...]) -> list[SourceConfig]:
    """The configured sources that receive over Stream mode."""
    return [s for s in sources if s.native is not None and s.native.stream is not None]


__all__ = ["GatewayError", "StreamClient", "StreamKeys", "StreamObserver", "StreamState", "stream_sources"]

"""Connection limits for bridge's HTTP listeners: what aiohttp leaves to the deployer, against slow clients.

Why it exists: aiohttp closes a connection that stays idle past its keep-alive timeout, but it has no limit on
how long a client may take to send its headers once it has started, and none on how many connections are
open. 2,000 sockets that each sent half a request line kept their file descriptors for good; past the
process's descriptor limit `accept()` failed and webhooks and /healthz went unanswered, with an error line
per attempt. This module adds, per listener:

- a header deadline (`[server] header_timeout_s`): from the first byte of a request to the end of its headers;
- the idle keep-alive limit (`idle_timeout_s`, aiohttp's own keep-alive timeout, also for a connection that
  never sends a byte);
- a cap on open connections (`max_connections`, lowered to stay under the descriptor limit). At the cap a new
  connection evicts the oldest one that has no request in progress (slow or idle clients, the cheap ones to
  hold), so a webhook sender that connects during a flood still gets its answer; only when every connection
  is busy with a request is the new one closed;
- `FloodLog`: such events, and malformed requests (aiohttp logs those at error level with a traceback each),
  become one warning line per kind and then one summary line per minute with the count.

The body deadline (`body_timeout_s`) lives in the webhook handler, which reads the body. Everything here uses
aiohttp's `RequestHandler` and `Server` from the inside; tests/integration/test_guard.py pins the behaviour.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import HttpProcessingError

from bridge import logs
from bridge.config import ServerConfig

log = logs.get_logger("bridge.http")

FD_RESERVE = 64  # descriptors kept free for the database, logs, DingTalk client sockets and the listeners
FLOOD_WINDOW_S = 60.0


class FloodLog:
    """Log the first event of each kind at once, then count the rest and log one summary per window.

    A flood of N events of one kind in a window writes at most two lines for that window, never N.
    `clock` is injectable (monotonic seconds) so tests can move time.
    """

    def __init__(self, window_s: float = FLOOD_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self._started: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def note(self, kind: str, **fields: Any) -> None:
        now = self.clock()
        started = self._started.get(kind)
        if started is not None and now - started < self.window_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            self._schedule_flush()
            return
        self._summarise(kind, now)
        self._started[kind] = now
        log.warning(kind, **fields)

    def flush(self) -> None:
        """Write the summary of every window that has ended (called by a timer, and by tests)."""
        self._timer = None
        now = self.clock()
        for kind, started in list(self._started.items()):
            if now - started >= self.window_s:
                self._summarise(kind, now)
                del self._started[kind]
        if self._suppressed:
            self._schedule_flush()

    def _summarise(self, kind: str, now: float) -> None:
        count = self._suppressed.pop(kind, 0)
        if count:
            log.warning(f"{kind}.repeated", count=count, window_s=round(now - self._started[kind], 1))

    def _schedule_flush(self) -> None:
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.window_s, self.flush)
            except RuntimeError:  # no loop (unit tests call flush() themselves)
                pass


def connection_cap(configured: int) -> int:
    """`configured`, lowered so open connections can never exhaust the descriptor limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(8, min(configured, soft - FD_RESERVE))


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout_s: float
    idle_timeout_s: float
    max_connections: int

    @classmethod
    def from_config(cls, server: ServerConfig) -> Limits:
        return cls(server.header_timeout_s, server.idle_timeout_s, connection_cap(server.max_connections))


class Guard:
    """The open connections of one runner (every listener it serves), oldest first, and the flood log."""

    def __init__(self, limits: Limits, flood: FloodLog | None = None) -> None:
        self.limits = limits
        self.flood = flood or FloodLog()
        self.open: dict[GuardedHandler, None] = {}  # insertion order = age

    def admit(self, handler: GuardedHandler) -> bool:
        """Make room for `handler`; False when every open connection is busy with a request."""
        if len(self.open) >= self.limits.max_connections:
            victim = next((h for h in self.open if h.evictable), None)
            if victim is None:
                self.flood.note("http.connection_refused", open=len(self.open),
                                max_connections=self.limits.max_connections)
                return False
            self.flood.note("http.connection_evicted", open=len(self.open),
                            max_connections=self.limits.max_connections)
            self.drop(victim)
            victim.force_close()
        self.open[handler] = None
        return True

    def drop(self, handler: GuardedHandler) -> None:
        self.open.pop(handler, None)


class GuardedHandler(web_protocol.RequestHandler):
    """aiohttp's per-connection protocol with a header deadline, the connection cap and bounded logging."""

    def __init__(self, manager: web_server.Server, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None

    @property
    def evictable(self) -> bool:
        """No request is being handled or queued: the connection is idle or still sending headers."""
        return not self._request_in_progress and not self._messages

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        admitted = self._guard.admit(self)
        super().connection_made(transport)
        if not admitted:
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.drop(self)
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a request's headers are complete
            self._cancel_header_timer()
        elif data and self._header_timer is None and self.evictable:
            self._header_timer = self._loop.call_later(
                self._guard.limits.header_timeout_s, self._headers_overdue, self._request_count)

    def _headers_overdue(self, count: int) -> None:
        self._header_timer = None
        if self._request_count == count and self.evictable and self.transport is not None:
            self._guard.flood.note("http.header_timeout", header_timeout_s=self._guard.limits.header_timeout_s)
            self.force_close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Malformed HTTP is the client's fault: one bounded warning, no traceback. Anything else stays an error."""
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # The first line only: the rest quotes the offending header, whose value may be a credential.
            reason = (str(exc.message).splitlines() or [""])[0][:120]
            self._guard.flood.note("http.malformed_request", reason=reason, status=exc.code)
            return
        super().log_exception(*args, **kw)


class GuardedServer(web_server.Server):
    def __init__(self, guard: Guard, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, guard=self.guard, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are guarded by `limits` (shared by every site of the runner)."""

    def __init__(self, app: web.Application, *, limits: Limits, flood: FloodLog | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", limits.idle_timeout_s)
        super().__init__(app, **kwargs)
        self.guard = Guard(limits, flood)

    async def _make_server(self) -> web_server.Server:
        plain = await super()._make_server()
        # aiohttp keeps the handler's keyword arguments and loop in private attributes; the guarded server
        # is the same server with a different protocol class.
        return GuardedServer(self.guard, plain.request_handler, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)

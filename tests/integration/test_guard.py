"""Hostile and slow clients against a real bridge listener on 127.0.0.1 (bridge.guard and the body deadline).

Limits are set small (half-second header deadline, 40 connections) so every test is bounded in count and time;
every wait is a bounded poll. Log lines are captured as JSON to check that floods stay a bounded number of lines.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from bridge import app as bridge_app
from bridge import config, guard
from bridge.sources import signatures
from bridge.store.memory import MemoryStore
from tests.integration.test_logs import log_stream as log_stream

pytestmark = pytest.mark.integration

HEADER_S, IDLE_S, BODY_S, MAX_CONN = 0.5, 1.0, 1.0, 40


@dataclass
class Live:
    port: int
    cfg: config.Config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def webhook(self, http: aiohttp.ClientSession, n: int) -> int:
        source = self.cfg.source("demo")
        assert source is not None
        raw = json.dumps({"event_id": f"e-{n}", "approval_id": f"PO-{n}", "status": "pending",
                          "occurred_at": datetime.now(UTC).isoformat(), "title": "t", "recipients": ["u1"],
                          "url": "https://erp.example.com/po/1"}).encode()
        headers = {"Content-Type": "application/json", **signatures.sign_headers(source, raw, datetime.now(UTC))}
        async with http.post(f"{self.url}/webhooks/demo", data=raw, headers=headers) as resp:
            await resp.read()
            return resp.status


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    cfg = config.sandbox("http://127.0.0.1:1", "unused.db")
    cfg = replace(cfg, server=replace(cfg.server, header_timeout_s=HEADER_S, idle_timeout_s=IDLE_S,
                                      body_timeout_s=BODY_S, max_connections=MAX_CONN))
    app = bridge_app.create_app(cfg, store=MemoryStore(), run_worker=False)
    runner = guard.GuardedRunner(app, limits=guard.Limits.from_config(cfg.server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Live(site.port, cfg)
    finally:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), timeout=within_s):
            pass
        return True
    except (TimeoutError, ConnectionError):
        return False


def lines(stream: io.StringIO) -> Iterator[dict[str, object]]:
    for line in stream.getvalue().splitlines():
        yield json.loads(line)


async def test_a_half_sent_request_line_is_closed_after_the_header_deadline(live: Live) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"POST /webhooks/demo HT")
    started = time.monotonic()
    assert await closed_by_server(reader, within_s=10)
    assert time.monotonic() - started < 5  # HEADER_S, with room for a slow machine
    writer.close()


async def test_an_idle_connection_is_closed_after_the_idle_limit(live: Live) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    assert await closed_by_server(reader, within_s=10)
    writer.close()


async def test_a_body_sent_a_byte_at_a_time_gets_408(live: Live) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"POST /webhooks/demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n")
    started = time.monotonic()
    answer = b""
    for _ in range(40):  # 1 byte per 0.25 s would take 125 s; the deadline answers long before that
        writer.write(b" ")
        try:
            answer += await asyncio.wait_for(reader.read(4096), timeout=0.25)
        except TimeoutError:
            continue
        if answer:
            break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer and b"body_timeout_s" in answer
    assert time.monotonic() - started < 8
    writer.close()


async def test_webhooks_are_answered_while_half_open_sockets_flood_the_listener(
        live: Live, log_stream: io.StringIO) -> None:
    flood = []
    for _ in range(3 * MAX_CONN):
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers that never end
        flood.append((reader, writer))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for n in range(5):
                assert await live.webhook(http, n) == 202
                async with http.get(f"{live.url}/healthz") as resp:
                    assert resp.status == 200
        # every flood socket is closed by the server: evicted at the cap, or at the header deadline
        results = await asyncio.gather(*(closed_by_server(r, within_s=10) for r, _ in flood))
        assert all(results)
    finally:
        for _, writer in flood:
            writer.close()
    events = [line["event"] for line in lines(log_stream) if str(line["event"]).startswith("http.")]
    assert events, "the flood was not logged at all"
    for kind in set(events):
        assert events.count(kind) <= 2, (kind, events.count(kind))  # one line, then at most one summary
    assert len(events) <= 8


async def test_malformed_http_is_a_400_and_a_bounded_warning_without_traceback(
        live: Live, log_stream: io.StringIO) -> None:
    bad = [
        b"POST /webhooks/demo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /webhooks/demo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",
    ]
    for raw in bad * 4:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(raw)
        answer = await asyncio.wait_for(reader.read(200), timeout=5)
        assert answer.split(b" ", 2)[1] == b"400", (raw[:60], answer)
        writer.close()
    logged = list(lines(log_stream))
    malformed = [line for line in logged if str(line["event"]).startswith("http.malformed_request")]
    assert 1 <= len(malformed) <= 2
    assert all(line["level"] == "warning" for line in malformed)
    assert not [line for line in logged if line["level"] in ("error", "critical")]
    assert "Traceback" not in log_stream.getvalue() and "exception" not in log_stream.getvalue()


def test_flood_log_writes_one_line_then_one_summary_per_window(log_stream: io.StringIO) -> None:
    now = [100.0]
    flood = guard.FloodLog(window_s=60, clock=lambda: now[0])
    for _ in range(1000):
        flood.note("http.header_timeout")
    now[0] += 61
    flood.flush()
    events = [(line["event"], line.get("count")) for line in lines(log_stream)]
    assert events == [("http.header_timeout", None), ("http.header_timeout.repeated", 999)]


def test_the_connection_cap_stays_under_the_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = guard.connection_cap(1_000_000)
    assert cap <= max(8, soft - guard.FD_RESERVE) and guard.connection_cap(16) <= 16

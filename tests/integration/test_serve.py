"""`bridge.app.serve` itself, in this process: its listeners (webhooks, the separate admin listener) and what a
start-up failure leaves behind. Real sockets on 127.0.0.1, a real SQLite file; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bridge import app as bridge_app
from bridge import config

pytestmark = pytest.mark.integration

TOKEN = "adm-serve-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sandbox(tmp_path: Path, **admin: object) -> config.Config:
    cfg = config.sandbox("http://127.0.0.1:1", str(tmp_path / "b.db"), admin_token=TOKEN)
    cfg = replace(cfg, server=replace(cfg.server, port=free_port()))
    return replace(cfg, admin=replace(cfg.admin, **admin)) if admin else cfg


@contextlib.asynccontextmanager
async def serving(cfg: config.Config) -> AsyncIterator[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(bridge_app.serve(cfg, ready=ready))
    done, _ = await asyncio.wait([task, asyncio.create_task(ready.wait())], timeout=15,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert ready.is_set(), "serve did not start in 15 s"
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("bridge-sqlite-writer")]


async def test_a_separate_admin_listener_serves_the_admin_api_and_nothing_else(tmp_path: Path) -> None:
    admin_port = free_port()
    cfg = sandbox(tmp_path, port=admin_port)
    web_url, admin_url = f"http://127.0.0.1:{cfg.server.port}", f"http://127.0.0.1:{admin_port}"
    async with serving(cfg), aiohttp.ClientSession() as http:
        async with http.get(f"{admin_url}/approvals", headers=AUTH) as resp:
            assert resp.status == 200
        async with http.get(f"{web_url}/approvals", headers=AUTH) as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        async with http.post(f"{admin_url}/webhooks/demo", data=b"{}") as resp:
            assert resp.status == 404 and (await resp.json())["message"].startswith("no such endpoint on this listener")
        async with http.get(f"{web_url}/console/login") as resp:
            assert resp.status == 404 and resp.headers["X-Frame-Options"] == "DENY"
        async with http.get(f"{admin_url}/console/login") as resp:
            assert resp.status == 200
        async with http.post(f"{web_url}/webhooks/demo", data=b"{}") as resp:
            assert resp.status == 401  # the webhook port still takes webhooks (this one is unsigned)
        for url in (web_url, admin_url):
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200


async def test_a_port_in_use_fails_fast_naming_the_address_and_closes_the_store(tmp_path: Path) -> None:
    before = len(writer_threads())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = sandbox(tmp_path)
        cfg = replace(cfg, server=replace(cfg.server, port=port))
        with pytest.raises(bridge_app.ListenError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: address already"):
            await asyncio.wait_for(bridge_app.serve(cfg), timeout=15)
    for _ in range(100):  # the writer thread ends once the store is closed
        if len(writer_threads()) <= before:
            break
        await asyncio.sleep(0.05)
    assert len(writer_threads()) <= before


async def test_an_admin_port_in_use_closes_the_webhook_listener_too(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = sandbox(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(bridge_app.ListenError):
            await asyncio.wait_for(bridge_app.serve(cfg), timeout=15)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.bind(("127.0.0.1", cfg.server.port))  # free again: the webhook listener was closed

"""`bridge serve --role`: a receiver stores and answers but runs no worker; a worker decides and delivers but
serves no webhooks; /readyz names the role and checks only what the process does. Against PostgreSQL, a
receiver's webhook wakes a worker in another app (process) through NOTIFY."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import app as bridge_app
from bridge.appkeys import Role
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.store.memory import MemoryStore
from tests.integration.test_web import NOW, body, config, post, signed

pytestmark = pytest.mark.integration


async def test_a_receiver_stores_and_answers_without_a_worker() -> None:
    cfg, st, fake = config(), MemoryStore(), FakeDingTalk()
    application = bridge_app.create_app(cfg, store=st, clock=FakeClock(NOW), client=fake,  # type: ignore[arg-type]
                                        role=Role.RECEIVER)
    async with TestClient(TestServer(application)) as client:
        status, _ = await post(client, cfg, body())
        assert status == 202
        resp = await client.get("/readyz")
        answer = await resp.json()
        assert resp.status == 200 and answer["role"] == "receiver"
        assert answer["checks"]["worker"] == {"ok": True, "detail": "not run in this process (role receiver)"}
        await asyncio.sleep(0.05)
        assert [e.event.event_id for e in await st.pending_events()] == ["erp-000123"]  # nobody decided it
        assert fake.calls == []


async def test_a_worker_serves_no_webhooks_and_delivers() -> None:
    cfg, st, fake = config(), MemoryStore(), FakeDingTalk()
    application = bridge_app.create_app(cfg, store=st, clock=FakeClock(NOW), client=fake,  # type: ignore[arg-type]
                                        role=Role.WORKER)
    raw = body()
    async with TestClient(TestServer(application)) as client:
        resp = await client.post("/webhooks/erp", data=raw, headers=signed(cfg.source("erp"), raw))  # type: ignore[arg-type]
        assert resp.status == 404 and (await resp.json())["error"]
        resp = await client.get("/readyz")
        assert resp.status == 200 and (await resp.json())["role"] == "worker"


async def test_a_receiver_wakes_a_worker_in_another_process_through_postgres(pg_url: str) -> None:
    from bridge.store.postgres import PostgresStore

    cfg, fake = config(), FakeDingTalk()
    receiver = bridge_app.create_app(cfg, store=PostgresStore(pg_url), clock=FakeClock(NOW),
                                     client=FakeDingTalk(), role=Role.RECEIVER)  # type: ignore[arg-type]
    slow_poll = replace(cfg, worker=replace(cfg.worker, poll_interval_s=60.0))  # only NOTIFY can wake it in time
    worker_app = bridge_app.create_app(slow_poll, store=PostgresStore(pg_url), clock=FakeClock(NOW), client=fake,  # type: ignore[arg-type]
                                       role=Role.WORKER)
    async with TestClient(TestServer(receiver)) as rx, TestClient(TestServer(worker_app)):
        status, _ = await post(rx, cfg, body())
        assert status == 202
        for _ in range(500):  # bounded wait (5 s), far below the worker's 60 s poll
            if fake.named("send"):
                break
            await asyncio.sleep(0.01)
        assert len(fake.named("send")) == 1

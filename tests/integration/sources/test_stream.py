"""DingTalk Stream mode end to end: the simulator's gateway pushes approval events over a real WebSocket to
bridge's Stream client inside the real app; the card in the simulator's inbox turns orange, then green.

Also: an event is acked only once it is stored (a failing store answers LATER and the gateway redelivers),
a redelivered event is stored once, a SYSTEM disconnect leads to a reconnect with a fresh ticket, and the
connection shows in /readyz and the metrics. Waits are bounded polls on real sockets; the worker runs in bursts
on a FakeClock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import app as bridge_app
from bridge import config, errors, store, worker
from bridge.appkeys import STREAMS
from bridge.clock import FakeClock
from bridge.config import Config
from bridge.dingtalk import client as dingtalk
from bridge.simulator import server as simulator
from bridge.simulator.model import DEMO_APP
from bridge.simulator.state import SimState
from bridge.simulator.stream import StreamGateway
from bridge.sources.stream import StreamClient
from bridge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

ORANGE, GREEN = "0xFFFF9D46", "0xFF78C06E"
SOURCE = "dingtalk-stream"


def stream_cfg(base_url: str) -> Config:
    return config.from_dict({
        "dingtalk": {"base_url": base_url, "app_key": DEMO_APP.app_key, "app_secret": "env:APP_SECRET",
                     "agent_id": DEMO_APP.agent_id},
        "sources": [{"name": SOURCE, "format": "dingtalk", "transport": "stream", "client_id": DEMO_APP.app_key,
                     "client_secret": "env:APP_SECRET", "gateway_url": base_url, "notify": "applicant"}],
    }, env={"APP_SECRET": DEMO_APP.app_secret})


def instance(kind: str, result: str | None = None, pid: str = "PI-S-1") -> dict[str, Any]:
    data = {"processInstanceId": pid, "type": kind, "staffId": "manager75", "title": "报销-Stream",
            "businessId": "202612020001", "processCode": "PROC-S", "createTime": 1764640000000,
            "url": "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm"}
    if result:
        data["result"] = result
    return data


async def until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Stack:
    cfg: Config
    http: TestClient
    sim_url: str
    gateway: StreamGateway
    sim: SimState
    store: store.Store
    worker: worker.Worker
    clock: FakeClock
    streams: list[StreamClient]

    async def push(self, data: dict[str, Any], **kw: Any) -> str:
        async with aiohttp.ClientSession() as s, s.post(f"{self.sim_url}/_sim/stream/events",
                                                        json={"data": data, **kw}) as r:
            assert r.status == 200, await r.text()
            message_id: str = (await r.json())["message_id"]
        return message_id

    async def acked(self, message_id: str) -> None:
        await until(lambda: self.gateway.messages[message_id].acked, f"ack of {message_id}")

    async def settle(self) -> None:
        for _ in range(20):
            await self.worker.run(burst=True)
            counts = await self.store.job_counts(self.clock.now())
            if counts.pending == 0 and counts.running == 0:
                return
            self.clock.advance(5)
        raise AssertionError("jobs still pending")

    def bars(self, userid: str) -> list[tuple[str | None, str | None]]:
        return [((c.get("status_bar") or {}).get("value"), (c.get("status_bar") or {}).get("bg"))
                for c in self.sim.inbox(userid)]


@asynccontextmanager
async def make_stack(tmp_path: Path, st: store.Store | None = None) -> AsyncIterator[Stack]:
    clock = FakeClock()
    state = SimState(clock=clock, seed=3)
    gateway = StreamGateway(state.settings.apps, ack_timeout_s=5.0, later_delay_s=0.05)
    async with simulator.running(state=state, gateway=gateway) as sim, aiohttp.ClientSession() as session:
        cfg = stream_cfg(sim.base_url)
        client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
        st = st or SQLiteStore(tmp_path / "bridge.db")
        application = bridge_app.create_app(cfg, store=st, clock=clock, client=client, run_worker=False)
        async with TestClient(TestServer(application)) as tc:
            streams = application[STREAMS]
            await until(lambda: bool(streams) and streams[0].status()["connected"], "the stream to connect")
            yield Stack(cfg, tc, sim.base_url, gateway, state, st, application[bridge_app.WORKER], clock, streams)


async def test_events_pushed_over_stream_turn_the_card_orange_then_green(tmp_path: Path) -> None:
    async with make_stack(tmp_path) as s:
        ready = await (await s.http.get("/readyz")).json()
        assert ready["checks"][f"stream:{SOURCE}"]["ok"] is True
        await s.acked(await s.push(instance("start")))
        await s.settle()
        assert s.bars("manager75") == [("待审批", ORANGE)]
        await s.acked(await s.push(instance("finish", "agree")))
        await s.settle()
        assert s.bars("manager75") == [("已同意", GREEN)]
        assert [m["answers"] for m in s.gateway.view()["messages"]] == [["SUCCESS"], ["SUCCESS"]]
        metrics = await (await s.http.get("/metrics")).text()
        assert f'bridge_stream_connected{{source="{SOURCE}"}} 1.0' in metrics
        assert f'bridge_stream_acks_total{{source="{SOURCE}",status="SUCCESS"}} 2.0' in metrics


async def test_a_store_that_fails_answers_later_and_the_redelivery_is_stored(tmp_path: Path) -> None:
    st = SQLiteStore(tmp_path / "bridge.db")
    real_add = st.add_event
    failures = [errors.StorageUnavailable("disk full (simulated)")]

    async def flaky_add(*args: Any, **kw: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_add(*args, **kw)

    st.add_event = flaky_add  # type: ignore[method-assign]
    async with make_stack(tmp_path, st) as s:
        message_id = await s.push(instance("start"), event_id="evt-later-1")
        await s.acked(message_id)
        msg = s.gateway.messages[message_id]
        assert msg.answers == ["LATER", "SUCCESS"] and msg.deliveries == 2
        assert s.streams[0].status()["later"] == 1
        await s.settle()
        assert s.bars("manager75") == [("待审批", ORANGE)]
        [approval] = await s.store.list_approvals()
        assert len(await s.store.events_for(SOURCE, approval.approval_id)) == 1


async def test_a_redelivered_event_is_acked_and_stored_once(tmp_path: Path) -> None:
    async with make_stack(tmp_path) as s:
        await s.acked(await s.push(instance("start"), event_id="evt-dup-1"))
        await s.acked(await s.push(instance("start"), event_id="evt-dup-1"))
        [event] = await s.store.events_for(SOURCE, "PI-S-1")
        assert event.duplicates == 1 and s.streams[0].status()["duplicates"] == 1
        metrics = await (await s.http.get("/metrics")).text()
        assert f'bridge_stream_redeliveries_total{{source="{SOURCE}"}} 1.0' in metrics


async def test_a_disconnect_reconnects_with_a_fresh_ticket(tmp_path: Path) -> None:
    async with make_stack(tmp_path) as s:
        async with aiohttp.ClientSession() as c, c.post(f"{s.sim_url}/_sim/stream/ping") as r:
            assert (await r.json())["sent"] == 1
        await until(lambda: s.gateway.pongs == 1, "the pong")
        async with aiohttp.ClientSession() as c, c.post(f"{s.sim_url}/_sim/stream/disconnect") as r:
            assert (await r.json())["sent"] == 1
        await until(lambda: s.gateway.connections_opened == 2 and s.streams[0].status()["connected"],
                    "the reconnect")
        assert s.gateway.tickets_issued == 2 and s.streams[0].status()["disconnects"] == 1
        assert s.clock.sleeps and s.clock.sleeps[-1] <= 1.0  # one jittered backoff of at most reconnect_base_s
        await s.acked(await s.push(instance("start")))
        metrics = await (await s.http.get("/metrics")).text()
        assert f'bridge_stream_reconnects_total{{reason="disconnect",source="{SOURCE}"}} 1.0' in metrics

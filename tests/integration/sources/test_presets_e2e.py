"""Each shipped preset through the whole life of an approval: its system's real payload shapes over HTTP →
receiver → store → worker → the real DingTalk client → the simulator's inbox (issue 17, item 8).

The first delivery (pending) makes an orange card for each mapped recipient; the final delivery turns it
green (approved), red (rejected), grey (revoked) or recalls it (deleted). A first delivery whose recipients
matched nothing is answered 400 with a JSON body naming the sender's path (item 6). bridge and the simulator
share one FakeClock; the worker runs in bursts and time is moved, never waited for.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge import app as bridge_app
from bridge import store, worker
from bridge.clock import FakeClock
from bridge.config import Config
from bridge.dingtalk import client as dingtalk
from bridge.simulator import server as simulator
from bridge.simulator.state import SimState
from bridge.sources import signatures
from bridge.store.sqlite import SQLiteStore
from tests.unit.sources.test_presets import ENV, PRESETS, RECIPIENTS, deliveries, load_cfg

pytestmark = pytest.mark.integration

GREEN, RED, GREY, ORANGE = "0xFF78C06E", "0xFFF65E5E", "0xFF858E99", "0xFFFF9D46"
FINAL = {"approved": ("已同意", GREEN, False), "rejected": ("已拒绝", RED, False),
         "revoked": ("已撤销", GREY, False), "deleted": ("待审批", ORANGE, True)}  # fmt: skip
CASES = [(name, kind) for name in PRESETS for kind in deliveries(name) if kind != "pending"]


@dataclass
class Stack:
    cfg: Config
    client: TestClient
    worker: worker.Worker
    store: store.Store
    sim: SimState
    clock: FakeClock

    async def deliver(self, source: str, delivery: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST one fixture delivery as its system would, signed the way the source is configured."""
        body = json.dumps(delivery["body"], ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **delivery.get("headers", {})}
        if source == "github":
            headers[signatures.HMAC_HEADER] = signatures.sign_hmac_sha256(ENV["GITHUB_WEBHOOK_SECRET"], body)
        else:
            headers["X-Bridge-Token"] = ENV["OA_TOKEN"]
        return await self.client.post(f"/webhooks/{source}", data=body, headers=headers)

    async def settle(self, rounds: int = 20, step_s: float = 5.0) -> None:
        for _ in range(rounds):
            await self.worker.run(burst=True)
            counts = await self.store.job_counts(self.clock.now())
            if counts.pending == 0 and counts.running == 0:
                return
            self.clock.advance(step_s)
        raise AssertionError(f"jobs still pending after {rounds} rounds: {counts}")

    def bars(self, userid: str) -> list[tuple[str | None, str | None, bool]]:
        return [((card.get("status_bar") or {}).get("value"), (card.get("status_bar") or {}).get("bg"),
                 card["recalled"]) for card in self.sim.inbox(userid)]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    clock = FakeClock()
    state = SimState(clock=clock, seed=7)
    async with simulator.running(state=state) as sim, aiohttp.ClientSession() as session:
        cfg = load_cfg(base_url=sim.base_url)
        client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
        st = SQLiteStore(tmp_path / "bridge.db")
        application = bridge_app.create_app(cfg, store=st, clock=clock, client=client, run_worker=False)
        async with TestClient(TestServer(application)) as tc:
            yield Stack(cfg, tc, application[bridge_app.WORKER], st, state, clock)


@pytest.mark.parametrize(("name", "kind"), CASES)
async def test_a_preset_payload_lives_from_orange_to_its_final_state(stack: Stack, name: str, kind: str) -> None:
    fixture = deliveries(name)
    resp = await stack.deliver(name, fixture["pending"])
    assert resp.status == 202, await resp.text()
    await stack.settle()
    for userid in RECIPIENTS[name]:
        assert stack.bars(userid) == [("待审批", ORANGE, False)], (name, userid)

    stack.clock.advance(60)
    resp = await stack.deliver(name, fixture[kind])
    assert resp.status == 202, await resp.text()
    await stack.settle()
    for userid in RECIPIENTS[name]:
        assert stack.bars(userid) == [FINAL[kind]], (name, kind, userid)
    assert await stack.store.list_jobs(store.JobState.DEAD) == []

    again = await stack.deliver(name, fixture[kind])  # the system retries: stored once, nothing changes
    assert again.status == 200 and (await again.json())["status"] == "duplicate"


async def test_a_first_event_without_recipients_is_refused_naming_the_senders_path(stack: Stack) -> None:
    pending = json.loads(json.dumps(deliveries("weaver")["pending"]))
    pending["body"]["operators"] = []
    resp = await stack.deliver("weaver", pending)
    assert resp.status == 400 and resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"] == "invalid_event"
    assert body["problems"] == [{"field": "operators[*].loginid", "message": "operators[*].loginid matched nothing: "
                                 "recipients is required on the first event for an approval (no card data is stored "
                                 "for it yet)"}]  # fmt: skip
    assert "operators[*].loginid" in body["message"]
    assert stack.sim.calls(path="/topapi/message/corpconversation/asyncsend_v2") == []

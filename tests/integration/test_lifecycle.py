"""Whole lives of approvals: decider + worker + the real DingTalk client + the simulator on 127.0.0.1.

bridge and the simulator share one FakeClock, so DingTalk's windows (24 h recall, 7 days update) and
bridge's retry backoff are crossed by moving time, not by waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from bridge import service, store, worker
from bridge.clock import FakeClock
from bridge.config import Config, DingTalkConfig, WorkerConfig
from bridge.dingtalk import client as dingtalk
from bridge.events import ApprovalEvent, Status
from bridge.secret import Secret
from bridge.simulator import server as simulator
from bridge.simulator.state import FaultPlan, SimState
from bridge.store.sqlite import SQLiteStore
from tests.unit.helpers import event, recipients

pytestmark = pytest.mark.integration

GREEN, RED, GREY, ORANGE = "0xFF78C06E", "0xFFF65E5E", "0xFF858E99", "0xFFFF9D46"


@dataclass
class Env:
    store: store.Store
    worker: worker.Worker
    sim: SimState
    clock: FakeClock
    cfg: Config
    session: aiohttp.ClientSession

    async def put(self, *events: ApprovalEvent) -> None:
        for ev in events:
            await self.store.add_event(ev, ev.to_json().encode(), self.clock.now())

    async def settle(self, rounds: int = 40, step_s: float = 30.0) -> None:
        """Run the worker until nothing is pending, moving time on between rounds (retries, checks)."""
        for _ in range(rounds):
            await self.worker.run(burst=True)
            counts = await self.store.job_counts(self.clock.now())
            if counts.pending == 0 and counts.running == 0:
                return
            self.clock.advance(step_s)
        raise AssertionError(f"jobs still pending after {rounds} rounds: {counts}")

    def bars(self, userid: str) -> list[tuple[str | None, str | None, bool]]:
        out = []
        for card in self.sim.inbox(userid):
            bar = card.get("status_bar") or {}
            out.append((bar.get("value"), bar.get("bg"), card["recalled"]))
        return out


def make_cfg(base_url: str, agent_id: int = 1000001) -> Config:
    return Config(
        dingtalk=DingTalkConfig(base_url=base_url, app_key="dingdemoappkey", app_secret=Secret("demo-app-secret"),
                                agent_id=agent_id, qps=20.0, timeout_s=2.0),
        worker=WorkerConfig(concurrency=8, retry_base_s=1.0, retry_cap_s=60.0, max_attempts=12, check_delay_s=2.0),
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FakeClock()
    state = SimState(clock=clock, seed=42)
    async with simulator.running(state=state) as sim, aiohttp.ClientSession() as session:
        cfg = make_cfg(sim.base_url)
        st = SQLiteStore(tmp_path / "bridge.db")
        await st.open()
        client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
        w = worker.Worker(st, client, cfg, clock, decider=service.Decider(st, cfg, clock))
        try:
            yield Env(st, w, state, clock, cfg, session)
        finally:
            await st.close()


PATHS = {
    "approved": ([Status.PENDING, Status.APPROVED], [("已同意", GREEN, False)]),
    "rejected": ([Status.PENDING, Status.REJECTED], [("已拒绝", RED, False)]),
    "revoked": ([Status.PENDING, Status.REVOKED], [("已撤销", GREY, False)]),
    "approved-then-revoked": ([Status.PENDING, Status.APPROVED, Status.REVOKED], [("已撤销", GREY, False)]),
    "resubmitted": ([Status.PENDING, Status.REJECTED, Status.PENDING, Status.APPROVED],
                    [("已拒绝", RED, False), ("已同意", GREEN, False)]),
    "deleted": ([Status.PENDING, Status.DELETED], [("待审批", ORANGE, True)]),
}


@pytest.mark.parametrize("n", [1, 5, 6, 12])
@pytest.mark.parametrize("path", list(PATHS))
async def test_life_of_an_approval(env: Env, n: int, path: str) -> None:
    statuses, expected = PATHS[path]
    for minute, status in enumerate(statuses):
        await env.put(event(status, minutes=minute, n=n))
        await env.settle()
    for userid in recipients(n):
        assert env.bars(userid) == expected, userid
    sends = env.sim.calls(path="/topapi/message/corpconversation/asyncsend_v2")
    cards = 1 if path != "resubmitted" else 2
    assert len(sends) == cards * ((n + 4) // 5)
    assert await env.store.list_jobs(store.JobState.DEAD) == []


async def test_out_of_order_arrival_makes_the_card_green_straight_away(env: Env) -> None:
    await env.put(event(Status.APPROVED, minutes=5, n=2))
    await env.settle()
    await env.put(event(Status.PENDING, minutes=0, n=2))
    await env.settle()
    assert env.bars("user01") == [("已同意", GREEN, False)]
    history = await env.store.events_for("erp", "PO-1")
    assert [e.outcome for e in history] == [store.Outcome.STALE, store.Outcome.APPLIED]


async def test_recall_window_falls_back_to_grey_and_update_window_expires(env: Env) -> None:
    await env.put(event(Status.PENDING, n=1, approval_id="A"))
    await env.put(event(Status.PENDING, n=1, approval_id="B", title="另一个审批"))
    await env.settle()
    env.clock.advance(25 * 3600)
    await env.put(event(Status.DELETED, minutes=1, card=False, approval_id="A"))
    await env.settle()
    env.clock.advance(7 * 86400)
    await env.put(event(Status.APPROVED, minutes=2, card=False, approval_id="B"))
    await env.settle()
    a, b = env.sim.inbox("user01")
    assert (a["status_bar"]["value"], a["recalled"]) == ("已撤销", False)
    assert (b["status_bar"]["value"], b["recalled"]) == ("待审批", False)
    [na] = await env.store.notices_for("erp", "A")
    [nb] = await env.store.notices_for("erp", "B")
    assert "recall window" in (na.note or "") and "update window" in (nb.note or "")


async def test_injected_faults_end_in_the_right_cards_without_duplicates(env: Env) -> None:
    # the client gives up after 0.2 s; a "timeout" fault answers only after 0.5 s
    env.worker.client = dingtalk.Client.from_config(
        env.session, replace(env.cfg.dingtalk, timeout_s=0.2), clock=env.clock, tokens=dingtalk.TokenRegistry()
    )
    env.sim.set_faults(FaultPlan(rate=0.3, seed=7, kinds=("http_500", "errcode_-1", "throttle", "throttle_global",
                                                          "token", "ip_ban", "delay", "timeout"),
                                 delay_s=0.01, timeout_s=0.5))
    for i in range(6):
        await env.put(event(Status.PENDING, n=6, approval_id=f"F{i}"))
    await env.settle(rounds=80)
    for i in range(6):
        await env.put(event(Status.APPROVED if i % 2 else Status.REJECTED, minutes=1, card=False, approval_id=f"F{i}"))
    await env.settle(rounds=80)
    env.sim.clear_faults()
    assert sum(env.sim.stats()["faults"].values()) > 0
    for userid in recipients(6):
        bars = env.bars(userid)
        assert len(bars) == 6, bars  # one card per approval: no duplicates
        assert sorted(b[0] for b in bars) == ["已同意"] * 3 + ["已拒绝"] * 3
    assert await env.store.list_jobs(store.JobState.DEAD) == []


async def test_permanent_error_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    async with simulator.running(state=SimState(clock=clock, seed=1)) as sim, aiohttp.ClientSession() as session:
        cfg = make_cfg(sim.base_url, agent_id=999)  # not the demo app's agent: 41020
        st = SQLiteStore(tmp_path / "b.db")
        await st.open()
        try:
            client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
            w = worker.Worker(st, client, cfg, clock)
            await st.add_event(event(Status.PENDING, n=1), b"{}", clock.now())
            await w.run(burst=True)
            [dead] = await st.list_jobs(store.JobState.DEAD)
            assert dead.kind == "send" and "41020" in (dead.last_error or "")
            assert dead.attempts == 1
        finally:
            await st.close()


async def test_restart_in_the_middle_picks_up_leased_jobs(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "bridge.db"
    async with simulator.running(state=SimState(clock=clock, seed=3)) as sim, aiohttp.ClientSession() as session:
        cfg = make_cfg(sim.base_url)
        first = SQLiteStore(path)
        await first.open()
        await first.add_event(event(Status.PENDING, n=7), b"{}", clock.now())
        await service.Decider(first, cfg, clock).process_pending()
        claimed = await first.claim_jobs(clock.now(), cfg.worker.lease_s, 10)
        assert [j.kind for j in claimed] == ["send"]  # the second send waits behind the first (same approval)
        await first.close()  # the process dies holding the lease

        second = SQLiteStore(path)
        await second.open()
        try:
            client = dingtalk.Client.from_config(session, cfg.dingtalk, clock=clock, tokens=dingtalk.TokenRegistry())
            w = worker.Worker(second, client, replace(cfg), clock)
            await w.run(burst=True)
            assert sim.state.calls(path="/topapi/message/corpconversation/asyncsend_v2") == []
            clock.advance(cfg.worker.lease_s + 1)
            for _ in range(3):
                await w.run(burst=True)
                clock.advance(5)
            for userid in recipients(7):
                assert [c["status_bar"]["value"] for c in sim.state.inbox(userid)] == ["待审批"]
        finally:
            await second.close()

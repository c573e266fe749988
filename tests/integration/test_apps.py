"""Two DingTalk apps against the simulator: each source's cards come from its own app's agent, each app's rate
limit is its own, and a card's updates go back to the app that sent it even after its source moved.

Run on SQLite and on PostgreSQL. Load-independent: the simulator and bridge share one FakeClock, which moves
only when a rate limiter (or the test) sleeps, so every figure asserted here is the same on an idle and on a
loaded machine. Which app a limiter wait belongs to is read from the sleeping task's name (the worker names
each job's task `job-<id>`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge import config, service, store, worker
from bridge.clock import FakeClock
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.dingtalk.tokens import TokenRegistry
from bridge.events import ApprovalEvent, Status
from bridge.metrics import Metrics
from bridge.simulator import server as simulator
from bridge.simulator.model import SimApp, SimSettings
from bridge.simulator.state import SimState
from bridge.store.sqlite import SQLiteStore
from tests.unit.helpers import event

pytestmark = pytest.mark.integration

HR = SimApp("dinghrappkey", "hr-app-secret-0001", 1001)
SALES = SimApp("dingsalesappkey", "sales-app-secret-0002", 2002)
HR_QPS = 1.0  # small: hr's sends must wait for its limiter
SENDS = 4  # approvals per app, one recipient each


class TaskClock(FakeClock):
    """A FakeClock that remembers which task asked for each sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.by_task: list[tuple[str, float]] = []

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.by_task.append((task.get_name() if task else "", seconds))
        await super().sleep(seconds)


def two_app_config(base_url: str, crm_app: str = "sales") -> Config:
    return config.from_dict({
        "dingtalk": {"base_url": base_url, "timeout_s": 5, "apps": [
            {"name": "hr", "app_key": HR.app_key, "app_secret": "env:HR_SECRET", "agent_id": HR.agent_id,
             "qps": HR_QPS},
            {"name": "sales", "app_key": SALES.app_key, "app_secret": "env:SALES_SECRET", "agent_id": SALES.agent_id},
        ]},
        "worker": {"concurrency": 8, "check_delay_s": 2},
        "sources": [{"name": "erp", "signature": "none", "app": "hr"},
                    {"name": "crm", "signature": "none", "app": crm_app}],
    }, env={"HR_SECRET": HR.app_secret, "SALES_SECRET": SALES.app_secret})


@dataclasses.dataclass
class Env:
    st: store.Store
    sim: SimState
    clock: TaskClock
    session: aiohttp.ClientSession
    base_url: str
    metrics: Metrics

    def worker(self, cfg: Config) -> tuple[worker.Worker, AppClients[Any]]:
        clients = AppClients.from_config(self.session, cfg, clock=self.clock, observer=self.metrics,
                                         tokens=TokenRegistry())
        return worker.Worker(self.st, clients, cfg, self.clock, decider=service.Decider(self.st, cfg, self.clock)), \
            clients

    async def put(self, *events: ApprovalEvent) -> None:
        for ev in events:
            await self.st.add_event(ev, ev.to_json().encode(), self.clock.now())

    async def settle(self, w: worker.Worker) -> None:
        for _ in range(40):
            await w.run(burst=True)
            counts = await self.st.job_counts(self.clock.now())
            if counts.pending == 0 and counts.running == 0:
                return
            self.clock.advance(30)
        raise AssertionError("jobs still pending")


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """The simulator with two apps, and bridge's store: SQLite, or PostgreSQL (skipped with a reason when it is
    unreachable, failed under BRIDGE_REQUIRE_REAL=1)."""
    st: store.Store
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        from bridge.store.postgres import PostgresStore

        st = PostgresStore(url)
    else:
        st = SQLiteStore(tmp_path / "bridge.db")
    clock = TaskClock()
    state = SimState(SimSettings(apps=(HR, SALES)), clock=clock, seed=7)
    async with simulator.running(state=state) as sim, aiohttp.ClientSession() as session:
        await st.open()
        try:
            yield Env(st, state, clock, session, sim.base_url, Metrics())
        finally:
            await st.close()


def crm_event(status: Status, i: int, minutes: int = 0) -> ApprovalEvent:
    ev = event(status, approval_id=f"CRM-{i}", n=1, minutes=minutes)
    return dataclasses.replace(ev, source="crm", event_id=f"crm-{i}-{status}", recipients=(f"sales{i}",))


def erp_event(status: Status, i: int) -> ApprovalEvent:
    ev = event(status, approval_id=f"ERP-{i}", n=1)
    return dataclasses.replace(ev, event_id=f"erp-{i}-{status}", recipients=(f"hr{i}",))


async def job_apps(st: store.Store) -> dict[str, str]:
    """Task name → app, for every job: the worker runs job N in a task named job-N."""
    return {f"job-{j.id}": ("hr" if j.source == "erp" else "sales") for j in await st.list_jobs(None, 1000)}


async def test_two_sources_on_two_apps_get_their_own_agent_and_their_own_limits(env: Env) -> None:
    w, clients = env.worker(two_app_config(env.base_url))
    await env.put(*(erp_event(Status.PENDING, i) for i in range(SENDS)),
                  *(crm_event(Status.PENDING, i) for i in range(SENDS)))
    await env.settle(w)

    for i in range(SENDS):  # each source's cards come from its own app's agent
        [hr_card] = env.sim.inbox(f"hr{i}")
        [sales_card] = env.sim.inbox(f"sales{i}")
        assert env.sim.task(hr_card["task_id"])["agent_id"] == HR.agent_id  # type: ignore[index]
        assert env.sim.task(sales_card["task_id"])["agent_id"] == SALES.agent_id  # type: ignore[index]
    assert {n.app for a in ("ERP", "CRM") for i in range(SENDS)
            for n in await env.st.notices_for("erp" if a == "ERP" else "crm", f"{a}-{i}")} == {"hr", "sales"}
    for source, app in (("erp", "hr"), ("crm", "sales")):
        assert {n.app for i in range(SENDS) for n in await env.st.notices_for(source, f"{source.upper()}-{i}")} \
            == {app}

    # limits counted apart: hr (qps 1) waited about a second per send after its first; sales never waited
    # more than its own spacing (1/20 s), however the jobs interleaved
    apps = await job_apps(env.st)
    waits: dict[str, list[float]] = {"hr": [], "sales": []}
    for task, seconds in env.clock.by_task:
        if task in apps:
            waits[apps[task]].append(seconds)
    assert max(waits["sales"], default=0.0) <= 1.02 / 20 + 1e-6, waits["sales"]
    assert sum(waits["hr"]) >= (SENDS - 1) * 1.02 - SENDS * 1.02 / 20 - 1e-6, waits["hr"]
    assert env.sim.throttled == 0  # neither app went past DingTalk's 20/s

    # per-app figures and metric labels
    assert clients.stats["hr"].calls > 0 and clients.stats["sales"].calls > 0
    assert clients.stats["hr"].tokens == clients.stats["sales"].tokens == 1  # one token each
    sends = env.metrics.calls.labels(app="hr", call="asyncsend_v2", code="0")._value.get()
    assert sends == SENDS == env.metrics.calls.labels(app="sales", call="asyncsend_v2", code="0")._value.get()


async def test_updates_go_to_the_app_that_sent_the_card_after_the_source_moved(env: Env) -> None:
    w, _ = env.worker(two_app_config(env.base_url))
    await env.put(crm_event(Status.PENDING, 1), crm_event(Status.PENDING, 2))
    await env.settle(w)
    # crm moves to app hr: cards already sent stay with sales; a new approval goes out through hr
    moved, _ = env.worker(two_app_config(env.base_url, crm_app="hr"))
    await env.put(crm_event(Status.APPROVED, 1, minutes=1), crm_event(Status.PENDING, 3))
    await env.settle(moved)

    [card] = env.sim.inbox("sales1")
    task = env.sim.task(card["task_id"])
    assert task is not None and task["agent_id"] == SALES.agent_id and task["status_bar"]["value"] == "已同意"
    updates = [c for c in env.sim.calls(path="status_bar/update")]
    assert [c["body"]["agent_id"] for c in updates] == [SALES.agent_id]
    [new] = env.sim.inbox("sales3")
    assert env.sim.task(new["task_id"])["agent_id"] == HR.agent_id  # type: ignore[index]
    [n3] = await env.st.notices_for("crm", "CRM-3")
    [n1] = await env.st.notices_for("crm", "CRM-1")
    assert (n1.app, n3.app) == ("sales", "hr")


async def test_a_card_sent_before_apps_were_stored_goes_to_the_default_app(env: Env) -> None:
    cfg = two_app_config(env.base_url)
    cfg = dataclasses.replace(cfg, dingtalk=dataclasses.replace(
        cfg.dingtalk, apps=(cfg.dingtalk.apps[0], dataclasses.replace(cfg.dingtalk.apps[1], default=True))))
    w, _ = env.worker(cfg)
    await env.put(erp_event(Status.PENDING, 1))
    await env.settle(w)
    [n] = await env.st.notices_for("erp", "ERP-1")
    clients = AppClients.same(object(), cfg)
    assert clients.app_of_notice(dataclasses.replace(n, app=None)) == "sales"  # an old row: the default app
    assert clients.app_of_notice(dataclasses.replace(n, app=None, task_id=None)) == "hr"  # unsent: its source's


ADMIN = "adm-apps-0123456789abcdef"


async def test_get_apps_readyz_and_bridge_status_show_each_app(env: Env) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bridge import app as bridge_app
    from bridge.cli import apps_status
    from bridge.store.memory import MemoryStore

    cfg = two_app_config(env.base_url)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, admin_token=config.Secret(ADMIN)))
    wrong = dataclasses.replace(cfg.dingtalk.apps[1], app_secret=config.Secret("not-the-sales-secret"))
    cfg = dataclasses.replace(cfg, dingtalk=dataclasses.replace(cfg.dingtalk, apps=(cfg.dingtalk.apps[0], wrong)))
    clients = AppClients.from_config(env.session, cfg, clock=env.clock, observer=env.metrics, tokens=TokenRegistry())
    await clients.get("hr").token()
    with pytest.raises(Exception, match="gettoken"):
        await clients.get("sales").token()
    app = bridge_app.create_app(cfg, store=MemoryStore(), clock=env.clock, client=clients, metrics=env.metrics,
                                run_worker=False)
    async with TestClient(TestServer(app)) as http:
        assert (await http.get("/apps")).status == 401
        resp = await http.get("/apps", headers={"Authorization": f"Bearer {ADMIN}"})
        text = await resp.text()
        body = await resp.json()
        ready = await (await http.get("/readyz")).json()
    assert resp.status == 200 and "not-the-sales-secret" not in text and HR.app_secret not in text
    hr, sales = body["apps"]
    assert (hr["name"], hr["agent_id"], hr["sources"], hr["token"]["ok"], hr["calls"], hr["errors"]) == \
        ("hr", HR.agent_id, ["erp"], True, 1, 0)
    assert hr["token"]["last_ok_at"] == env.clock.now().isoformat()
    assert (sales["sources"], sales["token"]["ok"], sales["calls"], sales["errors"]) == (["crm"], False, 1, 1)
    assert sales["token"]["last_error_at"] is not None and sales["token"]["last_ok_at"] is None
    check = ready["checks"]["dingtalk_token"]
    assert ready["status"] == "unavailable" and check["error"].endswith("for app sales")
    assert check["apps"]["hr"]["ok"] is True and check["apps"]["sales"]["ok"] is False
    shown = apps_status.render(body)
    assert "app hr" in shown and "token     FAILING" in shown and "calls     1  errors 1  throttled 0" in shown

"""The worker with several DingTalk apps (fakes): each job's client is its card's app, and a card whose app was
removed from the configuration dies at once with a message naming that app (retrying cannot bring it back)."""

from __future__ import annotations

from dataclasses import replace

from bridge import store, worker
from bridge.clock import FakeClock
from bridge.config import Config, DingTalkApp, Secret
from bridge.dingtalk.apps import AppClients
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config


def with_apps(*names: str) -> Config:
    cfg = make_config()
    apps = tuple(DingTalkApp(n, f"key-{n}", Secret("s"), i + 1, default=i == 0) for i, n in enumerate(names))
    return replace(cfg, dingtalk=replace(cfg.dingtalk, apps=apps))


async def test_each_card_goes_through_its_app_and_a_removed_app_is_named() -> None:
    clock, st = FakeClock(), MemoryStore()
    await st.open()
    hr, sales = FakeDingTalk(), FakeDingTalk()
    cfg = with_apps("hr", "sales")
    w = worker.Worker(st, AppClients({"hr": hr, "sales": sales}, cfg), cfg, clock)
    await st.add_event(event(Status.PENDING, n=2), b"{}", clock.now())
    await w.run(burst=True)
    assert len(hr.named("send")) == 1 and sales.named("send") == []  # erp names no app: the default, hr
    [n] = await st.notices_for("erp", "PO-1")
    assert n.app == "hr"

    only_sales = with_apps("sales")  # hr removed while its card still needs an update
    w2 = worker.Worker(st, AppClients({"sales": sales}, only_sales), only_sales, clock)
    await st.add_event(event(Status.APPROVED, n=2, minutes=1), b"{}", clock.now())
    await w2.run(burst=True)
    [dead] = await st.list_jobs(store.JobState.DEAD)
    assert dead.kind == "update" and "DingTalk app 'hr', which is no longer configured" in (dead.last_error or "")
    assert sales.named("update_status_bar") == []
    await st.close()

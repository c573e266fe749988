"""Orphaned cards: a send DingTalk filtered as duplicate content (143106) after its first attempt's answer was lost.

The recipients hold the first attempt's card, whose task_id bridge never learnt; the stored task_id reaches
nobody. The notice is marked orphaned, counted and journalled, and (policy resend_distinct) the next status
change sends a new, distinct card instead of updating a status bar nobody sees.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from bridge import store, views, worker
from bridge.clock import FakeClock
from bridge.config import Config
from bridge.dingtalk import client as dingtalk
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.metrics import Metrics
from bridge.retry import RetryPolicy
from bridge.store.memory import MemoryStore
from tests.unit.helpers import event, make_config

FIRST = 900_000_000_001
GREEN = "已同意"


def with_policy(cfg: Config, policy: str) -> Config:
    return dataclasses.replace(cfg, worker=dataclasses.replace(cfg.worker, on_orphaned=policy))


def filtered(*userids: str) -> dingtalk.SendResult:
    return dingtalk.SendResult(
        forbidden_list=tuple(dingtalk.ForbiddenEntry(code="143106", count=1, userid=u) for u in userids),
        forbidden_user_id_list=userids)


async def setup(clock: FakeClock, policy: str) -> tuple[MemoryStore, FakeDingTalk, worker.Worker, Metrics]:
    st, fake, metrics = MemoryStore(), FakeDingTalk(), Metrics()
    fake.results[FIRST] = filtered("user01", "user02")  # the retried send was filtered: they got attempt one
    w = worker.Worker(st, fake, with_policy(make_config(), policy), clock, observer=metrics,
                      policy=RetryPolicy(1.0, 60.0, 4, rng=random.Random(7)))
    return st, fake, w, metrics


async def put(st: MemoryStore, clock: FakeClock, *events: object) -> None:
    for ev in events:
        await st.add_event(ev, b"{}", clock.now())  # type: ignore[arg-type]


async def test_a_filtered_send_is_marked_orphaned_counted_and_journalled(clock: FakeClock) -> None:
    st, fake, w, metrics = await setup(clock, "mark")
    await put(st, clock, event(Status.PENDING, n=2))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    [notice] = await st.notices_for("erp", "PO-1")
    assert notice.orphaned_at == clock.now() and notice.task_id == FIRST
    assert views.notice(notice)["orphaned_at"] == views.ts(clock.now())  # what bridge status shows
    assert (await st.job_counts(clock.now())).orphaned == 1
    assert [e.kind for e in st.journal_entries].count("notice.orphaned") == 1
    assert metrics.registry.get_sample_value("bridge_notices_orphaned_total") == 1
    [check] = [j for j in await st.jobs_for("erp", "PO-1") if j.kind == store.JobKind.CHECK]
    assert check.outcome == "orphaned"


async def test_mark_only_updates_the_orphaned_task_as_before(clock: FakeClock) -> None:
    st, fake, w, _ = await setup(clock, "mark")
    await put(st, clock, event(Status.PENDING, n=2))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    await put(st, clock, event(Status.APPROVED, minutes=5, card=False))
    await w.run(burst=True)
    assert len(fake.named("send")) == 1
    assert [c.args["task_id"] for c in fake.named("status_bar_update")] == [FIRST]


async def test_resend_distinct_sends_a_new_card_with_the_new_status_at_the_next_change(clock: FakeClock) -> None:
    st, fake, w, _ = await setup(clock, "resend_distinct")
    await put(st, clock, event(Status.PENDING, n=2))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    assert len(fake.named("send")) == 1  # still pending: the card they hold says so, rightly
    await put(st, clock, event(Status.APPROVED, minutes=5, card=False))
    await w.run(burst=True)
    first, resend = fake.named("send")
    assert resend.args["userids"] == ("user01", "user02")
    assert resend.args["msg"]["oa"]["status_bar"]["status_value"] == GREEN
    assert first.args["msg"]["oa"]["status_bar"]["status_value"] != GREEN
    assert {k: v for k, v in resend.args["msg"]["oa"].items() if k != "status_bar"} == \
        {k: v for k, v in first.args["msg"]["oa"].items() if k != "status_bar"}
    [notice] = await st.notices_for("erp", "PO-1")
    assert notice.task_id == FIRST + 1 and notice.orphaned_at is None and notice.status_value == GREEN
    assert (await st.job_counts(clock.now())).orphaned == 0
    assert "notice.resent" in [e.kind for e in st.journal_entries]
    clock.advance(5)
    await w.run(burst=True)  # the new card's delivery is checked like any send
    assert [c.args["task_id"] for c in fake.named("getsendresult")] == [FIRST, FIRST + 1]


async def test_a_status_that_changed_before_the_orphan_was_found_is_resent_at_once(clock: FakeClock) -> None:
    st, fake, w, _ = await setup(clock, "resend_distinct")
    await put(st, clock, event(Status.PENDING, n=2), event(Status.APPROVED, minutes=1, card=False))
    await w.run(burst=True)  # send, then the update to the (orphaned, not yet known) task
    assert [c.args["task_id"] for c in fake.named("status_bar_update")] == [FIRST]
    clock.advance(5)
    await w.run(burst=True)  # the check finds the orphan; the status moved on: resend now
    _, resend = fake.named("send")
    assert resend.args["msg"]["oa"]["status_bar"]["status_value"] == GREEN


async def test_recalling_an_orphaned_card_resends_it_as_revoked(clock: FakeClock) -> None:
    st, fake, w, _ = await setup(clock, "resend_distinct")
    cfg = with_policy(make_config(on_revoked="recall"), "resend_distinct")
    w = worker.Worker(st, fake, cfg, clock)
    await put(st, clock, event(Status.PENDING, n=2))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    await put(st, clock, event(Status.REVOKED, minutes=5, card=False))
    await w.run(burst=True)
    assert fake.named("recall") == []
    _, resend = fake.named("send")
    assert resend.args["msg"]["oa"]["status_bar"]["status_value"] == cfg.statuses.revoked.label


@pytest.mark.parametrize("policy", ["mark", "resend_distinct"])
async def test_a_send_nobody_filtered_is_not_orphaned(clock: FakeClock, policy: str) -> None:
    st, fake, w, _ = await setup(clock, policy)
    fake.results.clear()
    await put(st, clock, event(Status.PENDING, n=2))
    await w.run(burst=True)
    clock.advance(5)
    await w.run(burst=True)
    [notice] = await st.notices_for("erp", "PO-1")
    assert notice.orphaned_at is None and "notice.orphaned" not in [e.kind for e in st.journal_entries]

"""The decider: stored events → outcome, approval state, notices and jobs (in-memory store)."""

from __future__ import annotations

import pytest

from bridge import service, store
from bridge.clock import FakeClock
from bridge.events import Status
from bridge.store.memory import MemoryStore
from tests.unit.helpers import T0, event, make_config


@pytest.fixture
async def env(clock: FakeClock):
    st = MemoryStore()
    await st.open()
    decider = service.Decider(st, make_config(), clock)
    yield st, decider
    await st.close()


async def feed(st: MemoryStore, decider: service.Decider, *events) -> list[service.Processed]:
    for ev in events:
        await st.add_event(ev, ev.to_json().encode(), T0)
    return await decider.process_pending()


async def jobs(st: MemoryStore, kind: str | None = None) -> list[store.Job]:
    return [j for j in await st.jobs_for("erp", "PO-1") if kind is None or j.kind == kind]


async def test_first_pending_event_sends_one_card_per_group_of_five(env) -> None:
    st, decider = env
    [p] = await feed(st, decider, event(Status.PENDING, n=12))
    assert p.outcome == store.Outcome.APPLIED
    approval = await st.get_approval("erp", "PO-1")
    assert approval is not None and approval.status == "pending" and approval.generation == 1
    notices = await st.notices_for("erp", "PO-1")
    assert [len(n.userids) for n in notices] == [5, 5, 2]
    assert all(n.status_value == "待审批" and n.status_bg == "0xFFFF9D46" for n in notices)
    assert [j.kind for j in await jobs(st)] == ["send", "send", "send"]
    assert notices[0].msg["oa"]["status_bar"] == {"status_value": "待审批", "status_bg": "0xFFFF9D46"}


async def test_approval_updates_every_card(env) -> None:
    st, decider = env
    await feed(st, decider, event(Status.PENDING, n=6))
    [p] = await feed(st, decider, event(Status.APPROVED, minutes=5, card=False))
    assert p.outcome == store.Outcome.APPLIED
    updates = await jobs(st, store.JobKind.UPDATE)
    assert len(updates) == 2
    assert {j.payload["status_value"] for j in updates} == {"已同意"}
    assert {j.payload["status_bg"] for j in updates} == {"0xFF78C06E"}
    assert (await st.get_approval("erp", "PO-1")).status == "approved"


async def test_out_of_order_approved_first_creates_green_card_and_pending_is_stale(env) -> None:
    st, decider = env
    [a] = await feed(st, decider, event(Status.APPROVED, minutes=10))
    [p] = await feed(st, decider, event(Status.PENDING, minutes=0))
    assert a.outcome == store.Outcome.APPLIED and p.outcome == store.Outcome.STALE
    notices = await st.notices_for("erp", "PO-1")
    assert [n.status_value for n in notices] == ["已同意"]
    assert [j.kind for j in await jobs(st)] == ["send"]
    history = await st.events_for("erp", "PO-1")
    assert [e.outcome for e in history] == [store.Outcome.STALE, store.Outcome.APPLIED]


async def test_events_waiting_together_are_applied_in_occurred_at_order(env) -> None:
    st, decider = env
    results = await feed(st, decider, event(Status.APPROVED, minutes=10, card=False), event(Status.PENDING))
    assert sorted(r.outcome for r in results) == [store.Outcome.APPLIED, store.Outcome.APPLIED]
    assert (await st.get_approval("erp", "PO-1")).status == "approved"
    assert [j.kind for j in await jobs(st)] == ["send", "update"]


async def test_repeat_is_unchanged_and_illegal_move_is_a_conflict(env) -> None:
    st, decider = env
    await feed(st, decider, event(Status.PENDING))
    await feed(st, decider, event(Status.APPROVED, minutes=1))
    [again] = await feed(st, decider, event(Status.APPROVED, minutes=2, event_id="again"))
    [bad] = await feed(st, decider, event(Status.REJECTED, minutes=3))
    assert again.outcome == store.Outcome.UNCHANGED and again.job_ids == ()
    assert bad.outcome == store.Outcome.CONFLICT and bad.job_ids == ()
    stored = await st.get_event("erp", bad and "PO-1-rejected-3")
    assert stored is not None and "approved" in (stored.reason or "") and "rejected" in (stored.reason or "")
    assert (await st.get_approval("erp", "PO-1")).status == "approved"


async def test_resubmission_sends_a_new_card_with_different_content(env) -> None:
    st, decider = env
    await feed(st, decider, event(Status.PENDING, n=2))
    await feed(st, decider, event(Status.REJECTED, minutes=1))
    [r] = await feed(st, decider, event(Status.PENDING, minutes=2))
    assert r.outcome == store.Outcome.APPLIED
    approval = await st.get_approval("erp", "PO-1")
    assert approval.generation == 2
    first, second = await st.notices_for("erp", "PO-1")
    assert (first.generation, second.generation) == (1, 2)
    assert first.msg != second.msg
    assert second.status_value == "待审批"


async def test_deleted_recalls_every_card_of_every_generation(env) -> None:
    st, decider = env
    await feed(st, decider, event(Status.PENDING, n=7))
    await feed(st, decider, event(Status.REVOKED, minutes=1))
    await feed(st, decider, event(Status.PENDING, minutes=2, n=3))
    [d] = await feed(st, decider, event(Status.DELETED, minutes=3, card=False))
    assert d.outcome == store.Outcome.APPLIED
    assert len(await jobs(st, store.JobKind.RECALL)) == 3
    assert (await st.get_approval("erp", "PO-1")).status == "recalled"


async def test_on_revoked_recall(clock: FakeClock) -> None:
    st = MemoryStore()
    await st.open()
    decider = service.Decider(st, make_config(on_revoked="recall"), clock)
    await feed(st, decider, event(Status.PENDING, n=2))
    await feed(st, decider, event(Status.REVOKED, minutes=1))
    assert [j.kind for j in await jobs(st)] == ["send", "recall"]
    assert (await st.get_approval("erp", "PO-1")).status == "revoked"


async def test_event_without_status_is_recorded_and_ignored(env) -> None:
    st, decider = env
    [p] = await feed(st, decider, event(None, note="task-level event"))
    assert p.outcome == store.Outcome.IGNORED
    assert (await st.get_event("erp", "PO-1-None-0")).reason == "task-level event"
    assert await st.get_approval("erp", "PO-1") is None


async def test_first_event_without_card_data_is_unresolved_with_reason(env) -> None:
    st, decider = env
    [p] = await feed(st, decider, event(Status.PENDING, card=False, unresolved="id_map has no userid for ou_1"))
    assert p.outcome == store.Outcome.UNRESOLVED
    assert (await st.get_event("erp", "PO-1-pending-0")).reason == "id_map has no userid for ou_1"
    assert await jobs(st) == []


async def test_deleted_before_any_card_needs_no_work(env) -> None:
    st, decider = env
    [p] = await feed(st, decider, event(Status.DELETED, card=False))
    assert p.outcome == store.Outcome.APPLIED and p.job_ids == ()
    assert (await st.get_approval("erp", "PO-1")).status == "recalled"


async def test_operator_retry_is_journalled(env, clock: FakeClock) -> None:
    from bridge import operate

    st, decider = env
    await feed(st, decider, event(Status.PENDING, n=1))
    [job] = await st.claim_jobs(clock.now(), 60, 10)
    await st.bury_job(job.id, clock.now(), "boom")
    assert await operate.retry_dead(st, clock.now(), job.id, by="CLI") == 1
    [line] = [e for e in await st.journal(0) if e.kind == "operator.retry"]
    assert line.job_id == job.id and line.approval_id == "PO-1" and "by the CLI" in line.message
    assert await operate.retry_dead(st, clock.now(), job.id) == 0
    assert len([e for e in await st.journal(0) if e.kind == "operator.retry"]) == 1


async def test_a_second_decider_holding_the_same_events_decides_none_of_them_again(env, clock: FakeClock) -> None:
    st, first = env
    second = service.Decider(st, make_config(), clock)
    for ev in (event(Status.PENDING, n=2), event(Status.APPROVED, minutes=5, card=False)):
        await st.add_event(ev, ev.to_json().encode(), T0)
    held = await st.pending_events()  # both processes read the inbox before either decides
    for ie in held:
        mine = await first.process_one(ie)
        theirs = await second.process_one(ie)
        assert mine.outcome == store.Outcome.APPLIED
        assert theirs.outcome == "already_decided" and theirs.job_ids == ()
    assert [j.kind for j in await jobs(st)] == ["send", "update"]
    assert len(st.audit) == 2

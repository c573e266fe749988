"""The Store contract: one suite, run unchanged against the in-memory store, the SQLite store (a real file) and
the PostgreSQL store (a fresh database of the test session; skipped with a reason when PostgreSQL is absent).

If the fake drifts from the real thing, the memory half of a test here fails while the SQLite half passes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge import store
from bridge.errors import StorageUnavailable
from bridge.events import ApprovalEvent, Status
from bridge.store.memory import MemoryStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))
KEY = "erp:PO-1"


def ev(approval_id: str = "PO-1", event_id: str | None = None, *, status: Status | None = Status.PENDING,
       minutes: float = 0, card: bool = True, source: str = "erp") -> ApprovalEvent:
    extra: dict[str, object] = {}
    if card:
        extra = dict(title="采购申请", recipients=("u1", "u2"), url="https://erp.example.com/po/1", applicant="张三")
    return ApprovalEvent(
        source=source, event_id=event_id or f"{approval_id}-{minutes}", approval_id=approval_id, status=status,
        occurred_at=T0 + timedelta(minutes=minutes), **extra,  # type: ignore[arg-type]
    )


async def add(s: store.Store, event: ApprovalEvent, at: datetime = T0) -> int:
    return (await s.add_event(event, event.to_json().encode(), at)).inbox_id


def approval(status: str = "pending", *, at: datetime = T0, approval_id: str = "PO-1", source: str = "erp",
             generation: int = 1) -> store.Approval:
    return store.Approval(
        source=source, approval_id=approval_id, status=status, last_occurred_at=at, generation=generation,
        card={"title": "采购申请", "recipients": ("u1", "u2"), "url": "https://erp.example.com/po/1"},
        created_at=at, updated_at=at,
    )


def notice(index: int = 0, *, userids: tuple[str, ...] = ("u1", "u2")) -> store.NewNotice:
    return store.NewNotice(generation=1, group_index=index, userids=userids,
                           msg={"msgtype": "oa", "oa": {"head": {"text": "采购"}, "rows": (1, 2)}},
                           status_value="待审批", status_bg="0xFFFF9D46")


async def send_setup(s: store.Store, *, groups: int = 1, extra_jobs: tuple[store.NewJob, ...] = (),
                     approval_id: str = "PO-1") -> tuple[int, list[int]]:
    """An applied pending event: approval, `groups` notices and one send job per notice. Returns (inbox id, job ids)."""
    inbox_id = await add(s, ev(approval_id))
    key = f"erp:{approval_id}"
    jobs = tuple(store.NewJob(kind=store.JobKind.SEND, lock_key=key, new_notice_index=i) for i in range(groups))
    ids = await s.apply_decision(store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason=None, from_status="new", to_status="pending",
        approval=approval(approval_id=approval_id), new_notices=[notice(i) for i in range(groups)],
        jobs=jobs + extra_jobs,
    ), T0)
    return inbox_id, ids


def later_job(kind: str, notice_id: int, key: str | None = KEY, **kw: object) -> store.NewJob:
    return store.NewJob(kind=kind, lock_key=key, notice_id=notice_id, payload={"status": "approved"}, **kw)


# --- receiving -------------------------------------------------------------------------------------------
async def test_add_event_stores_it_and_counts_duplicates(st: store.Store) -> None:
    event = ev(minutes=1)
    first = await st.add_event(event, b'{"raw": 1}', T0.astimezone(CST))
    again = await st.add_event(event, b"other body", T0 + timedelta(seconds=5))
    other_source = await st.add_event(ev(minutes=1, source="oa"), b"{}", T0)
    assert first.inserted and not again.inserted and other_source.inserted
    assert again.inbox_id == first.inbox_id != other_source.inbox_id
    stored = await st.get_event("erp", event.event_id)
    assert stored is not None
    assert stored.event == event and stored.event.recipients == ("u1", "u2")
    assert stored.received_at == T0 and stored.received_at.tzinfo == UTC
    assert stored.duplicates == 1 and not stored.processed and stored.outcome is None
    assert await st.get_event("erp", "nope") is None


async def test_fifty_concurrent_identical_events_make_one_row(st: store.Store) -> None:
    event = ev()
    results = await asyncio.gather(*(st.add_event(event, b"{}", T0) for _ in range(50)))
    assert sum(r.inserted for r in results) == 1
    assert len({r.inbox_id for r in results}) == 1
    [stored] = await st.events_for("erp", "PO-1")
    assert stored.duplicates == 49


async def test_concurrent_mix_of_new_and_repeated_events(st: store.Store) -> None:
    old = await add(st, ev(event_id="old"))
    names = ["old", "new1", "new1", "new2", "old", "new1"]
    results = await asyncio.gather(*(st.add_event(ev(event_id=n), b"{}", T0) for n in names))
    assert [r.inserted for r in results] == [False, True, False, True, False, False]
    assert results[0].inbox_id == results[4].inbox_id == old
    assert results[1].inbox_id == results[2].inbox_id == results[5].inbox_id != results[3].inbox_id
    stored = {e.event.event_id: e.duplicates for e in await st.events_for("erp", "PO-1")}
    assert stored == {"old": 2, "new1": 2, "new2": 0}


async def test_naive_datetimes_are_refused(st: store.Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await st.add_event(ev(), b"{}", datetime(2026, 11, 29, 2, 0))
    assert await st.events_for("erp", "PO-1") == []


async def test_has_card_data_from_an_event_or_an_approval(st: store.Store) -> None:
    assert not await st.has_card_data("erp", "PO-1")
    await add(st, ev(card=False))
    assert not await st.has_card_data("erp", "PO-1")
    await add(st, ev(minutes=1))
    assert await st.has_card_data("erp", "PO-1")
    assert not await st.has_card_data("erp", "PO-2")
    assert not await st.has_card_data("oa", "PO-1")
    inbox_id = await add(st, ev("PO-3", card=False))
    await st.apply_decision(store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", "pending",
                                           approval(approval_id="PO-3")), T0)
    assert await st.has_card_data("erp", "PO-3")


# --- deciding --------------------------------------------------------------------------------------------
async def test_pending_events_order_and_limit(st: store.Store) -> None:
    ids = {}
    for approval_id, minutes in [("B", 5), ("A", 9), ("B", 1), ("A", 2), ("A", 2.5)]:
        ids[approval_id, minutes] = await add(st, ev(approval_id, f"{approval_id}{minutes}", minutes=minutes))
    await add(st, ev("A", "zz", minutes=2, source="oa"))
    pending = await st.pending_events()
    assert [(p.event.source, p.event.approval_id, p.event.event_id) for p in pending] == [
        ("erp", "A", "A2"), ("erp", "A", "A2.5"), ("erp", "A", "A9"), ("erp", "B", "B1"), ("erp", "B", "B5"),
        ("oa", "A", "zz"),
    ]
    assert [p.event.event_id for p in await st.pending_events(limit=2)] == ["A2", "A2.5"]
    await st.apply_decision(store.Decision(ids["A", 2], store.Outcome.STALE, "older", "new", "new", None), T0)
    assert [p.event.event_id for p in await st.pending_events(limit=2)] == ["A2.5", "A9"]


async def test_apply_decision_writes_everything(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    now = T0 + timedelta(seconds=3)
    check_at = now + timedelta(minutes=5)
    ids = await st.apply_decision(store.Decision(
        inbox_id=inbox_id, outcome=store.Outcome.APPLIED, reason="first event", from_status="new", to_status="pending",
        approval=approval(), new_notices=[notice(0, userids=("u1",)), notice(1, userids=("u2",))],
        jobs=[store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=1, payload={"a": (1, 2)}),
              store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=0, event_id="other"),
              store.NewJob(kind=store.JobKind.CHECK, lock_key=None, run_at=check_at)],
        journal=[store.NewJournal(kind="event.applied", source="erp", approval_id="PO-1", message="hi",
                                  data={"n": 2})],
    ), now)
    jobs = await st.jobs_for("erp", "PO-1")
    assert [j.id for j in jobs] == ids and len(ids) == 3
    n0, n1 = await st.notices_for("erp", "PO-1")
    assert (n0.userids, n1.userids) == (("u1",), ("u2",)) and n0.state == "pending" and n0.task_id is None
    assert n0.msg == {"msgtype": "oa", "oa": {"head": {"text": "采购"}, "rows": [1, 2]}}
    assert (n0.status_value, n0.status_bg, n0.generation, n0.group_index) == ("待审批", "0xFFFF9D46", 1, 0)
    send1, send0, check = jobs
    assert (send1.notice_id, send0.notice_id, check.notice_id) == (n1.id, n0.id, None)
    assert send1.payload == {"a": [1, 2]} and send1.state == store.JobState.PENDING and send1.attempts == 0
    assert send1.run_at == now and check.run_at == check_at and send1.created_at == now
    assert (send1.event_id, send0.event_id) == ("PO-1-0", "other")
    assert (send1.source, send1.approval_id, send1.lock_key, check.lock_key) == ("erp", "PO-1", KEY, None)
    stored = await st.get_approval("erp", "PO-1")
    assert stored is not None and stored.status == "pending" and stored.generation == 1
    assert stored.card["recipients"] == ["u1", "u2"] and stored.last_occurred_at == T0
    [audit] = await st.audit_for("erp", "PO-1")
    assert (audit.inbox_id, audit.event_id, audit.from_status, audit.to_status, audit.outcome, audit.reason,
            audit.at) == (inbox_id, "PO-1-0", "new", "pending", store.Outcome.APPLIED, "first event", now)
    [line] = await st.journal()
    assert (line.kind, line.message, line.data, line.at, line.approval_id) == ("event.applied", "hi", {"n": 2}, now,
                                                                               "PO-1")
    [event] = await st.events_for("erp", "PO-1")
    assert event.processed and event.outcome == store.Outcome.APPLIED and event.reason == "first event"
    assert event.processed_at == now
    assert await st.pending_events() == []


async def test_apply_decision_upsert_keeps_created_at(st: store.Store) -> None:
    await send_setup(st)
    inbox_id = await add(st, ev(event_id="e2", status=Status.APPROVED, minutes=5))
    later = T0 + timedelta(minutes=5)
    new = store.Approval("erp", "PO-1", "approved", later, 2, {"title": "x"}, later, later)
    assert await st.apply_decision(store.Decision(inbox_id, store.Outcome.APPLIED, None, "pending", "approved", new),
                                   later) == []
    stored = await st.get_approval("erp", "PO-1")
    assert stored == store.Approval("erp", "PO-1", "approved", later, 2, {"title": "x"}, T0, later)


async def test_apply_decision_is_all_or_nothing(st: store.Store) -> None:
    inbox_id = await add(st, ev())
    bad_index = store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", "pending", approval(), [notice()],
                               [store.NewJob(kind=store.JobKind.SEND, lock_key=KEY, new_notice_index=1)])
    with pytest.raises(ValueError, match="new_notice_index"):
        await st.apply_decision(bad_index, T0)
    bad_notice = store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", "pending", approval(), [notice()],
                                [store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY, notice_id=999)])
    with pytest.raises(ValueError):
        await st.apply_decision(bad_notice, T0)
    orphan = store.Decision(999, store.Outcome.APPLIED, None, "new", "pending", approval(), [notice()])
    with pytest.raises(LookupError):
        await st.apply_decision(orphan, T0)
    assert await st.get_approval("erp", "PO-1") is None
    assert await st.notices_for("erp", "PO-1") == [] and await st.jobs_for("erp", "PO-1") == []
    assert await st.audit_for("erp", "PO-1") == [] and await st.journal() == []
    assert [e.id for e in await st.pending_events()] == [inbox_id]


# --- claiming --------------------------------------------------------------------------------------------
async def test_claim_takes_due_jobs_with_a_lease(st: store.Store) -> None:
    _, [send, check] = await send_setup(st, extra_jobs=(
        store.NewJob(kind=store.JobKind.CHECK, lock_key=None, run_at=T0 + timedelta(seconds=60)),))
    [job] = await st.claim_jobs(T0, 30.0, 10)
    assert job.id == send and job.state == store.JobState.RUNNING and job.attempts == 1
    assert job.lease_until == T0 + timedelta(seconds=30)
    assert job == await st.get_job(send)
    assert await st.claim_jobs(T0 + timedelta(seconds=29), 30.0, 10) == []  # leased; check not due
    [again, due_check] = await st.claim_jobs(T0 + timedelta(seconds=60), 30.0, 10)  # lease passed: reclaimed
    assert (again.id, again.attempts, due_check.id) == (send, 2, check)
    assert again.lease_until == T0 + timedelta(seconds=90)


async def test_claim_limit_takes_earliest_run_at_first(st: store.Store) -> None:
    _, ids = await send_setup(st, extra_jobs=tuple(
        store.NewJob(kind=store.JobKind.CHECK, lock_key=None, run_at=T0 - timedelta(seconds=s)) for s in (1, 3, 2)))
    claimed = await st.claim_jobs(T0, 30.0, 2)
    assert [j.id for j in claimed] == [ids[2], ids[3]]
    assert await st.claim_jobs(T0, 30.0, 0) == []
    assert [j.id for j in await st.claim_jobs(T0, 30.0, 5)] == [ids[1], ids[0]]


async def test_an_update_waits_for_its_send(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    [update] = await st.add_jobs([later_job(store.JobKind.UPDATE, n.id)], T0)
    assert [j.id for j in await st.claim_jobs(T0, 30.0, 10)] == [send]
    assert await st.claim_jobs(T0, 30.0, 10) == []  # the send is running: the update stays behind it
    await st.finish_job(send, T0)
    [job] = await st.claim_jobs(T0, 30.0, 10)
    assert job.id == update and job.kind == store.JobKind.UPDATE and job.payload == {"status": "approved"}


async def test_a_head_retrying_later_still_blocks_its_key(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    await st.add_jobs([later_job(store.JobKind.UPDATE, n.id)], T0)
    await st.claim_jobs(T0, 30.0, 10)
    await st.retry_job(send, T0, T0 + timedelta(seconds=10), "timeout")
    assert await st.claim_jobs(T0 + timedelta(seconds=9), 30.0, 10) == []
    assert [j.id for j in await st.claim_jobs(T0 + timedelta(seconds=10), 30.0, 10)] == [send]


async def test_a_dead_head_blocks_its_key_until_retried(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    _, [other_send] = await send_setup(st, approval_id="PO-2")
    [n] = await st.notices_for("erp", "PO-1")
    later = [later_job(store.JobKind.UPDATE, n.id), later_job(store.JobKind.CHECK, n.id, key=None)]
    [update, check] = await st.add_jobs(later, T0)
    assert {j.id for j in await st.claim_jobs(T0, 30.0, 10)} == {send, other_send, check}
    await st.bury_job(send, T0, "40035 bad parameters")
    for job_id in (other_send, check):
        await st.finish_job(job_id, T0)
    assert await st.claim_jobs(T0 + timedelta(hours=1), 30.0, 10) == []  # the update waits behind a dead send
    dead = await st.get_job(send)
    assert dead is not None and dead.state == store.JobState.DEAD and dead.last_error == "40035 bad parameters"
    assert dead.lease_until is None
    assert await st.retry_dead(T0 + timedelta(hours=1), send) == 1
    [revived] = await st.claim_jobs(T0 + timedelta(hours=1), 30.0, 10)
    assert revived.id == send and revived.attempts == 1
    await st.finish_job(send, T0 + timedelta(hours=1))
    assert [j.id for j in await st.claim_jobs(T0 + timedelta(hours=1), 30.0, 10)] == [update]


async def test_jobs_without_lock_key_are_independent(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    checks = await st.add_jobs([later_job(store.JobKind.CHECK, n.id, key=None) for _ in range(3)], T0)
    await st.bury_job(checks[0], T0, "x")
    assert sorted(j.id for j in await st.claim_jobs(T0, 30.0, 10)) == [send, checks[1], checks[2]]


# --- finishing -------------------------------------------------------------------------------------------
async def test_finish_job_applies_notice_change_and_follow_ups(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    await st.claim_jobs(T0, 30.0, 10)
    now = T0 + timedelta(seconds=2)
    new_ids = await st.finish_job(
        send, now, outcome="ok",
        notice=store.NoticeChange(notice_id=n.id, state="sent", task_id=123456789012, sent_at=now),
        new_jobs=[store.NewJob(kind=store.JobKind.CHECK, lock_key=None, notice_id=n.id,
                               payload={"task_id": 123456789012}, run_at=now + timedelta(seconds=60))],
        journal=[store.NewJournal(kind="dingtalk.sent", job_id=send, task_id=123456789012)],
    )
    done = await st.get_job(send)
    assert done is not None and (done.state, done.outcome, done.lease_until, done.updated_at) == (
        store.JobState.DONE, "ok", None, now)
    [sent] = await st.notices_for("erp", "PO-1")
    assert (sent.state, sent.task_id, sent.sent_at) == ("sent", 123456789012, now)
    assert (sent.status_value, sent.msg, sent.userids) == (n.status_value, n.msg, n.userids)  # untouched
    [check] = [await st.get_job(i) for i in new_ids]
    assert check is not None and check.kind == store.JobKind.CHECK and check.run_at == now + timedelta(seconds=60)
    assert (check.source, check.approval_id, check.event_id, check.notice_id) == ("erp", "PO-1", "PO-1-0", n.id)
    [line] = await st.journal()
    assert (line.kind, line.job_id, line.task_id, line.at) == ("dingtalk.sent", send, 123456789012, now)
    with pytest.raises(LookupError):
        await st.finish_job(999, now)
    with pytest.raises(LookupError):
        await st.finish_job(check.id, now, notice=store.NoticeChange(notice_id=999, state="sent"))
    still = await st.get_job(check.id)
    assert still is not None and still.state == store.JobState.PENDING  # the failed finish changed nothing


async def test_save_notice_changes_only_given_fields(st: store.Store) -> None:
    await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    at = T0 + timedelta(minutes=1)
    await st.save_notice(store.NoticeChange(notice_id=n.id, task_id=42, updated_at=at),
                         journal=[store.NewJournal(kind="dingtalk.task_id", task_id=42)])
    await st.save_notice(store.NoticeChange(notice_id=n.id, status_value="已同意", status_bg="0xFF78C06E",
                                            delivery={"read": ("u1",), "unread": []}, note="n"))
    [saved] = await st.notices_for("erp", "PO-1")
    assert (saved.task_id, saved.updated_at, saved.state) == (42, at, "pending")
    assert (saved.status_value, saved.status_bg, saved.note) == ("已同意", "0xFF78C06E", "n")
    assert saved.delivery == {"read": ["u1"], "unread": []}
    [line] = await st.journal()
    assert line.kind == "dingtalk.task_id" and line.at == at
    with pytest.raises(LookupError):
        await st.save_notice(store.NoticeChange(notice_id=999, task_id=1))


async def test_retry_job_honours_run_at(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    await st.claim_jobs(T0, 30.0, 10)
    retry_at = T0 + timedelta(seconds=8)
    await st.retry_job(send, T0 + timedelta(seconds=1), retry_at, "DingTalk 500",
                       journal=[store.NewJournal(kind="job.retry_scheduled", job_id=send)])
    job = await st.get_job(send)
    assert job is not None
    assert (job.state, job.run_at, job.last_error, job.lease_until, job.attempts) == (
        store.JobState.PENDING, retry_at, "DingTalk 500", None, 1)
    assert await st.claim_jobs(retry_at - timedelta(microseconds=1), 30.0, 10) == []
    [again] = await st.claim_jobs(retry_at, 30.0, 10)
    assert again.id == send and again.attempts == 2
    assert [line.kind for line in await st.journal()] == ["job.retry_scheduled"]
    with pytest.raises(LookupError):
        await st.retry_job(999, T0, T0, "x")
    with pytest.raises(LookupError):
        await st.bury_job(999, T0, "x")


async def test_a_heartbeat_extends_running_leases_only(st: store.Store) -> None:
    _, [send, other] = await send_setup(st, groups=2)
    [claimed] = await st.claim_jobs(T0, 30.0, 10)  # the second send waits behind the first (same key)
    later = T0 + timedelta(seconds=25)
    assert await st.extend_leases([send, other, 999], later, 30.0) == 1
    job = await st.get_job(send)
    assert job is not None and job.lease_until == later + timedelta(seconds=30)
    assert await st.claim_jobs(T0 + timedelta(seconds=40), 30.0, 10) == []  # would have expired at +30 s
    pending = await st.get_job(other)
    assert pending is not None and pending.lease_until is None
    assert await st.extend_leases([], later, 30.0) == 0
    assert claimed.id == send


async def test_release_job_gives_the_claim_back(st: store.Store) -> None:
    _, [send] = await send_setup(st)
    await st.claim_jobs(T0, 30.0, 10)
    later = T0 + timedelta(seconds=5)
    await st.release_job(send, later)
    job = await st.get_job(send)
    assert job is not None and (job.state, job.attempts, job.run_at, job.lease_until) == (
        store.JobState.PENDING, 0, later, None)
    await st.release_job(send, later)  # not running: nothing to give back
    job = await st.get_job(send)
    assert job is not None and job.attempts == 0
    [again] = await st.claim_jobs(later, 30.0, 10)
    assert again.attempts == 1


async def test_retry_dead_one_or_all(st: store.Store) -> None:
    _, ids = await send_setup(st, groups=3)
    _, [other] = await send_setup(st, approval_id="PO-2")
    await st.claim_jobs(T0, 30.0, 10)
    for job_id in (ids[0], other):
        await st.bury_job(job_id, T0, "boom")
    assert [j.id for j in await st.list_jobs(store.JobState.DEAD)] == [other, ids[0]]
    assert await st.retry_dead(T0, ids[1]) == 0  # not dead
    later = T0 + timedelta(minutes=3)
    assert await st.retry_dead(later, ids[0]) == 1
    assert await st.retry_dead(later) == 1
    assert await st.retry_dead(later) == 0
    for job_id in (ids[0], other):
        job = await st.get_job(job_id)
        assert job is not None and (job.state, job.attempts, job.run_at) == (store.JobState.PENDING, 0, later)


async def test_add_jobs_for_an_operator(st: store.Store) -> None:
    await send_setup(st)
    [n] = await st.notices_for("erp", "PO-1")
    ids = await st.add_jobs([later_job(store.JobKind.UPDATE, n.id, event_id="resync")], T0,
                            journal=[store.NewJournal(kind="operator.resync", source="erp")])
    [job] = [await st.get_job(i) for i in ids]
    assert job is not None and (job.source, job.approval_id, job.kind, job.event_id) == ("erp", "PO-1", "update",
                                                                                          "resync")
    with pytest.raises(ValueError):
        await st.add_jobs([store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY, new_notice_index=0)], T0)
    with pytest.raises(ValueError):
        await st.add_jobs([store.NewJob(kind=store.JobKind.UPDATE, lock_key=KEY)], T0)
    with pytest.raises(ValueError):
        await st.add_jobs([later_job("fax", n.id)], T0)
    with pytest.raises(LookupError):
        await st.add_jobs([later_job(store.JobKind.UPDATE, n.id), later_job(store.JobKind.UPDATE, 999)], T0)
    assert len(await st.jobs_for("erp", "PO-1")) == 2
    assert [line.kind for line in await st.journal()] == ["operator.resync"]


# --- reading ---------------------------------------------------------------------------------------------
async def test_list_and_filter_reads(st: store.Store) -> None:
    _, [a] = await send_setup(st)
    _, [b, c] = await send_setup(st, approval_id="PO-2", groups=2)
    await st.claim_jobs(T0, 30.0, 1)
    assert [j.id for j in await st.list_jobs()] == [c, b, a]  # newest first: what an operator looks for
    assert [j.id for j in await st.list_jobs(limit=2)] == [c, b]
    assert [j.id for j in await st.list_jobs(store.JobState.RUNNING)] == [a]
    assert [j.id for j in await st.list_jobs(store.JobState.PENDING)] == [c, b]
    assert [j.id for j in await st.jobs_for("erp", "PO-2")] == [b, c]
    assert await st.jobs_for("oa", "PO-2") == [] and await st.get_job(999) is None
    assert await st.get_approval("erp", "PO-9") is None


async def test_list_approvals_newest_first_with_filters(st: store.Store) -> None:
    for i, (src, status) in enumerate([("erp", "pending"), ("oa", "approved"), ("erp", "approved")]):
        at = T0 + timedelta(minutes=i)
        inbox_id = await add(st, ev(f"A{i}", source=src))
        await st.apply_decision(store.Decision(inbox_id, store.Outcome.APPLIED, None, "new", status,
                                               approval(status, at=at, approval_id=f"A{i}", source=src)), at)
    assert [a.approval_id for a in await st.list_approvals()] == ["A2", "A1", "A0"]
    assert [a.approval_id for a in await st.list_approvals(status="approved")] == ["A2", "A1"]
    assert [a.approval_id for a in await st.list_approvals(source="erp")] == ["A2", "A0"]
    assert [a.approval_id for a in await st.list_approvals(since=T0 + timedelta(minutes=1))] == ["A2", "A1"]
    assert [a.approval_id for a in await st.list_approvals(source="erp", status="pending", limit=1)] == ["A0"]
    assert [a.approval_id for a in await st.list_approvals(limit=1)] == ["A2"]


async def test_events_for_is_the_history_by_occurred_at(st: store.Store) -> None:
    await add(st, ev(event_id="late", minutes=9))
    await add(st, ev(event_id="early", minutes=1))
    await add(st, ev(event_id="same-early-second", minutes=1))
    await add(st, ev("PO-2", event_id="other"))
    assert [e.event.event_id for e in await st.events_for("erp", "PO-1")] == ["early", "same-early-second", "late"]


async def test_audit_for_lists_processed_events(st: store.Store) -> None:
    first, _ = await send_setup(st)
    second = await add(st, ev(event_id="dup-status", minutes=1))
    repeat = store.Decision(second, store.Outcome.UNCHANGED, "same status", "pending", "pending", None)
    await st.apply_decision(repeat, T0)
    audits = await st.audit_for("erp", "PO-1")
    expected = [(first, store.Outcome.APPLIED), (second, store.Outcome.UNCHANGED)]
    assert [(a.inbox_id, a.outcome) for a in audits] == expected
    assert await st.audit_for("erp", "PO-2") == []


async def test_journal_after_id_and_source(st: store.Store) -> None:
    await st.append_journal([store.NewJournal(kind="a", source="erp"), store.NewJournal(kind="b", source="oa"),
                             store.NewJournal(kind="c", source="erp", data={"x": [1]})], T0)
    await st.append_journal([], T0)
    lines = await st.journal()
    assert [x.kind for x in lines] == ["a", "b", "c"] and lines[0].id < lines[1].id < lines[2].id
    assert [x.kind for x in await st.journal(lines[0].id)] == ["b", "c"]
    assert [x.kind for x in await st.journal(source="erp")] == ["a", "c"]
    assert [x.kind for x in await st.journal(lines[0].id, source="erp")] == ["c"]
    assert [x.kind for x in await st.journal(limit=1)] == ["a"]
    assert lines[2].data == {"x": [1]} and lines[2].at == T0 and lines[2].message == ""


async def test_job_counts(st: store.Store) -> None:
    empty = await st.job_counts(T0)
    assert empty == store.JobCounts(0, 0, 0, 0, None)
    _, ids = await send_setup(st, groups=2)
    _, [other] = await send_setup(st, approval_id="PO-2")
    [n] = (await st.notices_for("erp", "PO-2"))
    await st.add_jobs([later_job(store.JobKind.CHECK, n.id, key=None, run_at=T0 + timedelta(hours=1))],
                               T0 - timedelta(hours=1))
    await st.claim_jobs(T0, 30.0, 10)  # ids[0] and other; ids[1] waits behind ids[0]
    await st.finish_job(ids[0], T0)
    await st.bury_job(other, T0, "x")
    counts = await st.job_counts(T0)
    assert (counts.pending, counts.running, counts.dead, counts.done) == (2, 0, 1, 1)
    assert counts.oldest_pending_run_at == T0


async def test_check_writable(st: store.Store) -> None:
    await st.check_writable()


async def test_memory_store_fail_writes_and_reset() -> None:
    s = MemoryStore()
    await s.open()
    await add(s, ev())
    s.fail_writes = True
    with pytest.raises(StorageUnavailable):
        await s.add_event(ev(minutes=1), b"{}", T0)
    with pytest.raises(StorageUnavailable):
        await s.check_writable()
    with pytest.raises(StorageUnavailable):
        await s.claim_jobs(T0, 30.0, 1)
    assert len(s.inbox) == 1 and s.raw_bodies == {1: ev().to_json().encode()}
    s.reset()
    assert not s.fail_writes and s.inbox == {} and s.jobs == {} and s.notices == {}
    assert (await s.add_event(ev(), b"{}", T0)).inbox_id == 1
    await s.close()

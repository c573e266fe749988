"""Retention: the worker prunes old journal lines, processed events and done jobs in small batches."""

from __future__ import annotations

from bridge import store
from bridge.clock import FakeClock
from bridge.config import WorkerConfig
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.metrics import Metrics
from bridge.retention import Retention
from bridge.store.memory import MemoryStore
from bridge.worker import Worker
from tests.unit.helpers import event, make_config
from tests.unit.test_config import build, error, minimal

DAY = 86400.0


class Seen:
    def __init__(self) -> None:
        self.pruned: dict[str, int] = {}

    def rows_pruned(self, kind: str, count: int) -> None:
        self.pruned[kind] = self.pruned.get(kind, 0) + count


async def lines(st: MemoryStore, clock: FakeClock, n: int) -> None:
    await st.append_journal([store.NewJournal(kind=f"k{i}") for i in range(n)], clock.now())


async def test_rows_past_retention_go_in_batches_and_younger_ones_stay(clock: FakeClock) -> None:
    st, seen = MemoryStore(), Seen()
    await lines(st, clock, 7)
    clock.advance(20 * DAY)
    await lines(st, clock, 1)
    clock.advance(11 * DAY)
    retention = Retention(st, clock, WorkerConfig(retention_days=30, prune_batch=2, prune_every_s=60), seen)
    pruned = await retention.tick()
    assert pruned.journal == 7 and seen.pruned == {"journal": 7}  # four batches in one look
    assert [e.kind for e in st.journal_entries] == ["k0"]
    await lines(st, clock, 1)
    clock.advance(40 * DAY)
    assert (await retention.tick()).total == 2  # the next look is due: both older lines go


async def test_a_look_waits_prune_every_s_and_retention_zero_keeps_everything(clock: FakeClock) -> None:
    st = MemoryStore()
    retention = Retention(st, clock, WorkerConfig(retention_days=30, prune_every_s=300), None)
    await retention.tick()
    await lines(st, clock, 3)
    clock.advance(31 * DAY)
    await retention.tick()  # the first look after the fresh start was 31 days ago: due
    assert st.journal_entries == []
    await lines(st, clock, 3)
    clock.advance(31 * DAY)
    keep = Retention(st, clock, WorkerConfig(retention_days=0), None)
    assert (await keep.tick()).total == 0 and len(st.journal_entries) == 3


async def test_the_worker_prunes_processed_events_and_done_jobs_and_counts_them(clock: FakeClock) -> None:
    st, metrics = MemoryStore(), Metrics()
    cfg = make_config()
    w = Worker(st, FakeDingTalk(), cfg, clock, prune_observer=metrics)
    for ev in (event(Status.PENDING, n=2), event(Status.APPROVED, minutes=5, card=False)):
        await st.add_event(ev, ev.to_json().encode(), clock.now())
    await w.run(burst=True)
    assert st.inbox and any(j.state == store.JobState.DONE for j in st.jobs.values())
    clock.advance(31 * DAY)
    await w.run(burst=True)
    assert st.inbox == {} and st.audit == []
    # what ran in this burst (the delayed delivery checks) is young; every older done job is gone
    assert all(j.updated_at == clock.now() for j in st.jobs.values() if j.state == store.JobState.DONE)
    assert all(e.at == clock.now() for e in st.journal_entries)
    assert await st.get_approval("erp", "PO-1") is not None and await st.notices_for("erp", "PO-1")
    assert metrics.registry.get_sample_value("bridge_pruned_rows_total", {"kind": "inbox"}) == 2


def test_retention_and_orphan_policy_are_configurable_and_checked() -> None:
    cfg = build(minimal(worker={"retention_days": 7, "prune_batch": 100, "on_orphaned": "mark"}))
    assert (cfg.worker.retention_days, cfg.worker.prune_batch, cfg.worker.on_orphaned) == (7, 100, "mark")
    assert build(minimal(worker={"retention_days": 0})).worker.retention_days == 0
    defaults = build(minimal()).worker
    assert (defaults.retention_days, defaults.prune_batch, defaults.on_orphaned) == (30, 500, "resend_distinct")
    assert "on_orphaned" in error(minimal(worker={"on_orphaned": "ignore"}))
    assert "retention_days" in error(minimal(worker={"retention_days": -1}))
    assert "prune_batch" in error(minimal(worker={"prune_batch": 0}))

"""An in-memory Store for unit tests: the SQL stores' protocol and semantics in dicts, held to the same contract
suite (tests/integration/store/), with the round trips a database imposes (events through JSON, mappings through
`json`, aware UTC times). Inspectable on purpose (`inbox`, `jobs`, `journal_entries`, ...); `reset()` empties it;
`fail_writes = True` makes every write raise `StorageUnavailable` (the receiver's 503 path) until set back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from bridge import store
from bridge.errors import AlreadyDecided, StorageUnavailable
from bridge.events import ApprovalEvent
from bridge.records import JobState, NoticeState
from bridge.store.memory_jobs import MemoryJobs
from bridge.store.memory_values import check_kind as _check_kind
from bridge.store.memory_values import opt_utc as _opt_utc
from bridge.store.memory_values import plain as _plain
from bridge.store.memory_values import prune_plan
from bridge.store.memory_values import utc as _utc
from bridge.store.pending import read_pending

__all__ = ["MemoryStore"]


class MemoryStore(MemoryJobs):
    """The Store protocol in memory. Every method is atomic: it checks everything before changing anything."""

    def __init__(self) -> None:
        self.fail_writes = False
        self.reset()

    def reset(self) -> None:
        """Forget everything (and stop failing writes)."""
        self.fail_writes = False
        self.inbox: dict[int, store.InboxEvent] = {}
        self.raw_bodies: dict[int, bytes] = {}
        self.approvals: dict[tuple[str, str], store.Approval] = {}
        self.notices: dict[int, store.Notice] = {}
        self.jobs: dict[int, store.Job] = {}
        self.audit: list[store.AuditEntry] = []
        self.journal_entries: list[store.JournalEntry] = []
        self._by_event_id: dict[tuple[str, str], int] = {}
        self._reset_side_tables()
        self._last_id: dict[str, int] = {}  # ids are never reused, even after pruning (as in SQLite)

    def _next_id(self, table: str) -> int:
        self._last_id[table] = self._last_id.get(table, 0) + 1
        return self._last_id[table]

    def __repr__(self) -> str:
        return f"MemoryStore(events={len(self.inbox)}, jobs={len(self.jobs)})"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _writable(self) -> None:
        if self.fail_writes:
            raise StorageUnavailable("storage unavailable: writes are failing (MemoryStore.fail_writes)")

    # --- receiving -----------------------------------------------------------------------------------------
    async def add_event(self, event: ApprovalEvent, raw: bytes, received_at: datetime) -> store.AddResult:
        stored = ApprovalEvent.from_json(event.to_json())
        received, _ = _utc(received_at), _utc(event.occurred_at)
        self._writable()
        key = (event.source, event.event_id)
        if (known := self._by_event_id.get(key)) is not None:
            self.inbox[known] = replace(self.inbox[known], duplicates=self.inbox[known].duplicates + 1)
            return store.AddResult(inserted=False, inbox_id=known)
        inbox_id = self._next_id("inbox")
        self.inbox[inbox_id] = store.InboxEvent(id=inbox_id, event=stored, received_at=received)
        self.raw_bodies[inbox_id] = bytes(raw)
        self._by_event_id[key] = inbox_id
        return store.AddResult(inserted=True, inbox_id=inbox_id)

    async def has_card_data(self, source: str, approval_id: str) -> bool:
        if (source, approval_id) in self.approvals:
            return True
        return any(e.event.has_card_data for e in self._events_of(source, approval_id))

    def _events_of(self, source: str, approval_id: str) -> Iterable[store.InboxEvent]:
        return (e for e in self.inbox.values() if e.event.source == source and e.event.approval_id == approval_id)

    # --- deciding ------------------------------------------------------------------------------------------
    async def pending_events(self, limit: int = 100) -> list[store.InboxEvent]:
        pending = [e for e in self.inbox.values() if not e.processed]
        pending.sort(key=lambda e: (e.event.source, e.event.approval_id, _utc(e.event.occurred_at), e.id))
        return pending[: max(limit, 0)]

    async def pending_batch(self, limit: int = 100) -> store.Pending:
        return await read_pending(self, limit)

    async def get_approval(self, source: str, approval_id: str) -> store.Approval | None:
        return self.approvals.get((source, approval_id))

    async def notices_for(self, source: str, approval_id: str) -> list[store.Notice]:
        return [n for n in self.notices.values() if n.source == source and n.approval_id == approval_id]

    def _check_notice_ref(self, notice_id: int | None) -> None:
        if notice_id is not None and notice_id not in self.notices:
            raise ValueError(f"the database refused the write: no notice {notice_id}")

    def _new_job(self, job: store.NewJob, source: str, approval_id: str, notice_id: int | None,
                 event_id: str | None, now: datetime) -> int:
        job_id = self._next_id("jobs")
        self.jobs[job_id] = store.Job(
            id=job_id, kind=job.kind, source=source, approval_id=approval_id, lock_key=job.lock_key,
            notice_id=notice_id, payload=_plain(job.payload), state=JobState.PENDING, attempts=0,
            run_at=_utc(job.run_at or now), created_at=now, updated_at=now, event_id=job.event_id or event_id,
        )
        return job_id

    def _append_journal(self, entries: Sequence[store.NewJournal], at: datetime) -> None:
        for e in entries:
            self.journal_entries.append(store.JournalEntry(
                id=self._next_id("journal"), at=at, kind=e.kind, source=e.source, approval_id=e.approval_id,
                event_id=e.event_id, job_id=e.job_id, task_id=e.task_id, message=e.message, data=_plain(e.data),
            ))

    async def apply_decision(self, decision: store.Decision, now: datetime) -> list[int]:
        now = _utc(now)
        self._writable()
        for job in decision.jobs:
            _check_kind(job)
            _utc(job.run_at or now)
            _plain(job.payload)
            if job.new_notice_index is not None and not 0 <= job.new_notice_index < len(decision.new_notices):
                raise ValueError(f"new_notice_index {job.new_notice_index} is outside the decision's new notices")
            if job.new_notice_index is None:
                self._check_notice_ref(job.notice_id)
        notice_msgs = [_plain(n.msg) for n in decision.new_notices]
        for line in decision.journal:
            _plain(line.data)
        if decision.inbox_id not in self.inbox:
            raise LookupError(f"no inbox event {decision.inbox_id}")
        if self.inbox[decision.inbox_id].processed:  # the claim: another decider got there first
            raise AlreadyDecided(f"inbox event {decision.inbox_id} was decided already")
        if (a := decision.approval) is not None:
            card, occurred = _plain(a.card), _opt_utc(a.last_occurred_at)
            created = _utc(a.created_at)
            updated = _utc(a.updated_at)
        # --- everything checked: change
        ie = self.inbox[decision.inbox_id]
        ev = ie.event
        self.inbox[ie.id] = replace(ie, processed=True, outcome=decision.outcome, reason=decision.reason,
                                    processed_at=now)
        if a is not None:
            old = self.approvals.get((a.source, a.approval_id))
            self.approvals[(a.source, a.approval_id)] = store.Approval(
                source=a.source, approval_id=a.approval_id, status=a.status, last_occurred_at=occurred,
                generation=a.generation, card=card, created_at=old.created_at if old else created, updated_at=updated,
            )
        notice_ids = []
        for n, msg in zip(decision.new_notices, notice_msgs, strict=True):
            notice_id = self._next_id("notices")
            self.notices[notice_id] = store.Notice(
                id=notice_id, source=ev.source, approval_id=ev.approval_id, generation=n.generation,
                group_index=n.group_index, userids=tuple(n.userids), msg=msg, state=NoticeState.UNSENT,
                status_value=n.status_value, status_bg=n.status_bg,
            )
            notice_ids.append(notice_id)
        job_ids = []
        for job in decision.jobs:
            ref = notice_ids[job.new_notice_index] if job.new_notice_index is not None else job.notice_id
            job_ids.append(self._new_job(job, ev.source, ev.approval_id, ref, ev.event_id, now))
        self.audit.append(store.AuditEntry(
            id=self._next_id("audit"), inbox_id=ie.id, source=ev.source, approval_id=ev.approval_id,
            event_id=ev.event_id, from_status=decision.from_status, to_status=decision.to_status,
            outcome=decision.outcome, reason=decision.reason, at=now,
        ))
        self._append_journal(decision.journal, now)
        return job_ids

    async def apply_decision_and_claim(self, decision: store.Decision, now: datetime, lease_s: float,
                                       limit: int) -> store.Applied:
        job_ids = await self.apply_decision(decision, now)  # nothing awaits in between: one transaction
        ev = self.inbox[decision.inbox_id].event
        claimed = self._claim(now, lease_s, limit, of=(ev.source, ev.approval_id)) if limit > 0 else []
        notices = {n.id: n for n in self.notices.values() if (n.source, n.approval_id) == (ev.source, ev.approval_id)}
        return store.Applied(job_ids=tuple(job_ids), claimed=tuple(claimed), notices=notices)

    def on_work(self, callback: Callable[[], None]) -> None: ...  # one process: its worker is woken directly

    # --- reading -------------------------------------------------------------------------------------------
    async def get_job(self, job_id: int) -> store.Job | None:
        return self.jobs.get(job_id)

    async def list_jobs(self, state: str | None = None, limit: int = 100) -> list[store.Job]:
        return [j for j in reversed(self.jobs.values()) if state is None or j.state == state][: max(limit, 0)]

    async def jobs_for(self, source: str, approval_id: str) -> list[store.Job]:
        return [j for j in self.jobs.values() if j.source == source and j.approval_id == approval_id]

    async def list_approvals(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[store.Approval]:
        since = _opt_utc(since)
        found = [
            a for a in self.approvals.values()
            if (status is None or a.status == status) and (source is None or a.source == source)
            and (since is None or a.updated_at >= since)
        ]
        found.sort(key=lambda a: (a.source, a.approval_id))
        found.sort(key=lambda a: a.updated_at, reverse=True)
        return found[: max(limit, 0)]

    async def events_for(self, source: str, approval_id: str) -> list[store.InboxEvent]:
        return sorted(self._events_of(source, approval_id), key=lambda e: (_utc(e.event.occurred_at), e.id))

    async def audit_for(self, source: str, approval_id: str) -> list[store.AuditEntry]:
        return [a for a in self.audit if a.source == source and a.approval_id == approval_id]

    async def get_event(self, source: str, event_id: str) -> store.InboxEvent | None:
        inbox_id = self._by_event_id.get((source, event_id))
        return None if inbox_id is None else self.inbox[inbox_id]

    async def journal(
        self, after_id: int = 0, *, source: str | None = None, limit: int = 500
    ) -> list[store.JournalEntry]:
        found = [e for e in self.journal_entries if e.id > after_id and (source is None or e.source == source)]
        return found[: max(limit, 0)]

    async def journal_tail(self, n: int, *, source: str | None = None) -> list[store.JournalEntry]:
        found = [e for e in self.journal_entries if source is None or e.source == source]
        return found[-n:] if n > 0 else []

    async def journal_alerts(self, since: datetime, limit: int) -> list[store.JournalEntry]:
        since = _utc(since)
        found = sorted((e for e in self.journal_entries if e.kind in tuple(store.AlertKind) and e.at >= since),
                       key=lambda e: (e.at, e.id))
        return found[-limit:] if limit > 0 else []

    async def prune(self, before: datetime, limit: int) -> store.Pruned:
        self._writable()
        old_lines, events, jobs = prune_plan(self.journal_entries, self.inbox, self.jobs, _utc(before), limit)
        self.journal_entries = [e for e in self.journal_entries if e.id not in old_lines]
        audit_before, self.audit = len(self.audit), [a for a in self.audit if a.inbox_id not in events]
        for inbox_id in events:
            ie = self.inbox.pop(inbox_id)
            self.raw_bodies.pop(inbox_id, None)
            self._by_event_id.pop((ie.event.source, ie.event.event_id), None)
        for job_id in jobs:
            del self.jobs[job_id]
        return store.Pruned(journal=len(old_lines), inbox=len(events), audit=audit_before - len(self.audit),
                            jobs=len(jobs))

    async def append_journal(self, entries: Sequence[store.NewJournal], now: datetime) -> None:
        now = _utc(now)
        for e in entries:
            _plain(e.data)
        if entries:
            self._writable()
        self._append_journal(entries, now)

    async def job_counts(self, now: datetime) -> store.JobCounts:
        states = [j.state for j in self.jobs.values()]
        pending = [j.run_at for j in self.jobs.values() if j.state == JobState.PENDING]
        return store.JobCounts(
            pending=states.count(JobState.PENDING), running=states.count(JobState.RUNNING),
            dead=states.count(JobState.DEAD), done=states.count(JobState.DONE),
            oldest_pending_run_at=min(pending, default=None),
            orphaned=sum(1 for n in self.notices.values() if n.orphaned_at is not None),
        )

    async def approval_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for a in self.approvals.values():
            counts[(a.source, a.status)] = counts.get((a.source, a.status), 0) + 1
        return counts

    async def waiting_events(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.inbox.values():
            if not e.processed:
                counts[e.event.source] = counts.get(e.event.source, 0) + 1
        return counts

    async def check_writable(self) -> None:
        self._writable()

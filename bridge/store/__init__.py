"""The Store protocol: everything bridge keeps, behind one seam.

Implementations: `bridge.sqlite_store.SQLiteStore` (aiosqlite, the embedded default) and
`bridge.memory_store.MemoryStore` (for unit tests). One contract test suite runs against both, so the
fake cannot drift from the real thing. No SQL appears outside `sqlite_store` and `sql/`.

What is stored, and why:

- inbox: every accepted event, unique per (source, event_id), with its raw body. A duplicate delivery
  only increments `duplicates`. Each event is later marked processed with an outcome:
  applied | unchanged | stale | conflict | ignored | unresolved, and a reason.
- approvals: one row per (source, approval_id): the machine state, the `occurred_at` of the last
  applied event (for staleness), the card data merged from events, and the card generation (bumped on
  resubmission so the new card's content differs).
- notices: one row per DingTalk send (a group of at most 5 userids): the exact `msg` sent (so a retry is
  byte-identical), the task_id as soon as DingTalk returns it, the current status bar, times, and the
  delivery result from getsendresult.
- jobs: the outbox. One job per DingTalk call (send / update / recall / check). Jobs sharing a
  `lock_key` (one approval) run one at a time in id order: only the lowest-id unfinished job of a key
  may be claimed, so an update never overtakes the send that creates its task_id, and a dead job holds
  back the later jobs of its approval until an operator retries it. A claim takes a lease; a crashed
  worker's job is claimable again once the lease has passed.
- audit: one row per processed event (from, to, outcome, reason).
- journal: an append-only stream of what bridge did, for `bridge tail` from another process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bridge.events import ApprovalEvent

# inbox outcomes
APPLIED = "applied"
UNCHANGED = "unchanged"  # a repeat of the current status: a no-op
STALE = "stale"  # older than the last applied event
CONFLICT = "conflict"  # an illegal move
IGNORED = "ignored"  # accepted, changes nothing by design (status None)
UNRESOLVED = "unresolved"  # no card data / recipients could be resolved
OUTCOMES = (APPLIED, UNCHANGED, STALE, CONFLICT, IGNORED, UNRESOLVED)

# job kinds and states
SEND, UPDATE, RECALL, CHECK = "send", "update", "recall", "check"
JOB_KINDS = (SEND, UPDATE, RECALL, CHECK)
PENDING, RUNNING, DONE, DEAD = "pending", "running", "done", "dead"
JOB_STATES = (PENDING, RUNNING, DONE, DEAD)


@dataclass(frozen=True, slots=True)
class AddResult:
    inserted: bool  # False: a duplicate of an event already stored
    inbox_id: int


@dataclass(frozen=True, slots=True)
class InboxEvent:
    id: int
    event: ApprovalEvent
    received_at: datetime
    processed: bool = False
    outcome: str | None = None
    reason: str | None = None
    duplicates: int = 0
    processed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Approval:
    source: str
    approval_id: str
    status: str  # machine state: new | pending | approved | rejected | revoked | recalled
    last_occurred_at: datetime | None
    generation: int  # 1 for the first card; +1 per resubmission
    card: Mapping[str, Any]  # merged card data: title, recipients, url, pc_url, applicant, form, amount, content
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Notice:
    id: int
    source: str
    approval_id: str
    generation: int
    group_index: int
    userids: tuple[str, ...]
    msg: Mapping[str, Any]  # the exact DingTalk `msg` object sent
    state: str  # pending (not sent yet) | sent | recalled
    status_value: str | None = None  # the status bar as it is now on the user's card
    status_bg: str | None = None
    task_id: int | None = None
    sent_at: datetime | None = None
    updated_at: datetime | None = None
    recalled_at: datetime | None = None
    delivery: Mapping[str, Any] | None = None  # getsendresult lists, normalised
    note: str | None = None  # e.g. "recall window passed: status bar set to revoked instead"


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    source: str
    approval_id: str
    lock_key: str | None  # None: not ordered (check jobs)
    notice_id: int | None
    payload: Mapping[str, Any]
    state: str
    attempts: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    lease_until: datetime | None = None
    last_error: str | None = None
    outcome: str | None = None  # how a done job ended: ok | expired | fallback | skipped | ...
    event_id: str | None = None  # the event that caused it


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    inbox_id: int
    source: str
    approval_id: str
    event_id: str
    from_status: str
    to_status: str
    outcome: str
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    at: datetime
    kind: str  # a log event name: event.applied, dingtalk.sent, job.retry_scheduled, job.dead, ...
    source: str | None = None
    approval_id: str | None = None
    event_id: str | None = None
    job_id: int | None = None
    task_id: int | None = None
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewJournal:
    """A journal line to append in the same transaction as the change it describes."""

    kind: str
    message: str = ""
    source: str | None = None
    approval_id: str | None = None
    event_id: str | None = None
    job_id: int | None = None
    task_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewNotice:
    generation: int
    group_index: int
    userids: tuple[str, ...]
    msg: Mapping[str, Any]
    status_value: str | None
    status_bg: str | None


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create. It refers to its notice either by id (an existing notice) or by its index in
    the same Decision's `new_notices` (a notice created in the same transaction)."""

    kind: str
    lock_key: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    notice_id: int | None = None
    new_notice_index: int | None = None
    run_at: datetime | None = None  # None: due now
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything one processed event changes, written in one transaction by `apply_decision`."""

    inbox_id: int
    outcome: str
    reason: str | None
    from_status: str
    to_status: str
    approval: Approval | None  # the approval row to upsert; None leaves it as it is
    new_notices: Sequence[NewNotice] = ()
    jobs: Sequence[NewJob] = ()
    journal: Sequence[NewJournal] = ()


@dataclass(frozen=True, slots=True)
class NoticeChange:
    """Fields of a notice to set when a job finishes; None means leave as is."""

    notice_id: int
    state: str | None = None
    task_id: int | None = None
    status_value: str | None = None
    status_bg: str | None = None
    sent_at: datetime | None = None
    updated_at: datetime | None = None
    recalled_at: datetime | None = None
    delivery: Mapping[str, Any] | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class JobCounts:
    pending: int
    running: int
    dead: int
    done: int
    oldest_pending_run_at: datetime | None  # for the "oldest pending job age" gauge


class Store(Protocol):
    """Storage for bridge. All datetimes in and out are timezone-aware UTC."""

    async def open(self) -> None:
        """Create or migrate the schema, start background writers. Idempotent."""

    async def close(self) -> None:
        """Flush pending writes and release resources."""

    # --- receiving -----------------------------------------------------------------------------------
    async def add_event(self, event: ApprovalEvent, raw: bytes, received_at: datetime) -> AddResult:
        """Store an event durably before returning (group commit: concurrent callers share commits).

        A duplicate (same source and event_id) changes nothing but the duplicate counter and returns
        inserted=False with the stored row's id. Raises `StorageUnavailable` when the write fails.
        """

    async def has_card_data(self, source: str, approval_id: str) -> bool:
        """True if an approval row exists, or a stored event of this approval carries card data."""

    # --- deciding ------------------------------------------------------------------------------------
    async def pending_events(self, limit: int = 100) -> list[InboxEvent]:
        """Unprocessed events, ordered by (source, approval_id, occurred_at, id)."""

    async def get_approval(self, source: str, approval_id: str) -> Approval | None: ...

    async def notices_for(self, source: str, approval_id: str) -> list[Notice]:
        """All notices of an approval, by id."""

    async def apply_decision(self, decision: Decision, now: datetime) -> list[int]:
        """In one transaction: mark the inbox event processed with its outcome, upsert the approval,
        insert notices, jobs (due at `run_at` or now), the audit row and journal lines. Returns the ids
        of the jobs created."""

    # --- delivering ----------------------------------------------------------------------------------
    async def claim_jobs(self, now: datetime, lease_s: float, limit: int) -> list[Job]:
        """Claim up to `limit` due jobs: state pending (or running with an expired lease), run_at <= now,
        and, when the job has a lock_key, it is the lowest-id job of that key not yet done (a dead head
        blocks its key). Claimed jobs become running with lease_until = now + lease_s, attempts + 1."""

    async def finish_job(
        self,
        job_id: int,
        now: datetime,
        *,
        outcome: str = "ok",
        notice: NoticeChange | None = None,
        new_jobs: Sequence[NewJob] = (),
        journal: Sequence[NewJournal] = (),
    ) -> list[int]:
        """Mark a job done and apply its results in one transaction. Returns the new job ids."""

    async def save_notice(self, change: NoticeChange, journal: Sequence[NewJournal] = ()) -> None:
        """Apply a notice change on its own (a task_id stored the moment DingTalk returns it)."""

    async def retry_job(
        self, job_id: int, now: datetime, run_at: datetime, error: str, journal: Sequence[NewJournal] = ()
    ) -> None:
        """Put a running job back to pending, due at `run_at`, with its last error."""

    async def bury_job(self, job_id: int, now: datetime, error: str, journal: Sequence[NewJournal] = ()) -> None:
        """Move a job to the dead-letter state with its last error."""

    async def release_job(self, job_id: int, now: datetime) -> None:
        """Give a claimed job back untouched (shutdown): pending, due now, attempts - 1."""

    async def add_jobs(self, jobs: Sequence[NewJob], now: datetime, journal: Sequence[NewJournal] = ()) -> list[int]:
        """Create jobs outside event processing (an operator's resync), with journal lines, in one
        transaction. `new_notice_index` is not allowed here. Returns the new job ids."""

    async def retry_dead(self, now: datetime, job_id: int | None = None) -> int:
        """Dead → pending, due now, attempts reset. One job, or all dead jobs when job_id is None.
        Returns how many jobs were revived."""

    # --- reading (admin API, CLI, metrics) -----------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None: ...

    async def list_jobs(self, state: str | None = None, limit: int = 100) -> list[Job]: ...

    async def jobs_for(self, source: str, approval_id: str) -> list[Job]: ...

    async def list_approvals(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Approval]:
        """Most recently updated first."""

    async def events_for(self, source: str, approval_id: str) -> list[InboxEvent]:
        """The approval's history: every stored event with its outcome, by occurred_at then id."""

    async def audit_for(self, source: str, approval_id: str) -> list[AuditEntry]: ...

    async def get_event(self, source: str, event_id: str) -> InboxEvent | None: ...

    async def journal(self, after_id: int = 0, *, source: str | None = None, limit: int = 500) -> list[JournalEntry]:
        """Journal lines with id > after_id, oldest first."""

    async def append_journal(self, entries: Sequence[NewJournal], now: datetime) -> None: ...

    async def job_counts(self, now: datetime) -> JobCounts: ...

    async def check_writable(self) -> None:
        """Raise StorageUnavailable unless a write can be committed now (readiness probe)."""

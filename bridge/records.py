"""The shared vocabulary: what bridge stores and the named states it moves through.

A leaf module (it imports only `bridge.events`), so the pure core, the stores, the worker and the
operator surfaces can all speak of outcomes, job kinds and states without importing each other.
Every enum is a StrEnum whose values are the strings stored in the database and shown in the API, so
`Outcome.APPLIED == "applied"` and old rows read back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bridge.events import ApprovalEvent


class Outcome(StrEnum):
    """How a processed inbox event ended."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"  # a repeat of the current status: a no-op
    STALE = "stale"  # older than the last applied event
    CONFLICT = "conflict"  # an illegal move
    IGNORED = "ignored"  # accepted, changes nothing by design (status None)
    UNRESOLVED = "unresolved"  # no card data / recipients could be resolved


class JobKind(StrEnum):
    """One outbox job is one DingTalk call (or a short chain: a check polls progress then result)."""

    SEND = "send"
    UPDATE = "update"
    RECALL = "recall"
    CHECK = "check"


class OrphanPolicy(StrEnum):
    """What the worker does with a status change for an orphaned card (`[worker] on_orphaned`)."""

    RESEND_DISTINCT = "resend_distinct"  # send a new card, distinct from the filtered one, with the new status
    MARK = "mark"  # only mark and count it; the operator decides


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # a dead letter: waits for an operator's retry and holds back its approval


class AlertKind(StrEnum):
    """The journal lines the console's overview counts for its last hour: a failed DingTalk attempt that will be
    retried, a job that died, a card found orphaned. `Store.journal_alerts` reads them by time through an index
    that holds these kinds alone (both schemas' `journal_alerts` name the same list: a unit test keeps them so)."""

    RETRY_SCHEDULED = "job.retry_scheduled"
    DEAD = "job.dead"
    ORPHANED = "notice.orphaned"


class NoticeState(StrEnum):
    """Where one DingTalk card (one send to at most 5 userids) stands. Not the approval's state."""

    UNSENT = "pending"  # created by a decision, its send job has not succeeded yet
    SENT = "sent"
    RECALLED = "recalled"  # the card was removed from the recipients' lists


class ApprovalState(StrEnum):
    """The state machine's states, stored on the approval row."""

    NEW = "new"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    RECALLED = "recalled"  # deleted at the source: its cards were recalled


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
    # set when DingTalk filtered this send as duplicate content (143106): the recipients hold an earlier,
    # identical card whose task_id was lost, so this task's status bar reaches nobody; cleared by a resend
    orphaned_at: datetime | None = None
    app: str | None = None  # the DingTalk app that sent it (bridge.dingtalk.apps); None: not sent, or before apps


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
class Pending:
    """What `Store.pending_batch` found: the events of `pending_events` and, read with them, the rows of their
    approvals (absent: a new approval) and each approval's notices, by (source, approval_id)."""

    events: tuple[InboxEvent, ...]
    approvals: Mapping[tuple[str, str], Approval] = field(default_factory=dict)
    notices: Mapping[tuple[str, str], tuple[Notice, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Applied:
    """What `Store.apply_decision_and_claim` did: the jobs it created, those of the approval's due jobs it claimed
    in the same transaction (leased as `claim_jobs` leases them) and their notices, by id, as they were then."""

    job_ids: tuple[int, ...]
    claimed: tuple[Job, ...] = ()
    notices: Mapping[int, Notice] = field(default_factory=dict)


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
    orphaned_at: datetime | None = None
    clear_orphaned: bool = False  # True: the notice is no longer orphaned (a distinct card was resent)
    app: str | None = None  # the DingTalk app the send went through


@dataclass(frozen=True, slots=True)
class JobCounts:
    pending: int
    running: int
    dead: int
    done: int
    oldest_pending_run_at: datetime | None  # for the "oldest pending job age" gauge
    orphaned: int = 0  # notices currently orphaned (see Notice.orphaned_at)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention batch (`Store.prune`) deleted."""

    journal: int = 0
    inbox: int = 0
    audit: int = 0
    jobs: int = 0

    @property
    def total(self) -> int:
        return self.journal + self.inbox + self.audit + self.jobs


@dataclass(frozen=True, slots=True)
class Resolution:
    """A recipient given by mobile number or unionid, looked up: its userid, or why DingTalk knows none.

    `key` is the recipient as the event gave it (`mobile:13800138000`); one row per key, shared by every
    process on the store; the worker looks DingTalk up again once `expires_at` has passed."""

    key: str
    userid: str | None  # None: DingTalk does not know it (see `error`)
    resolved_at: datetime
    expires_at: datetime
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SharedToken:
    """One DingTalk app's access token as the store keeps it for every process of the fleet.

    `key` is a hash of the app's base URL and app key (never the key in clear); `sealed` is the token
    encrypted with a key only holders of the app secret can derive (bridge.dingtalk.tokens), None until the
    first save. `version` grows by one with every save, so a process can tell "someone refreshed since I
    looked" from "the token I hold is the stored one". `lease_owner` / `lease_until`: the process that has
    claimed the right to call gettoken, until when (a crashed refresher's lease simply runs out)."""

    key: str
    version: int
    sealed: bytes | None = None
    expires_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None

"""The Store protocol: everything bridge keeps, behind one seam.

Implementations: `bridge.store.sqlite.SQLiteStore` (the embedded default), `bridge.store.postgres.PostgresStore`
(several processes on one database; needs the `postgres` extra) and `bridge.store.memory.MemoryStore` (for
unit tests). One contract test suite runs against all three, so none can drift from the others.
`open_store(cfg)` picks SQLite or PostgreSQL from `[storage]`. No SQL appears outside the stores and `sql/`.

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
- recipients: recipients given as `mobile:` / `unionid:`, resolved to userids (or found unknown), with an
  expiry, shared by every process so a number is looked up once per TTL, not once per card.

Concurrency (every implementation must keep it, the PostgreSQL one included): a decision is claimed in its
own write transaction. `apply_decision` marks the inbox event processed only if it is still unprocessed
(`UPDATE inbox SET processed = 1 ... WHERE id = ? AND processed = 0`); when that changes no row, another
decider got there first, and the transaction is rolled back and `AlreadyDecided` raised, so two deciders
racing on one event make one decision and one set of jobs. Correctness never rests on a process lock.

Retention: `prune` deletes, in batches, journal lines, processed inbox rows (with their audit rows) and
done jobs older than a cut-off. Approvals, notices, pending/running/dead jobs and unprocessed events are
never pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from bridge.config import StorageConfig
from bridge.events import ApprovalEvent
from bridge.records import (
    AddResult as AddResult,
)
from bridge.records import (
    AlertKind as AlertKind,
)
from bridge.records import (
    Applied as Applied,
)
from bridge.records import (
    Approval as Approval,
)
from bridge.records import (
    ApprovalState as ApprovalState,
)
from bridge.records import (
    AuditEntry as AuditEntry,
)
from bridge.records import (
    Decision as Decision,
)
from bridge.records import (
    InboxEvent as InboxEvent,
)
from bridge.records import (
    Job as Job,
)
from bridge.records import (
    JobCounts as JobCounts,
)
from bridge.records import (
    JobKind as JobKind,
)
from bridge.records import (
    JobState as JobState,
)
from bridge.records import (
    JournalEntry as JournalEntry,
)
from bridge.records import (
    NewJob as NewJob,
)
from bridge.records import (
    NewJournal as NewJournal,
)
from bridge.records import (
    NewNotice as NewNotice,
)
from bridge.records import (
    Notice as Notice,
)
from bridge.records import (
    NoticeChange as NoticeChange,
)
from bridge.records import (
    NoticeState as NoticeState,
)
from bridge.records import (
    Outcome as Outcome,
)
from bridge.records import (
    Pending as Pending,
)
from bridge.records import (
    Pruned as Pruned,
)
from bridge.records import (
    Resolution as Resolution,
)
from bridge.records import (
    SharedToken as SharedToken,
)


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

    async def pending_batch(self, limit: int = 100) -> Pending:
        """`pending_events`, and with them their approvals and notices as `get_approval` and `notices_for` would
        read them then (on PostgreSQL in the same round trip, after the leases are taken)."""

    async def get_approval(self, source: str, approval_id: str) -> Approval | None: ...

    async def notices_for(self, source: str, approval_id: str) -> list[Notice]:
        """All notices of an approval, by id."""

    async def apply_decision(self, decision: Decision, now: datetime) -> list[int]:
        """In one transaction: mark the inbox event processed with its outcome, upsert the approval,
        insert notices, jobs (due at `run_at` or now), the audit row and journal lines. Returns the ids
        of the jobs created.

        The mark is the claim: if the event is already processed, nothing at all is written and
        `bridge.errors.AlreadyDecided` is raised (LookupError when there is no such event)."""

    async def apply_decision_and_claim(self, decision: Decision, now: datetime, lease_s: float,
                                       limit: int) -> Applied:
        """`apply_decision`, and in the same transaction claim, as `claim_jobs` would, up to `limit` due jobs of
        the decision's approval (its new ones among them), with the notices of the approval. A worker with free
        slots runs a new card's send from this answer, without a claim_jobs and a notices_for of its own."""

    # --- delivering ----------------------------------------------------------------------------------
    async def claim_jobs(self, now: datetime, lease_s: float, limit: int,
                         kinds: Mapping[str, int] | None = None) -> list[Job]:
        """Claim up to `limit` due jobs: state pending (or running with an expired lease), run_at <= now,
        and, when the job has a lock_key, it is the lowest-id job of that key not yet done (a dead head
        blocks its key). Claimed jobs become running with lease_until = now + lease_s, attempts + 1.
        Oldest first (run_at, id). With `kinds` (the claim fair by kind): only jobs of the kinds it names,
        at most kinds[kind] of each, oldest first within each kind; a kind's skipped head still holds back
        the rest of its key, so the per-key order is unchanged."""

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

    async def extend_leases(self, job_ids: Sequence[int], now: datetime, lease_s: float) -> int:
        """The worker's heartbeat: running jobs among `job_ids` get lease_until = now + lease_s, so a slow
        DingTalk call's job is not handed to another process. Returns how many leases were extended."""

    async def add_jobs(self, jobs: Sequence[NewJob], now: datetime, journal: Sequence[NewJournal] = ()) -> list[int]:
        """Create jobs outside event processing (an operator's resync), with journal lines, in one
        transaction. `new_notice_index` is not allowed here. Returns the new job ids."""

    async def retry_dead(self, now: datetime, job_id: int | None = None) -> int:
        """Dead → pending, due now, attempts reset. One job, or all dead jobs when job_id is None.
        Returns how many jobs were revived."""

    # --- reading (admin API, CLI, metrics) -----------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None: ...

    async def list_jobs(self, state: str | None = None, limit: int = 100) -> list[Job]:
        """Newest (highest id) first: the jobs an operator looks for are the recent ones. With a state, read from
        the end of an index of that state's ids (the SQL stores), not by sorting all of its rows."""

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

    async def journal_tail(self, n: int, *, source: str | None = None) -> list[JournalEntry]:
        """The last `n` journal lines (of `source`, if given), oldest first. Reads n rows, not the journal."""

    async def journal_alerts(self, since: datetime, limit: int) -> list[JournalEntry]:
        """The newest `limit` journal lines of the `AlertKind` kinds written at or after `since`, oldest first (by
        `at`, then id): the console's last hour of DingTalk failures, read for the whole fleet through an index of
        those kinds alone, so the journal's other lines cost neither the read nor an index write."""
        ...

    async def append_journal(self, entries: Sequence[NewJournal], now: datetime) -> None: ...

    async def prune(self, before: datetime, limit: int) -> Pruned:
        """Delete up to `limit` rows of each kind older than `before`, in one short transaction: journal
        lines (`at`), processed inbox rows (`processed_at`) with their audit rows, and done jobs
        (`updated_at`). The worker calls it repeatedly in small batches until a batch deletes nothing."""

    async def job_counts(self, now: datetime) -> JobCounts:
        """Jobs by state, the oldest pending run_at and the number of orphaned notices."""

    async def approval_counts(self) -> dict[tuple[str, str], int]:
        """Every approval counted per (source, status): the console's overview. A read: it leases nothing."""
        ...

    async def waiting_events(self) -> dict[str, int]:
        """How many stored events wait to be decided, per source. Unlike `pending_events` it takes no decision
        lease, so a console or a receiver may ask without holding up the workers (PostgreSQL leases what
        pending_events returns)."""
        ...

    async def get_resolutions(self, keys: Sequence[str]) -> dict[str, Resolution]:
        """The stored resolutions of these recipients (expired ones included: the caller decides), by key."""

    async def save_resolutions(self, resolutions: Sequence[Resolution]) -> None:
        """Insert or replace these resolutions, in one transaction."""

    # --- the fleet's shared DingTalk token (bridge.dingtalk.tokens) -----------------------------------------
    async def get_token(self, key: str) -> SharedToken | None:
        """The shared token row of one app (`key`: a hash of base URL and app key), or None."""

    async def claim_token_refresh(self, key: str, owner: str, seen_version: int, now: datetime,
                                  lease_s: float) -> bool:
        """Atomically take the right to call gettoken for `key` until now + lease_s. Granted (True) only when
        the stored version is still `seen_version` or older (nobody refreshed since the caller looked) and no
        other owner holds an unexpired lease; creates the row (version 0) when there is none."""

    async def save_token(self, key: str, owner: str, sealed: bytes, expires_at: datetime) -> int:
        """Store a freshly fetched (sealed) token with its expiry, bump the version and drop `owner`'s lease.
        Returns the new version."""

    async def release_token_refresh(self, key: str, owner: str) -> None:
        """Give up `owner`'s lease (its gettoken failed), so another process may try at once."""

    async def check_writable(self) -> None:
        """Raise StorageUnavailable unless a write can be committed now (readiness probe)."""

    def on_work(self, callback: Callable[[], None]) -> None:
        """Call `callback` when another process commits work that is due now (PostgreSQL LISTEN/NOTIFY).
        Stores used by one process only never call it: that process wakes its own worker."""


def open_store(cfg: StorageConfig, *, exclusive: bool = False) -> Store:
    """The store `[storage]` selects: PostgreSQL when `url` is set, else the SQLite file at `path`. The
    backends are imported here, not at the top: they import this module for the records, and psycopg is
    an optional extra that a SQLite deployment need not install. `exclusive` (bridge serve): a SQLite file
    is held by this process alone (see `bridge.store.sqlite_files.ProcessLock`)."""
    if cfg.url:
        try:
            from bridge.store.postgres import PostgresStore
        except ImportError as exc:
            from bridge.errors import ConfigError

            raise ConfigError(
                f"[storage] url needs the PostgreSQL driver: pip install 'bridge[postgres]' ({exc})") from None
        return PostgresStore(cfg.url, password=cfg.password.reveal() if cfg.password else None,
                             pool_size=cfg.pool_size)
    from bridge.store.sqlite import SQLiteStore

    return SQLiteStore(cfg.path, synchronous=cfg.synchronous, exclusive=exclusive)

"""The MemoryStore's delivery side: claiming, finishing, retrying and burying jobs and the notice changes they
carry, as a base class of `MemoryStore` (split from memory.py by job, as the SQLite store splits its reads and
writes). Same semantics as the SQL stores' claim: due pending jobs and running ones whose lease has passed, and
for a keyed job only the lowest-id job of its key not yet done (a dead head blocks its key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge import records as store
from bridge.records import JobState
from bridge.store.memory_tokens import MemoryTokens
from bridge.store.memory_values import check_kind as _check_kind
from bridge.store.memory_values import no_new_notices as _no_new_notices
from bridge.store.memory_values import opt_utc as _opt_utc
from bridge.store.memory_values import plain as _plain
from bridge.store.memory_values import utc as _utc

__all__ = ["MemoryJobs"]


class MemoryJobs(MemoryTokens):
    """The job half of the Store protocol over the tables `MemoryStore` owns."""

    notices: dict[int, store.Notice]
    jobs: dict[int, store.Job]

    def _writable(self) -> None:
        raise NotImplementedError  # MemoryStore: fail_writes

    def _check_notice_ref(self, notice_id: int | None) -> None:
        raise NotImplementedError

    def _new_job(self, job: store.NewJob, source: str, approval_id: str, notice_id: int | None,
                 event_id: str | None, now: datetime) -> int:
        raise NotImplementedError

    def _append_journal(self, entries: Sequence[store.NewJournal], at: datetime) -> None:
        raise NotImplementedError

    async def claim_jobs(self, now: datetime, lease_s: float, limit: int,
                         kinds: Mapping[str, int] | None = None) -> list[store.Job]:
        return self._claim(now, lease_s, limit, kinds=kinds)

    def _claim(self, now: datetime, lease_s: float, limit: int, of: tuple[str, str] | None = None,
               kinds: Mapping[str, int] | None = None) -> list[store.Job]:
        """claim_jobs; with `of` (source, approval_id), only that approval's jobs; with `kinds`, at most
        kinds[kind] jobs of each kind it names and none of the others."""
        now = _utc(now)
        self._writable()
        heads: dict[str, int] = {}
        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if job.lock_key is not None and job.state != JobState.DONE:
                heads.setdefault(job.lock_key, job.id)
        due = [
            j for j in self.jobs.values()
            if j.run_at <= now
            and (of is None or (j.source, j.approval_id) == of)
            and (j.state == JobState.PENDING
                 or (j.state == JobState.RUNNING and j.lease_until is not None and j.lease_until <= now))
            and (j.lock_key is None or heads[j.lock_key] == j.id)
        ]
        due.sort(key=lambda j: (j.run_at, j.id))
        if kinds is not None:
            room = dict(kinds)
            due = [j for j in due if room.get(j.kind, 0) > 0 and _take(room, j.kind)]
        lease_until = now + timedelta(seconds=lease_s)
        claimed = []
        for job in due[: max(limit, 0)]:
            job = replace(job, state=JobState.RUNNING, attempts=job.attempts + 1, lease_until=lease_until,
                          updated_at=now)
            self.jobs[job.id] = job
            claimed.append(job)
        return claimed

    def _job(self, job_id: int) -> store.Job:
        if job_id not in self.jobs:
            raise LookupError(f"no job {job_id}")
        return self.jobs[job_id]

    def _changed_notice(self, change: store.NoticeChange) -> store.Notice:
        if change.notice_id not in self.notices:
            raise LookupError(f"no notice {change.notice_id}")
        n = self.notices[change.notice_id]
        fields: dict[str, Any] = {
            "state": change.state, "task_id": change.task_id, "status_value": change.status_value,
            "status_bg": change.status_bg, "sent_at": _opt_utc(change.sent_at),
            "updated_at": _opt_utc(change.updated_at), "recalled_at": _opt_utc(change.recalled_at),
            "delivery": None if change.delivery is None else _plain(change.delivery), "note": change.note,
            "orphaned_at": _opt_utc(change.orphaned_at), "app": change.app,
        }
        changed = replace(n, **{k: v for k, v in fields.items() if v is not None})
        return replace(changed, orphaned_at=None) if change.clear_orphaned else changed

    async def finish_job(
        self,
        job_id: int,
        now: datetime,
        *,
        outcome: str = "ok",
        notice: store.NoticeChange | None = None,
        new_jobs: Sequence[store.NewJob] = (),
        journal: Sequence[store.NewJournal] = (),
    ) -> list[int]:
        now = _utc(now)
        self._writable()
        _no_new_notices(new_jobs)
        for new in new_jobs:
            _check_kind(new)
            _utc(new.run_at or now)
            self._check_notice_ref(new.notice_id)
        job = self._job(job_id)
        changed = self._changed_notice(notice) if notice is not None else None
        self.jobs[job_id] = replace(job, state=JobState.DONE, outcome=outcome, lease_until=None, updated_at=now)
        if changed is not None:
            self.notices[changed.id] = changed
        ids = [self._new_job(new, job.source, job.approval_id, new.notice_id, job.event_id, now) for new in new_jobs]
        self._append_journal(journal, now)
        return ids

    async def save_notice(self, change: store.NoticeChange, journal: Sequence[store.NewJournal] = ()) -> None:
        self._writable()
        changed = self._changed_notice(change)
        self.notices[changed.id] = changed
        at = change.updated_at or change.sent_at or change.recalled_at or datetime.now(UTC)
        self._append_journal(journal, _utc(at))

    async def retry_job(
        self, job_id: int, now: datetime, run_at: datetime, error: str, journal: Sequence[store.NewJournal] = ()
    ) -> None:
        now, run_at = _utc(now), _utc(run_at)
        self._writable()
        job = self._job(job_id)
        self.jobs[job_id] = replace(job, state=JobState.PENDING, run_at=run_at, last_error=error, lease_until=None,
                                    updated_at=now)
        self._append_journal(journal, now)

    async def bury_job(self, job_id: int, now: datetime, error: str, journal: Sequence[store.NewJournal] = ()) -> None:
        now = _utc(now)
        self._writable()
        job = self._job(job_id)
        self.jobs[job_id] = replace(job, state=JobState.DEAD, last_error=error, lease_until=None, updated_at=now)
        self._append_journal(journal, now)

    async def release_job(self, job_id: int, now: datetime) -> None:
        now = _utc(now)
        self._writable()
        job = self.jobs.get(job_id)
        if job is not None and job.state == JobState.RUNNING:
            self.jobs[job_id] = replace(job, state=JobState.PENDING, run_at=now, attempts=max(job.attempts - 1, 0),
                                        lease_until=None, updated_at=now)

    async def extend_leases(self, job_ids: Sequence[int], now: datetime, lease_s: float) -> int:
        self._writable()
        until = _utc(now) + timedelta(seconds=lease_s)
        running = [j for j in map(self.jobs.get, job_ids) if j is not None and j.state == JobState.RUNNING]
        self.jobs.update({j.id: replace(j, lease_until=until) for j in running})
        return len(running)

    async def add_jobs(
        self, jobs: Sequence[store.NewJob], now: datetime, journal: Sequence[store.NewJournal] = ()
    ) -> list[int]:
        now = _utc(now)
        _no_new_notices(jobs)
        for job in jobs:
            _check_kind(job)
            if job.notice_id is None:
                raise ValueError("add_jobs needs a notice_id on every job (it names the approval)")
            _utc(job.run_at or now)
        self._writable()
        for job in jobs:
            if job.notice_id not in self.notices:
                raise LookupError(f"no notice {job.notice_id}")
        ids = []
        for job in jobs:
            owner = self.notices[job.notice_id]  # type: ignore[index]
            ids.append(self._new_job(job, owner.source, owner.approval_id, job.notice_id, None, now))
        self._append_journal(journal, now)
        return ids

    async def retry_dead(self, now: datetime, job_id: int | None = None) -> int:
        now = _utc(now)
        self._writable()
        revived = 0
        for job in list(self.jobs.values()):
            if job.state == JobState.DEAD and (job_id is None or job.id == job_id):
                self.jobs[job.id] = replace(job, state=JobState.PENDING, run_at=now, attempts=0, lease_until=None,
                                            updated_at=now)
                revived += 1
        return revived


def _take(room: dict[str, int], kind: str) -> bool:
    """One job of `kind` is taken from its room (the kinds of a fair claim)."""
    room[kind] -= 1
    return True

"""Value checks and retention selection for the in-memory store, apart from its tables (`bridge.store.memory`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge import store
from bridge.records import JobKind, JobState


def utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: bridge stores timezone-aware UTC times only")
    return at.astimezone(UTC)


def opt_utc(at: datetime | None) -> datetime | None:
    return None if at is None else utc(at)


def plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """What a JSON column gives back: tuples become lists, non-JSON values raise TypeError."""
    result: dict[str, Any] = json.loads(json.dumps(dict(value), ensure_ascii=False))
    return result


def check_kind(job: store.NewJob) -> None:
    if job.kind not in tuple(JobKind):
        raise ValueError(f"unknown job kind {job.kind!r} (expected one of {', '.join(tuple(JobKind))})")


def no_new_notices(jobs: Sequence[store.NewJob]) -> None:
    if any(job.new_notice_index is not None for job in jobs):
        raise ValueError("new_notice_index refers to a decision's new notices; use notice_id here")


def prune_plan(
    journal: Sequence[store.JournalEntry], inbox: Mapping[int, store.InboxEvent], jobs: Mapping[int, store.Job],
    before: datetime, limit: int,
) -> tuple[set[int], set[int], list[int]]:
    """The ids one retention batch deletes, as the SQLite store picks them: the `limit` lowest of each kind
    (journal lines older than `before`, processed events decided before it, done jobs finished before it)."""
    lines = sorted(e.id for e in journal if e.at < before)[:limit]
    events = sorted(i for i, e in inbox.items()
                    if e.processed and e.processed_at is not None and e.processed_at < before)[:limit]
    done = sorted(j.id for j in jobs.values() if j.state == JobState.DONE and j.updated_at < before)[:limit]
    return set(lines), set(events), done

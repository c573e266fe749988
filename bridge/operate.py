"""Operator actions shared by the admin API and the CLI, so both do exactly the same thing.

- A manual recall is stored as an operator's `deleted` event: it goes through the state machine and the
  audit trail like any other event, and the worker (in whichever process runs it) carries it out.
- A resync re-applies the approval's current status to every card it still has.
"""

from __future__ import annotations

from datetime import datetime

from bridge import events, store
from bridge.config import Config
from bridge.decide import lock_key
from bridge.records import ApprovalState, JobKind, NoticeState


class NotFound(LookupError):
    pass


async def request_recall(st: store.Store, source: str, approval_id: str, now: datetime) -> events.ApprovalEvent:
    approval = await st.get_approval(source, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id!r} from source {source!r} is known")
    occurred = max(now, approval.last_occurred_at or now)
    event = events.ApprovalEvent(
        source=source,
        event_id=f"operator-recall-{now.strftime('%Y%m%dT%H%M%S.%f')}",
        approval_id=approval_id,
        status=events.Status.DELETED,
        occurred_at=occurred,
        note="manual recall by an operator",
    )
    await st.add_event(event, b'{"operator":"recall"}', now)
    return event


# The approval states whose cards show a status bar colour of their own.
_STYLED = (ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.REJECTED, ApprovalState.REVOKED)


def resync_jobs(cfg: Config, approval: store.Approval, notices: list[store.Notice]) -> list[store.NewJob]:
    """The jobs that put every remaining card of an approval back in its current status."""
    key = lock_key(approval.source, approval.approval_id)
    source = cfg.source(approval.source)
    looks = source.card.statuses if source is not None and source.card is not None else cfg.statuses
    revoked = looks.revoked
    jobs: list[store.NewJob] = []
    for n in notices:
        if n.state == NoticeState.RECALLED or n.task_id is None:
            continue
        if approval.status == ApprovalState.RECALLED:
            jobs.append(store.NewJob(kind=JobKind.RECALL, lock_key=key, notice_id=n.id,
                                     payload={"fallback_status_value": revoked.label,
                                              "fallback_status_bg": revoked.color}))
        elif n.generation == approval.generation and approval.status in _STYLED:
            style = looks.style(approval.status)
            jobs.append(store.NewJob(kind=JobKind.UPDATE, lock_key=key, notice_id=n.id,
                                     payload={"status": approval.status, "status_value": style.label,
                                              "status_bg": style.color}))
    return jobs


async def request_resync(cfg: Config, st: store.Store, source: str, approval_id: str, now: datetime) -> list[int]:
    approval = await st.get_approval(source, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id!r} from source {source!r} is known")
    jobs = resync_jobs(cfg, approval, await st.notices_for(source, approval_id))
    return await st.add_jobs(
        jobs,
        now,
        journal=[store.NewJournal(kind="operator.resync", source=source, approval_id=approval_id,
                                  message=f"resync requested: {len(jobs)} job(s) to re-apply {approval.status}")],
    )


async def retry_dead(st: store.Store, now: datetime, job_id: int | None = None, *, by: str = "operator") -> int:
    """Revive one dead job (or all of them) and say so in the journal, so `bridge tail` shows it."""
    job = await st.get_job(job_id) if job_id is not None else None
    n = await st.retry_dead(now, job_id)
    if n:
        what = f"job {job_id} ({job.kind})" if job is not None else f"{n} dead job(s)"
        await st.append_journal(
            [store.NewJournal(kind="operator.retry", message=f"{what} put back in the queue by the {by}",
                              source=job.source if job else None, approval_id=job.approval_id if job else None,
                              event_id=job.event_id if job else None, job_id=job_id, data={"count": n})],
            now,
        )
    return n

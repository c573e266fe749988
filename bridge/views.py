"""JSON views of stored records, shared by the admin API and the CLI (`bridge status`, `bridge jobs`).

One place decides what an operator sees for an approval, a notice, a job or an event, so the HTTP API
and the CLI cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge import store
from bridge.records import ApprovalState, JobState


def ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def notice(n: store.Notice) -> dict[str, Any]:
    return {
        "id": n.id,
        "task_id": n.task_id,
        "generation": n.generation,
        "group": n.group_index,
        "userids": list(n.userids),
        "state": n.state,
        "status_bar": {"value": n.status_value, "color": n.status_bg},
        "sent_at": ts(n.sent_at),
        "updated_at": ts(n.updated_at),
        "recalled_at": ts(n.recalled_at),
        "delivery": dict(n.delivery) if n.delivery is not None else None,
        "note": n.note,
        "orphaned_at": ts(n.orphaned_at),
        "app": n.app,  # the DingTalk app that sent it (None: not sent yet, or sent before apps were stored)
    }


def job(j: store.Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "kind": j.kind,
        "state": j.state,
        "source": j.source,
        "approval_id": j.approval_id,
        "notice_id": j.notice_id,
        "attempts": j.attempts,
        "run_at": ts(j.run_at),
        "lease_until": ts(j.lease_until),
        "last_error": j.last_error,
        "outcome": j.outcome,
        "event_id": j.event_id,
        "created_at": ts(j.created_at),
        "updated_at": ts(j.updated_at),
    }


def event(ie: store.InboxEvent) -> dict[str, Any]:
    ev = ie.event
    return {
        "inbox_id": ie.id,
        "event_id": ev.event_id,
        "source": ev.source,
        "approval_id": ev.approval_id,
        "status": ev.status.value if ev.status else None,
        "raw_status": ev.raw_status,
        "occurred_at": ts(ev.occurred_at),
        "received_at": ts(ie.received_at),
        "processed": ie.processed,
        "outcome": ie.outcome,
        "reason": ie.reason,
        "duplicates": ie.duplicates,
        "processed_at": ts(ie.processed_at),
    }


def transition(t: store.AuditEntry) -> dict[str, Any]:
    """One audit row: the state path an operator reads when a card shows the wrong colour."""
    return {
        "inbox_id": t.inbox_id,
        "event_id": t.event_id,
        "from": t.from_status,
        "to": t.to_status,
        "outcome": t.outcome,
        "reason": t.reason,
        "at": ts(t.at),
    }


def approval_summary(a: store.Approval) -> dict[str, Any]:
    return {
        "source": a.source,
        "approval_id": a.approval_id,
        "status": a.status,
        "title": a.card.get("title"),
        "generation": a.generation,
        "last_occurred_at": ts(a.last_occurred_at),
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
    }


async def approval_detail(st: store.Store, source: str, approval_id: str) -> dict[str, Any] | None:
    """Everything an operator needs to answer "why is this card not green?"."""
    a = await st.get_approval(source, approval_id)
    history = await st.events_for(source, approval_id)
    if a is None and not history:
        return None
    notices = await st.notices_for(source, approval_id)
    jobs = await st.jobs_for(source, approval_id)
    audit = await st.audit_for(source, approval_id)
    return {
        "source": source,
        "approval_id": approval_id,
        "status": a.status if a else ApprovalState.NEW,
        "approval": approval_summary(a) if a else None,
        "card": dict(a.card) if a else None,
        "notices": [notice(n) for n in notices],
        "jobs": {
            "pending": [job(j) for j in jobs if j.state in (JobState.PENDING, JobState.RUNNING)],
            "dead": [job(j) for j in jobs if j.state == JobState.DEAD],
            "done": [job(j) for j in jobs if j.state == JobState.DONE],
        },
        "history": [event(e) for e in history],
        "transitions": [transition(t) for t in audit],
    }

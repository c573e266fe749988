"""`apply_decision_and_claim` on PostgreSQL as one statement: `bridge_decide(p jsonb)` (PostgreSQL migration 8)
writes the decision, claims its approval's due jobs and reads the approval's notices inside the server.

The pipelined transaction this replaces sent ~12 statements (BEGIN, SET LOCAL, the claim, the approval, the
notices, the jobs, the NOTIFY, the audit row, the journal, the claim of the jobs, the notices, COMMIT) in one
round trip, but psycopg's client-side work per statement (~60 µs each) made the write ~1 ms of bridge CPU on the
idle 202 → DingTalk path (docs/performance.md). Now the decision goes out as one JSON parameter (orjson) and comes
back as one JSON value. The function runs the same statements in the same order (each its own snapshot under
READ COMMITTED; the deciding lease locked before the inbox row) and raises SQLSTATE `REFUSED` when the claim
claims nothing, so nothing is written; why is asked afterwards (`refused`), on that rare path only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from bridge.records import Applied, Decision, Notice, Pending
from bridge.store import sqlite_sql as sq
from bridge.store.postgres_sql import Conn, Mode, Work, fetch

__all__ = ["REFUSED", "decided_body", "one_trip", "pending_body"]

REFUSED = "BR001"  # bridge_decide's SQLSTATE: the event was not claimed (processed, or another owner's lease)


def one_trip(decision: Decision) -> bool:
    """Whether `decided_body` can write this decision: its jobs' approval is known before the claim answers."""
    return decision.approval is not None or not decision.jobs


def decision_json(decision: Decision, now: datetime, owner: str, lease_s: float, limit: int) -> dict[str, Any]:
    """bridge_decide's parameter (see its migration): the statements' parameters, times in microseconds and
    JSON columns as text, as the pipelined statements took them."""
    notices = [
        dict(generation=n.generation, group_index=n.group_index, userids=sq.dumps(list(n.userids)),
             msg=sq.dumps(dict(n.msg)), status_value=n.status_value, status_bg=n.status_bg)
        for n in decision.new_notices
    ]
    jobs = []
    for job in decision.jobs:
        index = job.new_notice_index
        if index is not None and not 0 <= index < len(notices):
            raise ValueError(f"new_notice_index {index} is outside the decision's new notices")
        jobs.append({**sq.job_params(job, now), "new_notice_index": index})
    approval = decision.approval
    return {
        "id": decision.inbox_id, "owner": owner, "outcome": decision.outcome, "reason": decision.reason,
        "now": sq.to_us(now), "from_status": decision.from_status, "to_status": decision.to_status,
        "approval": None if approval is None else sq.approval_params(approval),
        "notices": notices, "jobs": jobs, "journal": sq.journal_params(decision.journal, now),
        "of": None if approval is None else {"source": approval.source, "approval_id": approval.approval_id},
        "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit,
    }


def decided_body(decision: Decision, now: datetime, owner: str, lease_s: float, limit: int) -> Work:
    """The decision, the claim of up to `limit` of its approval's due jobs and the approval's notices, in one
    statement; raises a psycopg.DatabaseError with sqlstate REFUSED when the event was not claimed."""
    param = orjson.dumps(decision_json(decision, now, owner, lease_s, limit)).decode()

    async def run(conn: Conn) -> Applied:
        [row] = await fetch(conn, "decide", {"p": param})
        done = orjson.loads(row["applied"])
        claimed = [sq.job_row(r) for r in done["claimed"]]
        return Applied(job_ids=tuple(done["job_ids"]), claimed=tuple(sorted(claimed, key=lambda j: (j.run_at, j.id))),
                       notices={n.id: n for n in map(sq.notice_row, done["notices"])})

    # autocommit: the statement is its own transaction, not durable (bridge_decide turns synchronous_commit off for
    # it, as decision_body's SET LOCAL does): a decision lost in a database crash is made again from its inbox row
    return Work(run, Mode.ALONE)


def pending_body(owner: str, now: datetime, lease_s: float, limit: int) -> Work:
    """pending_batch as one statement, `bridge_pending(p jsonb)` (migration 9): take_pending (give back this
    owner's previous approvals, lease the next free ones, return their events), then the leased approvals' rows
    and notices, each a statement of its own inside the server. Not durable: leases are lost in a database crash
    anyway (deciders take them again)."""
    param = orjson.dumps({"owner": owner, "now": sq.to_us(now), "limit": limit,
                          "lease_until": sq.to_us(now + timedelta(seconds=lease_s))}).decode()

    async def run(conn: Conn) -> Pending:
        [row] = await fetch(conn, "pending", {"p": param})
        got = orjson.loads(row["batch"])
        rows = {(a.source, a.approval_id): a for a in map(sq.approval_row, got["approvals"])}
        by: dict[tuple[str, str], list[Notice]] = {key: [] for key in rows}
        for n in map(sq.notice_row, got["notices"]):
            by.get((n.source, n.approval_id), []).append(n)
        return Pending(events=tuple(map(sq.inbox_row, got["events"])), approvals=rows,
                       notices={key: tuple(found) for key, found in by.items()})

    return Work(run, Mode.ALONE)

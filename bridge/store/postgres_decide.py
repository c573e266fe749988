"""`apply_decision_and_claim` on PostgreSQL in one round trip: every statement of the decision, the claim of its
jobs and the read of its notices queued behind the claim in one pipelined transaction, with one sync.

`postgres_sql.decision_body` waits for the claim's answer (round trip 1) before the job inserts, which need the
new notices' ids and the event's approval. Here nothing waits: the claim fails loudly when it claims nothing
(claim_decision_or_fail, a division by zero that aborts the transaction, so nothing queued behind it is
written), and the job and audit rows take the approval and event from the inbox row and a new notice's id from
its generation and group (insert_decided_job). The idle 202 → DingTalk path loses a round trip and a turn of
the event loop (docs/performance.md). Why a claim failed is asked afterwards (`refusal`), on that rare path only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.records import Applied, Decision
from bridge.store import sqlite_sql as sq
from bridge.store.postgres_sql import After, Conn, Mode, Work, execute_many, notify, send

__all__ = ["decided_body", "one_trip"]


def one_trip(decision: Decision) -> bool:
    """Whether `decided_body` can write this decision: its jobs' approval is known before the claim answers."""
    return decision.approval is not None or not decision.jobs


def decided_body(decision: Decision, now: datetime, owner: str, lease_s: float, limit: int) -> Work:
    """The decision, the claim of up to `limit` of its approval's due jobs and the approval's notices, in one
    round trip; raises psycopg.errors.DivisionByZero when the event was not claimed (see the module)."""
    at = sq.to_us(now)
    upsert = None if decision.approval is None else sq.approval_params(decision.approval)
    of = None if decision.approval is None else {"source": decision.approval.source,
                                                 "approval_id": decision.approval.approval_id}
    notices = [
        dict(inbox_id=decision.inbox_id, generation=n.generation, group_index=n.group_index,
             userids=sq.dumps(list(n.userids)), msg=sq.dumps(dict(n.msg)), status_value=n.status_value,
             status_bg=n.status_bg)
        for n in decision.new_notices
    ]
    jobs = []
    for job in decision.jobs:
        index = job.new_notice_index
        if index is not None and not 0 <= index < len(notices):
            raise ValueError(f"new_notice_index {index} is outside the decision's new notices")
        made = None if index is None else decision.new_notices[index]
        jobs.append({**sq.job_params(job, now), "inbox_id": decision.inbox_id,
                     "generation": None if made is None else made.generation,
                     "group_index": None if made is None else made.group_index})
    lines = sq.journal_params(decision.journal, now)
    mark = {"id": decision.inbox_id, "outcome": decision.outcome, "reason": decision.reason, "now": at,
            "owner": owner}
    leased = {"now": at, "lease_until": sq.to_us(now + timedelta(seconds=lease_s)), "limit": limit}

    async def run(conn: Conn) -> After:
        guard = await send(conn, "claim_decision_or_fail", mark)
        if upsert is not None:
            await send(conn, "upsert_approval", upsert)
        for n in notices:
            await send(conn, "insert_notice", n)
        job_cursors = [await send(conn, "insert_decided_job", p) for p in jobs]  # in order: ids keep the order
        if job_cursors:
            await notify(conn, "job")
        await send(conn, "insert_decided_audit", dict(
            inbox_id=decision.inbox_id, from_status=decision.from_status, to_status=decision.to_status,
            outcome=decision.outcome, reason=decision.reason, at=at))
        await execute_many(conn, "insert_journal", lines)
        taking = await send(conn, "claim_jobs_of", {**leased, **of}) if of is not None and limit > 0 else None
        reading = await send(conn, "notices_for", of) if of is not None else None

        async def applied() -> Applied:
            await guard.fetchall()
            ids = tuple([int(row["id"]) for cur in job_cursors for row in await cur.fetchall()])
            claimed = [] if taking is None else [sq.job_row(r) for r in await taking.fetchall()]
            found = [] if reading is None else [sq.notice_row(r) for r in await reading.fetchall()]
            return Applied(job_ids=ids, claimed=tuple(sorted(claimed, key=lambda j: (j.run_at, j.id))),
                           notices={n.id: n for n in found})

        return applied

    # not durable, as decision_body: a decision lost in a database crash is made again from its inbox row
    return Work(run, Mode.PIPELINED, durable=False)

"""Round trips to PostgreSQL of each store call on the idle path, counted from libpq's protocol trace.

Why: the idle 202 → DingTalk latency on PostgreSQL is mostly round trips (each one a wait for the network and a
backend's turn on a core), and wall-clock figures on a shared, loaded machine swing by several times; a round
trip count does not. The store runs with one pooled connection whose protocol messages are traced; a round trip
is each turn from the server's messages back to the client's. It creates and drops its own database.

    python bench/pg_roundtrips.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from bridge.clock import SystemClock
from bridge.config import sandbox
from bridge.decide import decide
from bridge.events import ApprovalEvent, Status
from bridge.service import policy_for
from bridge.store.postgres import PostgresStore

# between the 202 and the send, for a worker with a free slot (the batch brings the approval's row and notices, the
# decision claims its send); the fleet limiter's take_rate_slots (one round trip) runs alongside
# apply_decision_and_claim, started by the worker's prefetch
IDLE_PATH = ("pending_batch", "apply_decision_and_claim")


def turns(trace: Path) -> int:
    """How many times the client spoke after the server had (each is one round trip)."""
    n, last = 0, "B"
    for line in trace.read_text().splitlines():
        direction = line.split("\t", 1)[0]
        if direction == "F" and last == "B":
            n += 1
        if direction in ("F", "B"):
            last = direction
    return n


async def measure(url: str, work: Path) -> list[tuple[str, int]]:
    st = PostgresStore(url, pool_size=1)
    await st.open()
    trace = work / "trace"
    out = trace.open("w")
    try:
        async with st._ready().connection() as conn:  # the pool's one connection, traced from now on
            conn.pgconn.trace(out.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        policy = policy_for(sandbox("http://127.0.0.1:1", str(work / "unused.db")))
        steps: list[tuple[str, int]] = []
        for i in range(8):  # the last pass counts: statements are prepared after a few runs
            steps.clear()

            async def step(label: str, call: Awaitable[Any]) -> Any:
                out.flush()
                before = turns(trace)
                result = await call
                out.flush()
                steps.append((label, turns(trace) - before))
                return result

            ev = ApprovalEvent(source="bench", event_id=f"e{i}", approval_id=f"A{i}", status=Status.PENDING,
                               occurred_at=datetime.now(UTC), recipients=("u1", "u2", "u3"), title="t",
                               url="https://example.com/x")
            await step("add_event", st.add_event(ev, b"{}", datetime.now(UTC)))
            batch = await step("pending_batch", st.pending_batch(200))
            approval = batch.approvals.get((ev.source, ev.approval_id))
            await step("get_approval", st.get_approval(ev.source, ev.approval_id))  # a later event's read
            now = SystemClock().now()
            applied = await step("apply_decision_and_claim", st.apply_decision_and_claim(
                decide(batch.events[0], approval, [], policy, now), now, 30, 32))
            for job in applied.claimed:
                await step("finish_job", st.finish_job(job.id, now))
            await step("take_rate_slots", st.take_rate_slots("bench:send", 0.052, 1))
            # a worker without a free slot: the decision alone, then a claim of its own
            ev = replace(ev, event_id=f"f{i}", approval_id=f"B{i}")
            await st.add_event(ev, b"{}", datetime.now(UTC))
            pending = await st.pending_events(200)
            await step("apply_decision", st.apply_decision(decide(pending[0], None, [], policy, now), now))
            for job in await step("claim_jobs", st.claim_jobs(now, 30, 32)):
                await st.finish_job(job.id, now)
        return steps
    finally:
        out.close()
        await st.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    name = f"bridge_rtt_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(a.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rtt-") as tmp:
            steps = asyncio.run(measure(a.url.rsplit("/", 1)[0] + "/" + name, Path(tmp)))
    finally:
        with psycopg.connect(a.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    for label, n in steps:
        print(f"  {label:<26} {n} round trip{'s' if n != 1 else ''}")
    print(f"stored event → DingTalk call ({' + '.join(IDLE_PATH)}): "
          f"{sum(n for label, n in steps if label in IDLE_PATH)} round trips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

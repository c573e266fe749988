"""Fair claim: how long due status-bar updates wait behind a backlog of sends, fair by kind vs oldest first.

Why: sends and updates run one at a time per process, each against its own DingTalk endpoint and rate budget. A
claim that takes due jobs oldest first whatever their kind fills every worker slot with sends waiting for the
send gate, and the updates of other approvals wait until the sends have drained.
In process, on a fresh SQLite file: U approvals whose cards are sent, then N new approvals (N due sends) and the U
approvals' approvals (U due updates, newer than every send) decided before the worker starts; the worker then
runs against a fake DingTalk whose send takes --send-ms (what the limiter of one endpoint spaces calls by at
qps 20) and whose update takes --update-ms. Printed: seconds from start until the last update is done, for the
worker as it is (fair by kind) and for the same worker claiming oldest first (the baseline), and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

from bridge import logs
from bridge.clock import FakeClock
from bridge.config import Config, DingTalkConfig, SourceConfig, WorkerConfig
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import ApprovalEvent, Status
from bridge.records import JobKind
from bridge.store.sqlite import SQLiteStore
from bridge.worker import Worker

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


class Paced(FakeDingTalk):
    """A DingTalk whose sends and updates take their endpoint's spacing; `updated` counts finished updates."""

    def __init__(self, send_s: float, update_s: float) -> None:
        super().__init__()
        self.send_s, self.update_s, self.updated, self.target = send_s, update_s, 0, 0
        self.all_updated = asyncio.Event()

    async def send(self, msg: Mapping[str, Any], *, userids: Sequence[str] = (), dept_ids: Sequence[int] = (),
                   to_all_user: bool = False) -> int:
        await asyncio.sleep(self.send_s)
        return await super().send(msg, userids=userids, dept_ids=dept_ids, to_all_user=to_all_user)

    async def update_status_bar(self, task_id: int, status_value: str, status_bg: str | None = None) -> None:
        await asyncio.sleep(self.update_s)
        await super().update_status_bar(task_id, status_value, status_bg)
        self.updated += 1
        if self.updated == self.target:
            self.all_updated.set()


class OldestFirst(Worker):
    """The claim before fairness: every free slot offered to every kind (oldest first whatever the kind)."""

    def _kind_room(self, free: int) -> dict[str, int]:
        return {k.value: free for k in JobKind}


def _event(approval_id: str, status: Status, minute: int) -> ApprovalEvent:
    return ApprovalEvent(source="erp", event_id=f"{approval_id}-{status}", approval_id=approval_id, status=status,
                         occurred_at=T0.replace(minute=minute), title=f"采购申请 {approval_id}", recipients=("u1",),
                         url="https://erp.example.com/po/1")


async def measure(worker_class: type[Worker], sends: int, updates: int, send_s: float, update_s: float,
                  concurrency: int) -> float:
    cfg = Config(dingtalk=DingTalkConfig(app_key="k", agent_id=1),
                 worker=WorkerConfig(concurrency=concurrency, check_delay_s=3600.0),
                 sources=(SourceConfig(name="erp", signature="none"),))
    clock = FakeClock(T0)  # checks stay due an hour later: only sends and updates run
    with tempfile.TemporaryDirectory() as tmp:
        st = SQLiteStore(Path(tmp) / "bridge.db")
        await st.open()
        try:
            fake = Paced(0.0, 0.0)
            w = worker_class(st, fake, cfg, clock)
            for i in range(updates):
                await st.add_event(_event(f"U-{i}", Status.PENDING, 0), b"{}", clock.now())
            await w.run(burst=True)
            for i in range(sends):
                await st.add_event(_event(f"S-{i}", Status.PENDING, 1), b"{}", clock.now())
            for i in range(updates):
                await st.add_event(_event(f"U-{i}", Status.APPROVED, 2), b"{}", clock.now())
            await w.decider.process_pending(sends + updates)
            fake.send_s, fake.update_s, fake.target = send_s, update_s, updates
            start = time.perf_counter()
            running = asyncio.create_task(w.run())
            await fake.all_updated.wait()
            took = time.perf_counter() - start
            w.stop()
            await running
            return took
        finally:
            await st.close()


TARGET = 10.0  # the last update done at least 10x sooner than oldest first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a small backlog; functional checks only")
    ap.add_argument("--sends", type=int, default=None, help="due sends (default 200, quick 40)")
    ap.add_argument("--updates", type=int, default=5)
    ap.add_argument("--send-ms", type=float, default=51.0)
    ap.add_argument("--update-ms", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    logs.configure(level="error")
    sends = a.sends or (40 if a.quick else 200)
    args = (sends, a.updates, a.send_ms / 1000, a.update_ms / 1000, a.concurrency)
    load = common.load_avg()
    baseline = asyncio.run(measure(OldestFirst, *args))
    fair = asyncio.run(measure(Worker, *args))
    ratio = baseline / fair if fair else 0.0
    print(f"fair_claim: {sends} due sends ({a.send_ms:g} ms each), {a.updates} due updates, concurrency "
          f"{a.concurrency}: last update done after {fair:.3f} s fair by kind, {baseline:.3f} s oldest first "
          f"(baseline): {ratio:.0f}x sooner; load {load} -> {common.load_avg()}")
    common.write_result("fair_claim", {"quick": a.quick, "sends": sends, "updates": a.updates, "fair_s": round(fair, 4),
                                       "oldest_first_s": round(baseline, 4), "ratio": round(ratio, 1),
                                       "load": common.load_avg()})
    return common.report({f"ratio >= {TARGET:g}": ratio >= TARGET}, a.quick, {"updates done": True})


if __name__ == "__main__":
    raise SystemExit(main())

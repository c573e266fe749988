"""How much group commit buys: durable add_event throughput with 1 producer versus 64 concurrent producers.

One producer waits for each commit before sending the next event, so it runs at the disk's commit rate;
64 producers share commits through the store's writer task. Run: .venv/bin/python bench/store_bench.py
[--events N] [--synchronous normal|full]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bridge.events import ApprovalEvent, Status
from bridge.store.sqlite import SQLiteStore

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def make_event(i: int) -> ApprovalEvent:
    return ApprovalEvent(source="erp", event_id=f"e{i}", approval_id=f"PO-{i // 3}", status=Status.PENDING,
                         occurred_at=T0, title="采购申请", recipients=("u1", "u2"), url="https://erp.example.com/po")


async def run(producers: int, events: int, synchronous: str, folder: Path) -> tuple[float, int]:
    """Returns (events per second, commits)."""
    store = SQLiteStore(folder / f"bench-{producers}.db", synchronous=synchronous)
    await store.open()
    queue = iter(range(events))

    async def producer() -> None:
        for i in queue:  # producers share one iterator: each event is added exactly once
            event = make_event(i)
            await store.add_event(event, event.to_json().encode(), T0)

    try:
        before = store.commits
        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(producers)))
        elapsed = time.perf_counter() - started
        return events / elapsed, store.commits - before
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"add_event, {args.events} events, WAL + synchronous={args.synchronous.upper()}")
        for producers in (1, 64):
            rate, commits = await run(producers, args.events, args.synchronous, Path(tmp))
            print(f"  {producers:>2} producer(s): {rate:>9,.0f} events/s  {commits:>5} commits "
                  f"({args.events / max(commits, 1):.1f} events per commit)")


if __name__ == "__main__":
    asyncio.run(main())

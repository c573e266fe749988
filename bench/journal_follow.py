"""The cost of one live-journal poll (`bridge tail --follow`, the console's journal) while the journal is busy.

Why: the follower (bridge.journal_follow) must not miss PostgreSQL lines that commit out of id order, so it
keeps the ids of the last `lag_s` (10 s) and may read them again. Reading them again on every poll costs
the whole window: at 1,000 lines/s that is 10,000 lines decoded every 2 s, per open console tab, on the
process that also runs the worker. The follower now reads on from the first id it has not printed, which is
only the new lines unless one is missing below them.

What: a SQLite journal with `--window` lines already printed and still inside the lag, then polls that each
find `--new` new lines. Baseline, measured in the same run: reading the window again from the follower's mark
(what every poll did before), then the new lines. Printed as a ratio (follower / baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import common

from bridge.clock import FakeClock
from bridge.journal_follow import PAGE, JournalFollower
from bridge.records import NewJournal
from bridge.store.sqlite import SQLiteStore


async def _reread(st: SQLiteStore, after: int) -> int:
    """The baseline: every line after `after`, page by page, as a poll from the mark reads them."""
    rows, cursor = 0, after
    while True:
        page = await st.journal(cursor, limit=PAGE)
        rows += len(page)
        if len(page) < PAGE:
            return rows
        cursor = page[-1].id


async def run(window: int, new: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        st = SQLiteStore(Path(tmp) / "bridge.db")
        await st.open()
        try:
            clock = FakeClock()
            line = NewJournal(kind="dingtalk.sent", source=common.SOURCE, approval_id="A0000001",
                              message="sent to 3 users, task 10000001", data={"task_id": 10000001})
            for _ in range(window // 1000):
                await st.append_journal([line] * 1000, clock.now())
            follower = JournalFollower(st, clock)
            assert len(await follower.poll()) == window // 1000 * 1000
            polls, rereads = [], []
            for _ in range(repeat):
                await st.append_journal([line] * new, clock.now())
                t0 = time.perf_counter()
                rows = await _reread(st, follower.low)
                rereads.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                fresh = await follower.poll()
                polls.append((time.perf_counter() - t0) * 1000)
                if len(fresh) != new or rows < window:
                    raise RuntimeError(f"poll found {len(fresh)} of {new} new lines; re-read {rows}")
            return {"poll_ms": statistics.median(polls), "baseline_ms": statistics.median(rereads)}
        finally:
            await st.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a small window; functional checks only")
    ap.add_argument("--window", type=int, default=None, help="lines inside the lag, default 10000")
    ap.add_argument("--new", type=int, default=20, help="new lines per poll")
    ap.add_argument("--repeat", type=int, default=9)
    a = ap.parse_args()
    window = a.window or (2_000 if a.quick else 10_000)
    print(f"journal follow: {window:,} lines inside the lag, {a.new} new per poll; load {common.load_avg()}")
    got = asyncio.run(run(window, a.new, a.repeat))
    ratio = got["poll_ms"] / got["baseline_ms"]
    print(f"  poll (reads on from the first id not printed): {got['poll_ms']:.2f} ms")
    print(f"  baseline (the window read again from the mark): {got['baseline_ms']:.2f} ms")
    print(f"  ratio poll / baseline: {ratio:.3f}; load {common.load_avg()}")
    common.write_result("journal_follow", {"quick": a.quick, "window": window, "new": a.new, **got,
                                           "ratio": round(ratio, 4), "load": common.load_avg()})
    return common.report({"a poll costs < 0.1 of re-reading the window": ratio < 0.1}, a.quick)


if __name__ == "__main__":
    raise SystemExit(main())

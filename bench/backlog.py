"""Backlog: the drain rate after a large backlog against the rate after a small one, in the same run.

Why: a backlog (DingTalk down for an hour, a bulk import) must drain as fast when it is big as when it is
small; anything that grows with the backlog (a query that scans, a check queued behind every older send, a
cache that misses, the simulator's own bookkeeping) shows up as a falling rate.
For each size N: N pending approvals (3 recipients each) are stored straight into a fresh SQLite file through
the store's own `add_event` (the webhook's durable write, group-committed, so building 200,000 takes seconds
rather than minutes over HTTP); `bridge serve` then starts with the simulator frozen (SIGSTOP), so the
decider turns every event into a send job while nothing can be delivered; the simulator is thawed and the
DingTalk jobs done (sends and their delivery checks) are counted over a fixed window after a warm-up.
No rate limit anywhere (bridge qps 100,000, simulator unthrottled).
Target (full mode): rate at the large size >= 0.8 x the rate at the small size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

from bridge.events import parse_canonical
from bridge.store.sqlite import SQLiteStore

TARGET = 0.8


async def _fill(db: Path, n: int, run: str) -> None:
    """N pending events through the store's add_event, 256 at a time (group commit)."""
    st = SQLiteStore(db)
    await st.open()
    try:
        now = datetime.now(UTC)
        for k in range(0, n, 256):
            batch = []
            for i in range(k, min(n, k + 256)):
                ev = common.event(f"B{run}-{i}", "pending", 0, occurred=now)
                raw = json.dumps(ev, ensure_ascii=False).encode()
                batch.append(st.add_event(parse_canonical(common.SOURCE, ev), raw, now))
            await asyncio.gather(*batch)
    finally:
        await st.close()


def _scalar(db: Path, sql: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def _done(db: Path) -> int:
    return _scalar(db, "SELECT count(*) FROM jobs WHERE state = 'done'")


def _sends_done(db: Path) -> int:
    return _scalar(db, "SELECT count(*) FROM jobs WHERE state = 'done' AND kind = 'send'")


def _undecided(db: Path) -> int:
    return _scalar(db, "SELECT count(*) FROM inbox WHERE processed = 0")


def _window(db: Path, window_s: float, *, until_decided: bool) -> bool:
    """Sleep through the counting window. With `until_decided` it ends early once every stored event is decided,
    so that the figure is delivery *while* the decider works at both sizes (a small backlog is decided within
    seconds, and the rest of a fixed window would measure plain delivery). True when it ended early."""
    if not until_decided:
        time.sleep(window_s)
        return False
    end = time.monotonic() + window_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.25, left))
        if _undecided(db) == 0:
            return True
    return False


def measure(n: int, warmup_s: float, window_s: float, profile: str | None, *, finish: bool,
            deciding: bool = False) -> dict[str, Any]:
    """One size; with `finish`, also wait until every send is done (the quick mode's functional check). With
    `deciding` the simulator is never frozen: the window falls while the decider is still working through the
    stored events, as after an outage when webhooks arrived faster than they could be decided; the window ends
    early when the last event is decided (`_window`)."""
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        work = Path(tmp)
        setup = common.BridgeSetup(work, "", qps=100_000, concurrency=16, timeout_s=600, lease_s=1900)
        t0 = time.monotonic()
        asyncio.run(_fill(setup.db_path, n, run))
        fill_s = time.monotonic() - t0
        sim = common.start_simulator(work, qps=0)
        setup.sim_url = sim.url
        bridge = None
        try:
            if not deciding:
                os.kill(sim.pid, signal.SIGSTOP)
            bridge = common.start_bridge(setup)
            t1 = time.monotonic()
            if not deciding:
                common.wait_until(lambda: _undecided(setup.db_path) == 0, n / 50 + 60, 0.5, "every event decided")
            decide_s = time.monotonic() - t1
            os.kill(sim.pid, signal.SIGCONT)
            time.sleep(warmup_s)
            u0 = _undecided(setup.db_path)
            spy = None
            if profile:
                spy = common.py_spy(bridge.pid, Path(f"{profile}-{n}.svg"), window_s)
            d0, w0 = _done(setup.db_path), time.monotonic()
            cut = _window(setup.db_path, window_s, until_decided=deciding and u0 > 0)
            d1, w1 = _done(setup.db_path), time.monotonic()
            u1 = _undecided(setup.db_path)
            if spy is not None:
                spy.wait(60)
            if finish:
                common.wait_until(lambda: _sends_done(setup.db_path) >= n, 600, 0.2, "every send done")
            sent = _sends_done(setup.db_path)
            calls = common.http_json(sim.url + "/_sim/stats")["per_call"]
        finally:
            os.kill(sim.pid, signal.SIGCONT)
            if bridge is not None:
                bridge.stop()
            sim.stop()
    rate = (d1 - d0) / (w1 - w0)
    print(f"  backlog {n:,}: filled in {fill_s:.1f} s, decided in {decide_s:.1f} s; "
          f"{d1 - d0:,} jobs done in {w1 - w0:.1f} s → {rate:,.1f} jobs/s; undecided events {u0:,} → {u1:,} "
          f"(simulator calls {calls}){'; the window ended when the last event was decided' if cut else ''}")
    if deciding and u0 == 0:
        print(f"  backlog {n:,}: every event was decided before the window opened: this is plain delivery; "
              "use a larger --small")
    return {"backlog": n, "fill_s": round(fill_s, 2), "decide_s": round(decide_s, 2), "jobs_done": d1 - d0,
            "window_s": round(w1 - w0, 2), "jobs_per_s": round(rate, 1), "sends_done": sent, "undecided": [u0, u1],
            "window_cut": cut, "sim_calls": calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, short window; functional checks only")
    ap.add_argument("--small", type=int, default=None,
                    help="the baseline backlog (default 20000; 60000 with --deciding)")
    ap.add_argument("--large", type=int, default=None, help="the large backlog (default 200000)")
    ap.add_argument("--window-s", type=float, default=None, help="seconds counted after the warm-up (default 30)")
    ap.add_argument("--deciding", action="store_true",
                    help="do not wait for every event to be decided: measure delivery while the decider works "
                         "(each window ends when the last event is decided)")
    ap.add_argument("--profile", default=None, help="py-spy flame graph of bridge during each window, to PREFIX-N.svg")
    a = ap.parse_args()
    # while deciding, the baseline must still be deciding through its window: 20,000 are decided in seconds
    small = a.small or (200 if a.quick else 60_000 if a.deciding else 20_000)
    large = a.large or (2_000 if a.quick else 200_000)
    window = a.window_s or (2.0 if a.quick else 30.0)
    warmup = 0.5 if a.quick else 5.0
    print(f"backlog: drain rate after {small:,} vs {large:,} pending approvals, {window:.0f} s window, "
          f"load {common.load_avg()}")
    results = [measure(n, warmup, window, a.profile, finish=a.quick, deciding=a.deciding)
               for n in (small, large)]
    ratio = results[1]["jobs_per_s"] / results[0]["jobs_per_s"] if results[0]["jobs_per_s"] else 0.0
    print(f"backlog: {results[0]['jobs_per_s']:,.1f} jobs/s at {small:,}, {results[1]['jobs_per_s']:,.1f} jobs/s at "
          f"{large:,}: ratio {ratio:.2f} (target >= {TARGET}); load {common.load_avg()}")
    common.write_result("backlog", {"quick": a.quick, "deciding": a.deciding, "runs": results, "ratio": round(ratio, 3),
                                    "load": common.load_avg()})
    return common.report({f"ratio >= {TARGET}": ratio >= TARGET}, a.quick,
                         # quick: every send done (a small backlog may drain before the window opens); full: progress
                         {"backlog delivered": all(r["sends_done"] >= r["backlog"] if a.quick else r["jobs_done"] > 0
                                                   for r in results)})


if __name__ == "__main__":
    raise SystemExit(main())

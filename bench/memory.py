"""Memory: RSS of `bridge serve` while a backlog builds up with the worker blocked, then while it drains.

Why: the backlog lives in SQLite, not in memory; RSS must stay bounded however many events wait. The worker is
blocked without any special switch: the simulator process is frozen with SIGSTOP, so the worker's first
DingTalk call (the token) hangs (timeout 600 s) and nothing is sent; SIGCONT lets it drain.
RSS (VmRSS, VmHWM) is read from /proc/<pid>/status at intervals.
Target (full mode): RSS after the backlog is within 1.5x (+32 MiB) of RSS at a tenth of it, and draining
does not raise the peak by more than 32 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import common


def _done(db: Path) -> int:
    return sum(v for k, v in common.job_counts(db).items() if k.endswith(":done"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--events", type=int, default=None, help="events ingested (default 200000)")
    ap.add_argument("--drain-s", type=float, default=None, help="seconds to sample while draining")
    a = ap.parse_args()
    n = a.events or (2000 if a.quick else 200_000)
    drain_s = a.drain_s or (20.0 if a.quick else 120.0)
    run = uuid.uuid4().hex[:6]
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        sim = common.start_simulator(work, qps=0)
        setup = common.BridgeSetup(work, sim.url, qps=100_000, concurrency=16, timeout_s=600, lease_s=1900)
        bridge = common.start_bridge(setup)
        start = time.monotonic()

        def sample(phase: str, events: int) -> None:
            r = common.rss_kib(bridge.pid)
            samples.append({"t_s": round(time.monotonic() - start, 2), "phase": phase, "events": events,
                            "rss_mib": round(r["VmRSS"] / 1024, 1), "hwm_mib": round(r["VmHWM"] / 1024, 1)})
            print(f"  {samples[-1]}")

        try:
            os.kill(sim.pid, signal.SIGSTOP)
            sample("start", 0)
            chunk = max(1, n // 10)
            accepted = 0
            for k in range(0, n, chunk):
                reqs = [common.signed(common.event(f"M{run}-{i}", "pending", 0)) for i in range(k, min(n, k + chunk))]
                res = asyncio.run(common.load(bridge.url, reqs, 32))
                accepted += res.codes.get(202, 0)
                sample("ingest", min(n, k + chunk))
            backlog = common.open_work(setup.db_path)
            done_before = _done(setup.db_path)
            os.kill(sim.pid, signal.SIGCONT)
            t_end = time.monotonic() + drain_s
            left = backlog
            while time.monotonic() < t_end and left:
                time.sleep(min(1.0, drain_s / 10))
                sample("drain", n)
                left = common.open_work(setup.db_path)
            done_after = _done(setup.db_path)
        finally:
            os.kill(sim.pid, signal.SIGCONT)
            bridge.stop()
            sim.stop()
    ingest = [s for s in samples if s["phase"] == "ingest"]
    first, last = ingest[0]["rss_mib"], ingest[-1]["rss_mib"]
    peak_ingest = max(s["hwm_mib"] for s in ingest)
    peak_drain = max(s["hwm_mib"] for s in samples)
    bounded = last <= first * 1.5 + 32
    drain_ok = peak_drain <= peak_ingest + 32
    print(f"memory: {n} events, backlog {backlog} open items; RSS at 10% {first} MiB, at 100% {last} MiB, "
          f"peak while ingesting {peak_ingest} MiB, peak after {drain_s:.0f} s draining {peak_drain} MiB "
          f"({left} items still open; {done_after - done_before} DingTalk jobs done while draining)")
    common.write_result("memory", {"quick": a.quick, "events": n, "accepted": accepted, "backlog": backlog,
                                   "rss_first_mib": first, "rss_last_mib": last, "peak_ingest_mib": peak_ingest,
                                   "peak_drain_mib": peak_drain, "open_after_drain": left,
                                   "jobs_done_while_draining": done_after - done_before, "samples": samples})
    return common.report({"bounded while ingesting": bounded, "bounded while draining": drain_ok}, a.quick,
                         {"all accepted": accepted == n,
                          # open work can stay flat for a while: each finished send adds a delivery check
                          "drain progressed": left == 0 or done_after > done_before})


if __name__ == "__main__":
    raise SystemExit(main())

"""Ingest throughput: a bare aiohttp handler vs `bridge serve`, signed canonical webhooks at fixed concurrency.

Why: bridge promises that a 202 means the event is durable; this measures what that costs against the cheapest
possible aiohttp endpoint on the same machine in the same run, and checks every 202'd event is in SQLite.
Load comes from the built-in asyncio generator with pre-signed requests (each one has its own webhook-id and a
fresh timestamp, as the signature scheme requires; wrk cannot sign per request). The bridge under test has its
worker running against an unlimited simulator subprocess, as in production.
Targets (full mode): bridge rate >= 50% of bare, bridge p99 < 20 ms at 32 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import uuid
from pathlib import Path

import common


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small fast CI mode")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--worker-blocked", action="store_true",
                    help="freeze the simulator (SIGSTOP) so bridge's worker waits: ingest cost alone")
    a = ap.parse_args()
    n = a.requests or (300 if a.quick else 20_000)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        bare = common.start_bare(work)
        sim = common.start_simulator(work, qps=0)
        setup = common.BridgeSetup(work, sim.url, timeout_s=600 if a.worker_blocked else 10,
                                    lease_s=1900 if a.worker_blocked else 60)
        bridge = common.start_bridge(setup)
        if a.worker_blocked:
            os.kill(sim.pid, signal.SIGSTOP)
        try:
            warm = [common.signed(common.event(f"W{run}-{i}", "pending", 0)) for i in range(min(200, n))]
            asyncio.run(common.load(bare.url, warm, a.connections))
            asyncio.run(common.load(bridge.url, warm, a.connections))
            reqs = [common.signed(common.event(f"A{run}-{i}", "pending", 0)) for i in range(n)]
            r_bare = asyncio.run(common.load(bare.url, reqs, a.connections))
            reqs = [common.signed(common.event(f"B{run}-{i}", "pending", 0)) for i in range(n)]
            r_bridge = asyncio.run(common.load(bridge.url, reqs, a.connections))
            stored = common.stored_event_ids(setup.db_path)
            accepted_ids = {f"B{run}-{i}-pending-0" for i in r_bridge.accepted}
            missing = len(accepted_ids - stored)
        finally:
            if a.worker_blocked:
                os.kill(sim.pid, signal.SIGCONT)
            bridge.stop()
            sim.stop()
            bare.stop()
    sb, sr = r_bare.summary(), r_bridge.summary()
    ratio = sr["rps"] / sb["rps"] if sb["rps"] else 0.0
    print(f"bare   : {sb['rps']:>8} req/s  p50 {sb['p50_ms']} ms  p99 {sb['p99_ms']} ms  codes {sb['codes']}")
    print(f"bridge : {sr['rps']:>8} req/s  p50 {sr['p50_ms']} ms  p99 {sr['p99_ms']} ms  codes {sr['codes']}")
    print(f"ratio bridge/bare: {ratio:.2f}   accepted {len(accepted_ids)}, missing from the DB: {missing}")
    common.write_result("ingest-worker-blocked" if a.worker_blocked else "ingest", {
        "quick": a.quick, "worker_blocked": a.worker_blocked, "connections": a.connections, "requests": n,
        "bare": sb, "bridge": sr, "ratio": round(ratio, 3), "accepted": len(accepted_ids), "missing_in_db": missing})
    return common.report(
        {"ratio >= 0.5": ratio >= 0.5, "p99 < 20 ms": sr["p99_ms"] < 20.0},
        a.quick,
        {"every 202 durable": missing == 0, "all accepted": sr["codes"].get("202", 0) == n,
         "no client errors": r_bridge.errors == 0 and r_bare.errors == 0},
    )


if __name__ == "__main__":
    raise SystemExit(main())

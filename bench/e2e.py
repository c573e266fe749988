"""End to end: approvals submitted then approved, through bridge to the simulator with no rate limit.

Why: the throughput of the whole path (webhook → SQLite → state machine → worker → DingTalk) and the idle
latency from a webhook's 202 to its DingTalk call, which shows the worker is woken rather than polling.
Idle latency compares the client's wall-clock time of the 202 with the simulator's wall-clock timestamp of the
asyncsend_v2 call (same machine, same clock). Target (full mode): idle p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import common


def finished(sim_url: str, n: int, base: dict[str, int]) -> dict[str, int] | None:
    per = common.http_json(sim_url + "/_sim/stats")["per_call"]
    done = all(per.get(c, 0) - base.get(c, 0) >= n for c in ("asyncsend_v2", "status_bar_update"))
    return {c: v - base.get(c, 0) for c, v in per.items()} if done else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--approvals", type=int, default=None)
    ap.add_argument("--idle-samples", type=int, default=None)
    a = ap.parse_args()
    n = a.approvals or (50 if a.quick else 2000)
    samples = a.idle_samples or (10 if a.quick else 100)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        sim = common.start_simulator(work, qps=0)
        setup = common.BridgeSetup(work, sim.url, qps=100_000, concurrency=32)
        bridge = common.start_bridge(setup)
        try:
            # idle latency: one pending event at a time, the system otherwise quiet
            lat: list[float] = []
            for i in range(samples):
                since = common.http_json(sim.url + "/_sim/calls?path=asyncsend")["next"]
                req = [common.signed(common.event(f"I{run}-{i}", "pending", 0))]
                res = asyncio.run(common.load(bridge.url, req, 1, keep_times=True))
                t202 = res.answered_at[0]

                def call_at(since: int = since) -> float | None:
                    calls = common.http_json(f"{sim.url}/_sim/calls?path=asyncsend&since={since}")["calls"]
                    return datetime.fromisoformat(calls[0]["at"]).timestamp() if calls else None

                at = common.wait_until(call_at, 120, 0.005, "asyncsend_v2 call")
                lat.append((at - t202) * 1000)
                time.sleep(0.05)
            common.wait_until(lambda: common.open_work(setup.db_path) == 0, 300, what="idle")
            base = common.http_json(sim.url + "/_sim/stats")["per_call"]
            t0 = datetime.now().astimezone()
            pend = [common.signed(common.event(f"E{run}-{i}", "pending", 0, occurred=t0)) for i in range(n)]
            appr = [common.signed(common.event(f"E{run}-{i}", "approved", 1, occurred=t0 + timedelta(seconds=1)))
                    for i in range(n)]
            start = time.perf_counter()
            r1 = asyncio.run(common.load(bridge.url, pend, 32))
            r2 = asyncio.run(common.load(bridge.url, appr, 32))
            ingest_s = time.perf_counter() - start
            per = common.wait_until(
                lambda: finished(sim.url, n, base), 600, 0.1, "all approved")
            elapsed = time.perf_counter() - start
            common.wait_until(lambda: common.open_work(setup.db_path) == 0, 300, what="drained")
            jobs = common.job_counts(setup.db_path)
        finally:
            bridge.stop()
            sim.stop()
    events = 2 * n
    eps = events / elapsed
    lp50, lp99 = common.percentile(lat, 50), common.percentile(lat, 99)
    print(f"e2e: {n} approvals x 3 recipients, {events} events in {elapsed:.2f} s → {eps:.0f} events/s "
          f"(ingest alone {ingest_s:.2f} s); calls {per}")
    print(f"idle 202 → asyncsend_v2: p50 {lp50:.2f} ms, p99 {lp99:.2f} ms over {len(lat)} samples")
    dead = sum(v for k, v in jobs.items() if k.endswith(":dead"))
    accepted = r1.codes.get(202, 0) + r2.codes.get(202, 0)
    common.write_result("e2e", {"quick": a.quick, "approvals": n, "recipients": 3, "events": events,
                                "elapsed_s": round(elapsed, 3), "events_per_s": round(eps, 1),
                                "ingest_s": round(ingest_s, 3), "idle_latency_ms": {
                                    "p50": round(lp50, 2), "p99": round(lp99, 2), "samples": len(lat)},
                                "calls": per, "jobs": jobs, "accepted": accepted})
    return common.report({"idle p50 < 5 ms": lp50 < 5.0}, a.quick,
                         {"all accepted": accepted == events, "no dead jobs": dead == 0})


if __name__ == "__main__":
    raise SystemExit(main())

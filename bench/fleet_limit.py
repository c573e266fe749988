"""What the fleet-wide rate limit costs: `FleetLimiter.acquire()` on PostgreSQL against the local `RateLimiter`,
measured in the same run, plus a check that three "processes" (three stores, three limiters) together keep qps.

- per call, nobody waiting (rate 1,000,000/s): the local limiter's bookkeeping against the fleet limiter's one
  UPDATE … RETURNING round trip per call (slots 1 µs apart are always "late", so no batching here).
- at DingTalk's rate: one process with the local limiter, then 3 limiters on 3 stores (three processes) sharing
  one schedule, each at qps 20 (20 starts per 1.02 s), N queued calls per process: calls/s achieved (ratio
  fleet / local), round trips per call (batching), and the most starts seen in any 1.02 s window.

Run: python bench/fleet_limit.py [--quick] [--url postgresql://postgres@127.0.0.1:5432/postgres]. It creates and
drops its own database; results in bench/results/fleet_limit.json. Figures and load average: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import load_avg, write_result
from bridge.clock import SystemClock
from bridge.dingtalk.client import RATE_WINDOW_S
from bridge.dingtalk.fleetlimit import FleetLimiter
from bridge.dingtalk.ratelimit import RateLimiter
from bridge.store.postgres import PostgresStore

FAST = 1_000_000.0  # calls/s: nobody ever waits, so the figure is the limiter's own cost


async def per_call_us(acquire: Any, n: int, callers: int) -> float:
    async def caller(k: int) -> None:
        for _ in range(k):
            await acquire()

    started = time.perf_counter()
    await asyncio.gather(*(caller(n // callers) for _ in range(callers)))
    return (time.perf_counter() - started) / (n // callers * callers) * 1e6


def max_in_window(starts: list[float], window: float) -> int:
    starts, best, lo = sorted(starts), 0, 0
    for hi, t in enumerate(starts):
        while starts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def queued(limiters: list[Any], per_limiter: int) -> list[float]:
    starts: list[float] = []

    async def call(limiter: Any) -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    await asyncio.gather(*(call(lim) for lim in limiters for _ in range(per_limiter)))
    return starts


def rate(starts: list[float]) -> float:
    span = max(starts) - min(starts)
    return (len(starts) - 1) / span if span else 0.0


async def share(url: str, qps: int, per_process: int) -> dict[str, Any]:
    clock = SystemClock()
    local = await queued([RateLimiter(qps / RATE_WINDOW_S, clock, RATE_WINDOW_S)], 3 * per_process)
    stores = [PostgresStore(url, pool_size=2) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        limiters = [FleetLimiter(s, "bench:share", qps / RATE_WINDOW_S, clock, RATE_WINDOW_S) for s in stores]
        fleet = await queued(limiters, per_process)
    finally:
        for s in stores:
            await s.close()
    return {"qps": qps, "calls": len(fleet), "local_per_s": round(rate(local), 2),
            "fleet_per_s": round(rate(fleet), 2), "ratio": round(rate(fleet) / rate(local), 3),
            "round_trips_per_call": round(sum(lim.round_trips for lim in limiters) / len(fleet), 2),
            "max_in_1.02s": max_in_window(fleet, RATE_WINDOW_S), "max_in_1.0s": max_in_window(fleet, 1.0),
            "local_max_in_1.02s": max_in_window(local, RATE_WINDOW_S)}


async def run(url: str, quick: bool) -> dict[str, Any]:
    n = 600 if quick else 5000
    clock = SystemClock()
    store = PostgresStore(url, pool_size=4)
    await store.open()
    try:
        local = RateLimiter(FAST, clock)
        local_us = await per_call_us(local.acquire, n, 1)
        one = FleetLimiter(store, "bench:one", FAST, clock)
        fleet_us = await per_call_us(one.acquire, n, 1)
    finally:
        await store.close()
    shared = await share(url, 20, 10 if quick else 60)
    return {"calls": n, "local_us": round(local_us, 1), "fleet_us": round(fleet_us, 1),
            "ratio": round(fleet_us / local_us, 1), "share": shared}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred calls: a functional check")
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="a superuser URL")
    args = ap.parse_args()
    name = f"bridge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        result = asyncio.run(run(f"{args.url.rpartition('/')[0]}/{name}", args.quick))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    result.update(quick=args.quick, load=load_avg())
    print(f"per acquire, nobody waiting: local {result['local_us']} µs, fleet {result['fleet_us']} µs "
          f"({result['ratio']}×: one PostgreSQL round trip)")
    s = result["share"]
    print(f"qps {s['qps']}: 1 process, local limiter {s['local_per_s']} calls/s; 3 processes, fleet limiter "
          f"{s['fleet_per_s']} calls/s together (ratio {s['ratio']}), {s['round_trips_per_call']} round trips "
          f"per call, at most {s['max_in_1.02s']} starts in any 1.02 s (local: {s['local_max_in_1.02s']}), "
          f"{s['max_in_1.0s']} in any 1.0 s; "
          f"load {result['load']}")
    write_result("fleet_limit", result)
    return 0 if s["fleet_per_s"] < 1.1 * s["qps"] else 1  # functional: three processes did not make 3 × qps


if __name__ == "__main__":
    sys.exit(main())

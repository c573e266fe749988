"""Several bridge processes on one PostgreSQL database, against one process on SQLite, in one run.

Why: what PostgreSQL costs one process, and what more processes buy. For each set-up (SQLite x 1, PostgreSQL
x 1, 2, 4, all `--role all`) it posts N approvals (pending, then approved) spread over the processes with 32
connections in total, and times ingest (all answered) and end to end (the simulator, unlimited, has seen every
send and every status-bar update). Then, on PostgreSQL with one process, the idle latency from a webhook's 202
to the simulator's asyncsend_v2 (the worker woken through LISTEN/NOTIFY). It creates and drops its own
database. Figures and what limits them: docs/performance.md.

    python bench/pg_fleet.py [--approvals 1000] [--idle-samples 50] [--url postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import common
import psycopg
import wrk
from ingest import ROUTE

POOL = 20  # PostgreSQL connections per bridge process (--pool)


def fleet_toml(setup: common.BridgeSetup, url: str | None) -> str:
    text = setup.toml()
    if url is not None:
        text = text.replace(f'[storage]\npath = "{setup.db_path}"', f'[storage]\nurl = "{url}"\npool_size = {POOL}')
    return text


def start(work: Path, sim_url: str, url: str | None) -> common.Proc:
    setup = common.BridgeSetup(work, sim_url, qps=100_000, concurrency=32)
    cfg = work / f"bridge-{setup.port}.toml"
    cfg.write_text(fleet_toml(setup, url))
    log = work / f"bridge-{setup.port}.log"
    p = common._spawn([str(common.BIN / "bridge"), "serve", "--config", str(cfg), "--log-format", "json",
                       "--log-level", "warning"], log, setup.url + "/readyz")
    return common.Proc(p, setup.url, log)


def finished(sim_url: str, n: int, base: dict[str, int]) -> bool:
    per = common.http_json(sim_url + "/_sim/stats")["per_call"]
    return all(per.get(c, 0) - base.get(c, 0) >= n for c in ("asyncsend_v2", "status_bar_update"))


async def spread(urls: list[str], requests: list[tuple[dict[str, str], bytes]]) -> int:
    """POST the requests split over the processes, 32 connections in all; how many were accepted."""
    per = max(1, 32 // len(urls))
    parts = await asyncio.gather(*(common.load(u, requests[i::len(urls)], per) for i, u in enumerate(urls)))
    return sum(r.codes.get(202, 0) for r in parts)


def wrk_ingest(work: Path, urls: list[str], duration_s: float, tag: str) -> float:
    """Ingest with wrk: one wrk per process, 32 connections in all, for `duration_s`; req/s of all together
    (only 202s count). Every request is a new event (pending, 3 recipients), so the workers deliver meanwhile."""
    per = max(1, 32 // len(urls))
    size = int(4000 * duration_s / len(urls)) + 1000  # above any rate seen here: no request repeats

    def one(i: int, url: str) -> wrk.WrkResult:
        reqs = [common.signed(common.event(f"{tag}-w{i}-{k}", "pending", 0)) for k in range(size)]
        return wrk.run(url, reqs, connections=per, duration_s=duration_s, workdir=work, route=ROUTE,
                       name=f"{tag}-{i}")

    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(pool.map(one, range(len(urls)), urls))
    return sum(r.summary["codes"].get("202", 0) / r.summary["elapsed_s"] for r in results)


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"DROP SCHEMA public CASCADE")
        conn.execute(b"CREATE SCHEMA public")


def run_one(work: Path, sim: common.Proc, url: str | None, procs: int, n: int, tag: str,
            wrk_s: float) -> dict[str, float]:
    if url is not None:
        reset(url)
    bridges = [start(work, sim.url, url) for _ in range(procs)]
    try:
        base = common.http_json(sim.url + "/_sim/stats")["per_call"]
        t0 = datetime.now().astimezone()
        pend = [common.signed(common.event(f"{tag}-{i}", "pending", 0, occurred=t0)) for i in range(n)]
        appr = [common.signed(common.event(f"{tag}-{i}", "approved", 1, occurred=t0 + timedelta(seconds=1)))
                for i in range(n)]
        urls = [b.url for b in bridges]
        start_at = time.perf_counter()
        accepted = asyncio.run(spread(urls, pend)) + asyncio.run(spread(urls, appr))
        ingest_s = time.perf_counter() - start_at
        common.wait_until(lambda: finished(sim.url, n, base), 600, 0.1, "all approved")
        total_s = time.perf_counter() - start_at
        wrk_rps = wrk_ingest(work, urls, wrk_s, tag) if wrk.WRK and wrk_s > 0 else 0.0
    finally:
        for b in bridges:
            b.stop()
    return {"ingest_rps": 2 * n / ingest_s, "e2e_eps": 2 * n / total_s, "accepted": accepted, "wrk_rps": wrk_rps}


ANSWERS: dict[str, list[float]] = {}  # per store: each idle sample's webhook → 202 (a new connection each)


def idle_latency(work: Path, sim: common.Proc, url: str | None, samples: int) -> list[float]:
    if url is not None:
        reset(url)
    bridge = start(work, sim.url, url)
    lat: list[float] = []
    try:
        for i in range(samples):
            since = common.http_json(sim.url + "/_sim/calls?path=asyncsend")["next"]
            req = [common.signed(common.event(f"idle-{uuid.uuid4().hex[:6]}-{i}", "pending", 0))]
            res = asyncio.run(common.load(bridge.url, req, 1, keep_times=True))
            t202 = res.answered_at[0]
            ANSWERS.setdefault("PostgreSQL" if url is not None else "SQLite", []).extend(res.latencies_ms)

            def call_at(since: int = since) -> float | None:
                calls = common.http_json(f"{sim.url}/_sim/calls?path=asyncsend&since={since}")["calls"]
                return datetime.fromisoformat(calls[0]["at"]).timestamp() if calls else None

            lat.append((common.wait_until(call_at, 10, 0.002, "asyncsend_v2") - t202) * 1000)
            time.sleep(0.05)
    finally:
        bridge.stop()
    return lat


def main() -> int:
    global POOL
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--approvals", type=int, default=1000)
    ap.add_argument("--idle-samples", type=int, default=50)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--wrk-s", type=float, default=8.0, help="seconds of wrk ingest per set-up (0: none)")
    ap.add_argument("--only-postgres", action="store_true", help="skip SQLite and 2/4 processes (quick look)")
    ap.add_argument("--idle-only", action="store_true", help="only the idle latency, on both stores")
    a = ap.parse_args()
    POOL = a.pool
    name = f"bridge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(a.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = a.url.rsplit("/", 1)[0] + "/" + name
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            work = Path(tmp)
            sim = common.start_simulator(work, qps=0)
            try:
                if not a.only_postgres and not a.idle_only:
                    results["sqlite x1"] = run_one(work, sim, None, 1, a.approvals, "s1", a.wrk_s)
                for procs in () if a.idle_only else (1,) if a.only_postgres else (1, 2, 4):
                    results[f"postgres x{procs}"] = run_one(work, sim, url, procs, a.approvals, f"p{procs}", a.wrk_s)
                lat = idle_latency(work, sim, url, a.idle_samples)
                lat_sqlite = [0.0] if a.only_postgres else idle_latency(work, sim, None, a.idle_samples)
            finally:
                sim.stop()
    finally:
        with psycopg.connect(a.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    base = results.get("sqlite x1") or results.get("postgres x1") or {}
    if results:
        print(f"{a.approvals} approvals x 3 recipients, pending then approved ({2 * a.approvals} events), "
              "simulator unlimited, 32 connections")
    for label, r in results.items():
        print(f"  {label:<12} ingest {r['ingest_rps']:>7,.0f} req/s (x{r['ingest_rps'] / base['ingest_rps']:.2f})"
              f"   end to end {r['e2e_eps']:>6,.0f} events/s (x{r['e2e_eps'] / base['e2e_eps']:.2f})"
              f"   accepted {int(r['accepted'])}"
              + (f"   wrk ingest {r['wrk_rps']:>7,.0f} req/s (x{r['wrk_rps'] / (base['wrk_rps'] or 1):.2f})"
                 if r["wrk_rps"] else ""))
    for label, values in (("PostgreSQL", lat), ("SQLite", lat_sqlite)):
        answers = ANSWERS.get(label) or [0.0]
        print(f"idle 202 -> asyncsend_v2 on {label}: p50 {common.percentile(values, 50):.2f} ms, "
              f"p99 {common.percentile(values, 99):.2f} ms over {len(values)} samples "
              f"(webhook -> 202 p50 {common.percentile(answers, 50):.2f} ms, connect included)")
    common.write_result("pg_fleet", {"approvals": a.approvals, "results": results,
                                     "idle_ms": {"postgres_p50": common.percentile(lat, 50),
                                                 "sqlite_p50": common.percentile(lat_sqlite, 50)}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

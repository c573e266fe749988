"""Ingest throughput: a bare aiohttp handler vs `bridge serve --role receiver` vs `bridge serve`, in one run.

Why: bridge promises that a 202 means the event is durable; this measures what that costs against the cheapest
possible aiohttp endpoint on the same machine in the same run, and checks every 202'd event is in SQLite.
Every request is a new signed canonical event (its own webhook-id and event id, a fresh timestamp). Load
comes from wrk (`-t1 -c32`, bench/wrk.py replays pre-signed requests through a small Lua script) when it is
installed, else from the asyncio client in bench/common.py (`--client python`, and `--quick`). Two bridges
are measured: the receiver alone (`--role receiver`: verify, store, answer; nothing deciding beside it) and
the all-in-one process with its worker deciding and sending to an unlimited simulator subprocess. bridge
logs at info level in JSON into a file, as a production process would.
Two floors are measured too (bench/floor.py, not with --quick or --no-floor): the work a durable receiver
cannot skip (HMAC, JSON, a group-committed insert into an inbox-shaped table, one log line) as cheaply as
Python allows, and the same plus bridge's own decoding and event checks; they say how much of the gap to
the bare handler any receiver must pay and how much is bridge's.
Targets (full mode): receiver >= 0.5x bare with p99 < 20 ms at 32 connections; all-in-one >= 0.3x bare.
`--profile` also records each bridge with py-spy (collapsed stacks, bench/results/profile-<role>.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import common
import wrk

ROUTE = f"/webhooks/{common.SOURCE}"


def _requests(prefix: str, n: int) -> list[tuple[dict[str, str], bytes]]:
    return [common.signed(common.event(f"{prefix}-{i}", "pending", 0)) for i in range(n)]


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Runner:
    """Drives one target with the chosen client; remembers the accepted event ids for the durability check."""

    def __init__(self, a: argparse.Namespace, work: Path, run: str) -> None:
        self.a, self.work, self.run = a, work, run
        self.use_wrk = a.client == "wrk"

    def measure(self, name: str, url: str, pid: int | None, size: int) -> tuple[dict[str, Any], set[str]]:
        prefix = f"{name[:1].upper()}{self.run}"
        reqs = _requests(prefix, size)
        spy = self._profile(name, pid)
        cpu0 = _cpu_s(pid)
        try:
            if self.use_wrk:
                res = wrk.run(url, reqs, connections=self.a.connections, duration_s=self.a.duration,
                              workdir=self.work, route=ROUTE, name=name)
                summary, ids = res.summary, res.accepted_ids
                summary["wrapped"] = res.wrapped
            else:
                r = asyncio.run(common.load(url, reqs, self.a.connections))
                summary = {**r.summary(), "client": "python"}
                ids = {f"{prefix}-{i}-pending-0" for i in r.accepted}
        finally:
            if spy is not None:
                spy.wait(timeout=self.a.duration + 120)
        if pid is not None and summary["requests"]:
            # CPU the server spent per answer: steadier than req/s on a loaded machine (waiting costs no CPU)
            summary["cpu_us_per_request"] = round((_cpu_s(pid) - cpu0) * 1e6 / summary["requests"], 1)
        return summary, ids

    def _profile(self, name: str, pid: int | None) -> subprocess.Popen[bytes] | None:
        if not self.a.profile or pid is None or name == "bare":
            return None
        out = common.RESULTS / f"profile-{name}.txt"
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        return subprocess.Popen([str(spy), "record", "--format", "raw", "--nonblocking", "-r", "200",
                                 "-d", str(int(self.a.duration) + 1), "-p", str(pid), "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _bridge(a: argparse.Namespace, runner: Runner, work: Path, sim_url: str, role: str, size: int
            ) -> tuple[dict[str, Any], int]:
    """Start one bridge of `role` on its own database, warm it, measure it; (summary, accepted missing in DB)."""
    (work / role).mkdir()
    setup = common.BridgeSetup(work / role, sim_url, timeout_s=10, lease_s=60)
    bridge = common.start_bridge(setup, role=role, log_level=a.log_level)
    try:
        asyncio.run(common.load(bridge.url, _requests(f"W{role}{runner.run}", 200), a.connections))
        summary, accepted = runner.measure(role, bridge.url, bridge.pid, size)
        stored = common.stored_event_ids(setup.db_path)
    finally:
        bridge.stop()
    summary["accepted"] = len(accepted)
    return summary, len(accepted - stored)


def _floors(runner: Runner, work: Path, size: int) -> dict[str, dict[str, Any]]:
    """Both floors (bench/floor.py), each warmed and measured like bridge."""
    out: dict[str, dict[str, Any]] = {}
    for name, checks in (("floor", False), ("floor+checks", True)):
        proc = common.start_floor(work, checks=checks)
        try:
            asyncio.run(common.load(proc.url, _requests(f"W{name}{runner.run}", 200), runner.a.connections))
            out[name], _ = runner.measure(name, proc.url, proc.pid, size)
        finally:
            proc.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small fast CI mode (Python client, 300 requests)")
    ap.add_argument("--client", choices=["wrk", "python"], default=None,
                    help="load generator (default: wrk when installed, python with --quick)")
    ap.add_argument("--requests", type=int, default=None, help="requests per target (python client)")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per target (wrk)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--log-level", default="info", help="bridge's --log-level (info: as in production)")
    ap.add_argument("--profile", action="store_true", help="record each bridge with py-spy")
    ap.add_argument("--no-floor", action="store_true", help="skip the two floors (bench/floor.py)")
    ap.add_argument("--receiver-only", action="store_true",
                    help="measure bare and the receiver only (while cutting the receiver; no all-in-one target)")
    a = ap.parse_args()
    a.client = a.client or ("wrk" if wrk.WRK and not a.quick else "python")
    n = a.requests or (300 if a.quick else 20_000)
    run = uuid.uuid4().hex[:6]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        runner = Runner(a, work, run)
        bare = common.start_bare(work)
        sim = common.start_simulator(work, qps=0)
        try:
            asyncio.run(common.load(bare.url, _requests(f"Wbare{run}", 200), a.connections))
            sb, _ = runner.measure("bare", bare.url, bare.pid, 20_000 if runner.use_wrk else n)
            # wrk: bare may repeat its list (it stores nothing); bridge gets enough distinct events to never repeat
            size = int(sb["rps"] * a.duration * 1.3) + 2000 if runner.use_wrk else n
            floors = {} if a.quick or a.no_floor else _floors(runner, work, size)
            roles = ("receiver",) if a.receiver_only else ("receiver", "all")  # the all-in-one left out: not run
            bridges = {role: _bridge(a, runner, work, sim.url, role, size) for role in roles}
        finally:
            sim.stop()
            bare.stop()
    load_after = os.getloadavg()
    summaries = {role: summary for role, (summary, _) in bridges.items()}
    missing = sum(m for _, m in bridges.values())
    ratios = {role: s["rps"] / sb["rps"] if sb["rps"] else 0.0 for role, s in summaries.items()}
    sr = summaries["receiver"]
    for label, s in (("bare", sb), *floors.items(), *summaries.items()):
        print(f"{label:<9}: {s['rps']:>8} req/s  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms  "
              f"CPU {s.get('cpu_us_per_request')} us/request  codes {s['codes']}")
    if floors and sb["rps"]:
        print("floors/bare: " + ", ".join(f"{k} {f['rps'] / sb['rps']:.2f}" for k, f in floors.items()))
    print("ratio " + "   ".join(f"{NAMES[r]}/bare: {x:.2f}" for r, x in ratios.items())
          + f"   client {a.client}, {a.connections} connections")
    cpu = {k: s.get("cpu_us_per_request") for k, s in (("bare", sb), *summaries.items())}
    if all(cpu.values()):
        print("CPU per request, bare/bridge (per-core ratio): "
              + ", ".join(f"{NAMES[r]} {cpu['bare'] / cpu[r]:.2f}" for r in summaries))
    print("accepted: " + ", ".join(f"{r} {s['accepted']}" for r, s in summaries.items())
          + f"; missing from the DB: {missing}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}  ({time.strftime('%H:%M:%S')})")
    common.write_result("ingest", {
        "quick": a.quick, "client": a.client, "connections": a.connections, "log_level": a.log_level,
        "bare": sb, "floors": floors, "receiver": sr, "all": summaries.get("all"), "bridge": sr,
        "ratio": round(ratios["receiver"], 3),
        "ratio_all": round(ratios["all"], 3) if "all" in ratios else None, "missing_in_db": missing,
        "requests": n if a.client == "python" else None,
        "loadavg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]}})
    targets = {"receiver ratio >= 0.5": ratios["receiver"] >= 0.5, "receiver p99 < 20 ms": sr["p99_ms"] < 20.0}
    if "all" in ratios:
        targets["all-in-one ratio >= 0.3"] = ratios["all"] >= 0.3
    return common.report(
        targets,
        a.quick,
        {"every 202 durable": missing == 0,
         "every answer a 202": all(set(s["codes"]) == {"202"} and not s.get("wrapped") for s in summaries.values()),
         "no client errors": all(s["errors"] == 0 for s in (sb, *summaries.values()))},
    )


NAMES = {"receiver": "receiver", "all": "all-in-one"}  # how the figures name each role


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())

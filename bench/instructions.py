"""Instructions per webhook, counted by valgrind's callgrind: a bare aiohttp handler, the two floors, the
receiver and the all-in-one bridge, in one run, as ratios against the bare handler.

Why: bench/ingest.py measures what matters (requests per second under wrk), but on a shared 2-core machine
the same build measures 20-40% apart from one run to the next, which hides any change smaller than that.
callgrind counts the instructions a process executes, which do not depend on what else the machine is doing:
the same build gives the same count to within a fraction of a percent, so a 2% cut shows as 2%. What it does
not count: time in the kernel (socket and file writes, fsync), waiting, and cache misses; a change that moves
work into system calls looks cheaper here than it is. Use it to judge a change to the Python hot path, and
bench/ingest.py for the figures the targets are stated in.

Each target runs under `valgrind --tool=callgrind --instr-atstart=no` (nothing is counted while it starts
and warms up), is warmed with 300 webhooks, then counting is switched on (`callgrind_control -i on`), N
signed canonical webhooks are sent by the asyncio client (32 connections), and the counts are dumped. For
the all-in-one bridge the count also waits until every event is decided and its card sent to an unthrottled
simulator (which runs outside valgrind): its figure is the whole pipeline's cost per event. Needs valgrind
(Debian's package `valgrind`); without it the script says so and exits 2.
Run: `python bench/instructions.py [--requests N] [--targets receiver,all] [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import ingest

VALGRIND = shutil.which("valgrind")
CONTROL = shutil.which("callgrind_control")
TARGETS = ("bare", "floor", "floor+checks", "receiver", "all")
STARTUP_S = 300.0  # starting Python under valgrind takes a while on a loaded machine


def _total(files: list[Path]) -> int:
    """The instruction count in callgrind's dump files (the largest 'totals:' / 'summary:' line)."""
    total = 0
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("totals:", "summary:")):
                total = max(total, int(line.split()[1]))
    return total


def _control(*args: str) -> None:
    assert CONTROL is not None
    subprocess.run([CONTROL, *args], check=True, capture_output=True, timeout=120)


def _measure(name: str, work: Path, sim_url: str, n: int, run: str) -> dict[str, Any]:
    out = work / f"callgrind-{name}.out"
    wrap = [str(VALGRIND), "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    setup: common.BridgeSetup | None = None
    if name == "bare":
        proc = common.start_bare(work, wrap=wrap, timeout=STARTUP_S)
    elif name.startswith("floor"):
        proc = common.start_floor(work, checks=name == "floor+checks", wrap=wrap, timeout=STARTUP_S)
    else:
        (work / name).mkdir()
        setup = common.BridgeSetup(work / name, sim_url, timeout_s=30, lease_s=600)
        proc = common.start_bridge(setup, role=name, log_level="info", wrap=wrap, timeout=STARTUP_S)
    try:
        asyncio.run(common.load(proc.url, ingest._requests(f"W{name}{run}", 300), 32))
        if setup is not None and name == "all":
            common.wait_until(lambda: common.open_work(setup.db_path) == 0, STARTUP_S, 0.2, "the warm-up decided")
        _control("-i", "on", str(proc.pid))
        started = time.monotonic()
        result = asyncio.run(common.load(proc.url, ingest._requests(f"M{name}{run}", n), 32))
        if setup is not None and name == "all":  # the pipeline's whole cost: wait for every card to be sent
            common.wait_until(lambda: common.open_work(setup.db_path) == 0, STARTUP_S, 0.2, "every event decided")
        elapsed = time.monotonic() - started
        _control("-d", str(proc.pid))
    finally:
        proc.stop(timeout=60)
    accepted = len(result.accepted)
    total = _total(sorted(work.glob(out.name + "*")))
    return {"requests": n, "accepted": accepted, "instructions": total,
            "k_per_request": round(total / max(accepted, 1) / 1000, 1), "elapsed_s": round(elapsed, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small CI mode: 200 webhooks, bare and receiver only")
    ap.add_argument("--requests", type=int, default=None, help="webhooks counted per target (default 1,000)")
    ap.add_argument("--targets", default=None,
                    help="comma-separated subset of bare,floor,floor+checks,receiver,all (bare is always measured)")
    a = ap.parse_args()
    if VALGRIND is None or CONTROL is None:
        print("valgrind is not installed (Debian: apt-get install valgrind); nothing measured")
        return 2
    n = a.requests or (200 if a.quick else 1000)
    names = ["bare", "receiver"] if a.quick else ["bare", "floor", "floor+checks", "receiver", "all"]
    if a.targets:
        asked = [t.strip() for t in a.targets.split(",") if t.strip()]
        unknown = sorted(set(asked) - set(TARGETS))
        if unknown:
            ap.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
        names = ["bare", *(t for t in TARGETS[1:] if t in asked)]  # the baseline first, in the usual order
    run = os.urandom(3).hex()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        work = Path(tmp)
        sim = common.start_simulator(work, qps=0)
        try:
            figures = {name: _measure(name, work, sim.url, n, run) for name in names}
        finally:
            sim.stop()
    bare = figures["bare"]["k_per_request"]
    for name, f in figures.items():
        ratio = bare / f["k_per_request"] if f["k_per_request"] else 0.0
        print(f"{name:<13}: {f['k_per_request']:>8} k instructions/webhook   bare/this {ratio:.2f}   "
              f"({f['accepted']} of {f['requests']} accepted)")
    ratios = {name: round(bare / f["k_per_request"], 3) for name, f in figures.items() if f["k_per_request"]}
    common.write_result("instructions", {"quick": a.quick, "requests": n, "figures": figures, "ratios": ratios})
    every_202 = all(f["accepted"] == f["requests"] for f in figures.values())
    return common.report({}, a.quick, {"every webhook accepted": every_202})


if __name__ == "__main__":
    raise SystemExit(main())

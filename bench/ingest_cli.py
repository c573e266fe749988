"""`bridge ingest` throughput: lines/s from a JSON-lines file into SQLite, against reading the file in the same run.

Why: a system that writes its approvals to a log feeds bridge with `bridge ingest FILE`; a backfill of a day's
events should take seconds. This writes N canonical pending events (every line a new approval with its card
data) to a file, runs the real `bridge ingest` command on it as a subprocess (its stderr is not a terminal,
so it prints only the summary line), checks every line is in SQLite, and prints lines/s. As a baseline in the
same run it times the cheapest possible pass over the same file in Python: read each line and json.loads it.
Target (full mode): >= 5,000 lines/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import common


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished children so far (the bridge ingest process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small fast CI mode")
    ap.add_argument("--lines", type=int, default=None, help="lines in the file (default 50,000; 2,000 quick)")
    a = ap.parse_args()
    n = a.lines or (2_000 if a.quick else 50_000)
    run = uuid.uuid4().hex[:6]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-cli-") as tmp:
        work = Path(tmp)
        setup = common.BridgeSetup(work, "http://127.0.0.1:9")
        cfg = work / "bridge.toml"
        cfg.write_text(setup.toml())
        path = work / "events.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i in range(n):
                out.write(json.dumps(common.event(f"L{run}-{i}", "pending", 0), ensure_ascii=False) + "\n")
        t0 = time.perf_counter()
        with path.open("rb") as f:
            for line in f:
                json.loads(line)
        baseline_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cpu0 = _children_cpu_s()
        proc = subprocess.run([str(common.BIN / "bridge"), "ingest", "--config", str(cfg), "--source",
                               common.SOURCE, "--json", str(path)], capture_output=True, text=True, cwd=work,
                              timeout=600)
        elapsed = time.perf_counter() - t0
        cpu_s = _children_cpu_s() - cpu0
        con = sqlite3.connect(setup.db_path)
        stored = con.execute("SELECT count(*) FROM inbox WHERE event_id LIKE ?", (f"L{run}-%",)).fetchone()[0]
        con.close()
    load_after = os.getloadavg()
    summary = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else {}
    rate = n / elapsed
    base_rate = n / baseline_s
    print(f"bridge ingest: {n:,} lines in {elapsed:.2f} s = {rate:,.0f} lines/s (process start included)")
    print(f"CPU: {cpu_s:.2f} s = {cpu_s * 1e6 / n:.0f} us per line = {n / cpu_s:,.0f} lines per CPU-second "
          "(what one unshared core would do)")
    print(f"baseline (read + json.loads each line in Python): {base_rate:,.0f} lines/s; ratio {rate / base_rate:.3f}")
    print(f"its summary: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '(none)'}")
    print(f"stored {stored:,} of {n:,}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    common.write_result("ingest-cli", {
        "quick": a.quick, "lines": n, "elapsed_s": round(elapsed, 3), "lines_per_s": round(rate, 1),
        "cpu_s": round(cpu_s, 3), "lines_per_cpu_s": round(n / cpu_s, 1),
        "baseline_lines_per_s": round(base_rate, 1), "stored": stored, "exit": proc.returncode,
        "loadavg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]}})
    return common.report(
        {"lines/s >= 5,000": rate >= 5000},
        a.quick,
        {"exit 0": proc.returncode == 0, "every line stored": stored == n,
         "all accepted": summary.get("accepted") == n and summary.get("bad") == 0},
    )


if __name__ == "__main__":
    raise SystemExit(main())

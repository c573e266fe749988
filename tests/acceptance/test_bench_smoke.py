"""The bench/ scripts keep working: each runs once in its small --quick mode as a subprocess.

Why: benchmarks and drills rot silently when the code they drive changes. These runs are functional checks
(exit 0 = no functional failure; speed targets are judged only in full mode) plus the shape of the JSON
result each script writes to bench/results/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import real

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"

CASES = {
    "ingest": ([], {"ingest": ["bare", "receiver", "all", "bridge", "ratio", "ratio_all", "missing_in_db",
                               "connections", "loadavg"]}),
    "ingest_parts": ([], {"ingest_parts": ["baseline_us", "steps_us", "total_us", "ratio", "loadavg"]}),
    "ingest_cli": ([], {"ingest-cli": ["lines_per_s", "lines_per_cpu_s", "stored", "loadavg"]}),
    "e2e": ([], {"e2e": ["events_per_s", "idle_latency_ms", "approvals", "calls"]}),
    "drain": ([], {"drain": ["achieved_qps", "configured_qps", "ratio", "throttled"]}),
    "backlog": ([], {"backlog": ["runs", "ratio", "load"]}),
    "fair_claim": ([], {"fair_claim": ["fair_s", "oldest_first_s", "ratio", "load"]}),
    "operator_reads": ([], {"operator_reads": ["reads_ms", "target_ms", "approvals", "journal"]}),
    "fleet_limit": ([], {"fleet_limit": ["local_us", "fleet_us", "ratio", "share", "load"]}),
    "memory": (["--events", "1000"], {"memory": ["samples", "peak_ingest_mib", "peak_drain_mib", "rss_last_mib"]}),
    "instructions": ([], {"instructions": ["figures", "ratios", "requests"]}),
    "drills": ([], {"drills-crash": ["figures", "targets"], "drills-faults": ["figures", "targets"],
                    "drills-badinput": ["figures", "targets"], "drills-storage": ["figures", "targets"]}),
}


# Generous bounds: a drill takes ~40 s alone and several times that on a loaded 2-core machine. The bound
# only stops a hang; the scripts themselves wait with bounded polls, so load changes their time, not their result.
@pytest.mark.timeout(420)
@pytest.mark.parametrize("script", list(CASES))
def test_script_quick_mode(script: str) -> None:
    args, expected = CASES[script]
    if script == "instructions" and shutil.which("valgrind") is None:
        real.missing("valgrind", "apt-get install valgrind (bench/instructions.py counts instructions with callgrind)")
    for name in expected:
        (RESULTS / f"{name}.json").unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), "--quick", *args],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name, keys in expected.items():
        data = json.loads((RESULTS / f"{name}.json").read_text())
        assert data["quick"] is True
        assert data["machine"]["cpus"]
        missing = [k for k in keys if k not in data]
        assert not missing, f"{name}.json lacks {missing}"
    if script == "ingest":
        data = json.loads((RESULTS / "ingest.json").read_text())
        assert data["missing_in_db"] == 0 and data["bridge"]["codes"] == {"202": data["requests"]}
    if script == "instructions":
        data = json.loads((RESULTS / "instructions.json").read_text())
        assert set(data["figures"]) == {"bare", "receiver"} and data["ratios"]["bare"] == 1.0
        assert all(f["instructions"] > 0 and f["accepted"] == f["requests"] for f in data["figures"].values())
    if script == "drills":
        for name in expected:
            data = json.loads((RESULTS / f"{name}.json").read_text())
            assert all(data["targets"].values()), (name, data["targets"])

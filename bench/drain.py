"""Backlog drain under DingTalk's rate limit: bridge's limiter at 20 calls/s against a simulator enforcing 20/s.

Why: DingTalk allows 20 calls/s per app per API; a limiter that is too eager gets throttled (and retries), one
that is too shy wastes the budget. A backlog of N asyncsend_v2 calls (N pending approvals ingested at once)
is drained; the achieved rate is measured from the simulator's own call timestamps.
Targets (full mode): achieved / configured >= 0.95, throttled answers seen by the simulator = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import common

QPS = 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--calls", type=int, default=None, help="backlog of asyncsend_v2 calls (default 5000)")
    a = ap.parse_args()
    n = a.calls or (60 if a.quick else 5000)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        work = Path(tmp)
        sim = common.start_simulator(work, qps=QPS)
        setup = common.BridgeSetup(work, sim.url, qps=QPS, concurrency=8)
        bridge = common.start_bridge(setup)
        try:
            reqs = [common.signed(common.event(f"D{run}-{i}", "pending", 0)) for i in range(n)]
            res = asyncio.run(common.load(bridge.url, reqs, 32))

            def sent() -> bool | None:
                # poll the cheap counters: fetching the whole call log every half second would stall the
                # simulator's event loop (megabytes of JSON) and distort the very rate being measured
                st = common.http_json(sim.url + "/_sim/stats")
                ok = st["per_call"].get("asyncsend_v2", 0) - st["errors_per_call"].get("asyncsend_v2", 0)
                return True if ok >= n else None

            common.wait_until(sent, n / QPS * 2 + 300, 0.5, "backlog drained")
            calls = [c for c in common.http_json(sim.url + "/_sim/calls?path=asyncsend")["calls"]
                     if c.get("errcode") == 0]
            stats = common.http_json(sim.url + "/_sim/stats")
            time.sleep(0.1)
        finally:
            bridge.stop()
            sim.stop()
    times = sorted(datetime.fromisoformat(str(c["at"])).timestamp() for c in calls)
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span if span > 0 else 0.0
    share = rate / QPS
    throttled = int(stats["throttled"])
    print(f"drain: {len(times)} asyncsend_v2 calls in {span:.2f} s → {rate:.2f} calls/s "
          f"({share:.3f} of {QPS}/s); throttled by the simulator: {throttled}; all calls {stats['per_call']}")
    common.write_result("drain", {"quick": a.quick, "backlog": n, "configured_qps": QPS, "achieved_qps": round(rate, 3),
                                  "ratio": round(share, 4), "span_s": round(span, 3), "throttled": throttled,
                                  "per_call": stats["per_call"], "accepted": res.codes.get(202, 0)})
    return common.report({"ratio >= 0.95": share >= 0.95, "throttled == 0": throttled == 0}, a.quick,
                         {"all accepted": res.codes.get(202, 0) == n, "all sent": len(times) >= n})


if __name__ == "__main__":
    raise SystemExit(main())

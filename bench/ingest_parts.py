"""Where a webhook's CPU goes inside bridge: each step of `POST /webhooks/{source}` timed alone, in-process.

Why: bench/ingest.py measures the whole receiver against a bare aiohttp handler, and a py-spy profile of it
under wrk mixes in the load generator, waiting and the writer thread. This runs each step bridge adds to a
request on one warm signed canonical event, as the receiver calls it (same config as the bench's bridges:
one standard-webhooks source, three secrets registered with the log scrubber, JSON log lines written to
/dev/null), and prints microseconds per call (best of several rounds) and each step as a multiple of a
baseline measured in the same run: building the bare handler's own 202 (`web.json_response`). What is
not here: aiohttp's request parsing and response writing (the bare handler pays those too), the event
loop's hand-off to the SQLite writer and the insert itself (`bench/store_bench.py` has the group commit).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from bridge import config, event_checks, events, logs
from bridge import web as webapp
from bridge.metrics import Metrics
from bridge.sources import intake, signatures
from bridge.store import sqlite_sql as sq


def _steps() -> list[tuple[str, Callable[[], Any]]]:
    work = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    setup = common.BridgeSetup(work, "http://127.0.0.1:1")
    (work / "bridge.toml").write_text(setup.toml())
    cfg = config.load(work / "bridge.toml")
    source = cfg.source(common.SOURCE)
    assert source is not None
    raw_headers, body = common.signed(common.event("P-1", "pending", 0))
    headers = CIMultiDictProxy(CIMultiDict(raw_headers))
    now, window = datetime.now(UTC), intake.window_of(cfg.server)
    payload = events.parse_json(body)
    event = events.parse_canonical(source.name, payload, webhook_id=None)
    logs.configure(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
    logs.register_secrets([s.reveal() for s in source.secrets] + ["demo-app-secret", "bench-admin-token"])
    log = structlog.get_logger("bridge.web")
    metrics = Metrics()

    def log_line() -> None:
        structlog.contextvars.bind_contextvars(source=source.name)
        structlog.contextvars.bind_contextvars(approval_id=event.approval_id, event_id=event.event_id)
        log.info("webhook.accepted", status="pending")
        structlog.contextvars.unbind_contextvars("source", "approval_id", "event_id")

    def insert_params() -> dict[str, Any]:
        raw = intake.redact(source, body)
        return dict(source=event.source, event_id=event.event_id, approval_id=event.approval_id,
                    occurred_at=sq.to_us(event.occurred_at), received_at=sq.to_us(now), event=event.to_json(),
                    raw=bytes(raw), card_data=int(event.has_card_data))

    return [
        ("baseline: the bare handler's 202 (web.json_response)", lambda: web.json_response({"accepted": True},
                                                                                           status=202)),
        ("signature (standard-webhooks HMAC-SHA256)", lambda: signatures.verify(source, headers, body, now)),
        ("JSON parse of the body", lambda: events.parse_json(body)),
        ("canonical fields -> ApprovalEvent", lambda: events.parse_canonical(source.name, payload, webhook_id=None)),
        ("event checks (lengths, characters, time window)", lambda: event_checks.check_event(event, now, window)),
        ("redact + stored JSON + insert parameters", insert_params),
        ("log line (context bind/unbind, render, write)", log_line),
        ("metrics (counter + histogram)", lambda: metrics.webhook_answered(source.name, 202, 0.001)),
        ("bridge's 202 (orjson)", lambda: webapp.fast_json_response(
            {"status": "accepted", "event_id": event.event_id, "approval_id": event.approval_id, "inbox_id": 1},
            status=202)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a few rounds only (functional check)")
    a = ap.parse_args()
    number, repeat = (200, 2) if a.quick else (5000, 7)
    load_before = os.getloadavg()
    steps = _steps()
    timings = {name: min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6 for name, fn in steps}
    baseline = timings.pop(steps[0][0])
    total = sum(timings.values())
    print(f"{steps[0][0]:<52} {baseline:7.2f} us   1.0x")
    for name, us in timings.items():
        print(f"{name:<52} {us:7.2f} us  {us / baseline:4.1f}x  {us / total * 100:4.1f}% of the steps")
    print(f"{'sum of the steps bridge adds':<52} {total:7.2f} us  {total / baseline:4.1f}x")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    common.write_result("ingest_parts", {
        "quick": a.quick, "baseline_us": round(baseline, 2), "steps_us": {k: round(v, 2) for k, v in timings.items()},
        "total_us": round(total, 2), "ratio": round(total / baseline, 2),
        "loadavg": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}})
    return common.report({}, a.quick, {"every step ran": all(us > 0 for us in timings.values())})


if __name__ == "__main__":
    raise SystemExit(main())

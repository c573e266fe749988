"""Operator reads at scale: `bridge tail`, `bridge status`, `bridge jobs --state S` and the admin API's lists
against a database of 1,000,000 journal rows and 500,000 approvals.

Why: an operator asks these questions when something is wrong, which is when the database is biggest; a read
that scans a table (a COUNT(*) over every job, an ORDER BY no index serves, a filter an index cannot use)
answers in seconds there. The database is built quickly with bulk SQL inserts into the store's real schema
(migrated by SQLiteStore itself), not through the pipeline: per approval one processed event, its audit row,
one sent notice and its done send job; 0.4% of the approvals have a dead update job; the journal has two
lines per approval plus filler up to its size, one line in 1,000 a DingTalk failure (job.retry_scheduled or
job.dead with the code, error class and app bridge.worker writes), all within the last hour. The CLI commands
run in this process through bridge's own `main` (config, store open, query, output: all but the
interpreter's start), each several times (median); the admin API is asked over HTTP from a real
`bridge serve` on that file; the console's overview through the store calls it makes, its last hour also
alone and beside the read it replaced (the journal's last 5,000 lines), and the newest done jobs by the
store's statement beside the query before migration 8 (same-run baselines, printed as ratios, not held to
the target); `bridge status` without an approval asks the running bridge's GET /apps.
Target (full mode): every read < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sqlite3
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common

from bridge.cli.main import main as bridge_main
from bridge.store.sqlite import SQLiteStore
from bridge.store.sqlite_sql import Q

TARGET_MS = 100.0
TOKEN = "bench-admin-token-0123456789"
STATUSES = ("pending", "approved", "rejected", "cancelled")
ALERTS_NOW = "overview's last hour: journal_alerts (store)"
ALERTS_BEFORE = "overview's last hour, before: the journal's last 5,000 lines (store, baseline)"
DONE_BEFORE = "100 newest done jobs, the query before migration 8 (sqlite3, baseline)"
DONE_NOW = "100 newest done jobs, the store's query now (sqlite3)"
FAILURE_EVERY = 1000  # one journal line in 1,000 is a DingTalk failure (1,000 in the last hour at full size)
ALERT_SCAN = 5000  # bridge.console.overview's
FAILURES = (("job.retry_scheduled", json.dumps({"code": "90018", "error": "DingTalkThrottled", "app": "default"})),
            ("job.retry_scheduled", json.dumps({"code": "-1", "error": "DingTalkError", "app": "default"})),
            ("job.dead", json.dumps({"code": "40035", "error": "DingTalkError", "app": "default"})))


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def build(db: Path, approvals: int, journal: int) -> None:
    """The schema through SQLiteStore (its migrations), then the rows in bulk."""
    async def migrate() -> None:
        st = SQLiteStore(db)
        await st.open()
        await st.close()

    asyncio.run(migrate())
    now = _us(datetime.now(UTC)) - approvals * 1000  # rows 1 ms apart, ending now (retention keeps all)
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")
    card = json.dumps({"title": "采购申请", "recipients": ["u1", "u2", "u3"], "url": "https://erp.example.com/po"},
                      ensure_ascii=False)
    msg = json.dumps({"msgtype": "oa", "oa": {"message_url": "https://erp.example.com/po", "head": {"text": "审批"}}},
                     ensure_ascii=False)

    def ids(i: int) -> tuple[str, str]:
        return f"A{i:07d}", f"A{i:07d}-pending-0"

    with con:
        con.executemany(
            "INSERT INTO approvals (source, approval_id, status, last_occurred_at, generation, card, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
            ((common.SOURCE, ids(i)[0], STATUSES[i % 4], now + i * 1000, card, now + i * 1000, now + i * 1000)
             for i in range(approvals)))
        con.executemany(
            "INSERT INTO inbox (id, source, event_id, approval_id, occurred_at, received_at, event, raw, card_data,"
            " processed, outcome, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, 'applied', ?)",
            ((i + 1, common.SOURCE, ids(i)[1], ids(i)[0], now + i * 1000, now + i * 1000,
              json.dumps({"source": common.SOURCE, "event_id": ids(i)[1], "approval_id": ids(i)[0],
                          "status": "pending", "occurred_at": "2026-01-01T00:00:00+00:00"}), b"{}", now + i * 1000)
             for i in range(approvals)))
        con.executemany(
            "INSERT INTO audit (inbox_id, source, approval_id, event_id, from_status, to_status, outcome, at)"
            " VALUES (?, ?, ?, ?, 'new', 'pending', 'applied', ?)",
            ((i + 1, common.SOURCE, ids(i)[0], ids(i)[1], now + i * 1000) for i in range(approvals)))
        con.executemany(
            "INSERT INTO notices (id, source, approval_id, generation, group_index, userids, msg, state, task_id,"
            " sent_at) VALUES (?, ?, ?, 1, 0, '[\"u1\",\"u2\",\"u3\"]', ?, 'sent', ?, ?)",
            ((i + 1, common.SOURCE, ids(i)[0], msg, 10_000_000 + i, now + i * 1000) for i in range(approvals)))
        con.executemany(
            "INSERT INTO jobs (kind, source, approval_id, lock_key, notice_id, payload, state, attempts, run_at,"
            " created_at, updated_at, outcome, event_id, last_error)"
            " VALUES (?, ?, ?, ?, ?, '{}', ?, 1, ?, ?, ?, ?, ?, ?)",
            _jobs(approvals, now))

        def lines() -> Iterator[tuple[Any, ...]]:
            for k in range(journal):
                i = k // 2 if k < 2 * approvals else k % approvals
                kind, data = ("dingtalk.sent" if k % 2 else "event.applied"), "{}"
                if k % FAILURE_EVERY == FAILURE_EVERY - 1:  # a DingTalk failure, as bridge.worker writes it
                    kind, data = FAILURES[(k // FAILURE_EVERY) % len(FAILURES)]
                yield (now + i * 1000, kind, common.SOURCE, ids(i)[0], ids(i)[1], f"line {k} about {ids(i)[0]}", data)

        con.executemany("INSERT INTO journal (at, kind, source, approval_id, event_id, message, data)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", lines())
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _jobs(approvals: int, now: int) -> Iterator[tuple[Any, ...]]:
    for i in range(approvals):
        aid = f"A{i:07d}"
        at = now + i * 1000
        yield ("send", common.SOURCE, aid, f"{common.SOURCE}/{aid}", i + 1, "done", at, at, at, "ok",
               f"{aid}-pending-0", None)
        if i % 250 == 0:  # 2,000 dead letters in 500,000 approvals
            yield ("update", common.SOURCE, aid, f"{common.SOURCE}/{aid}", i + 1, "dead", at, at, at, None,
                   f"{aid}-pending-0", "permanent: 40035")


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _cli(cfg: Path, *args: str) -> Callable[[], None]:
    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = bridge_main([*args, "--config", str(cfg)])
        if code != 0:
            raise RuntimeError(f"bridge {' '.join(args)} exited {code}")
    return run


def _get(url: str) -> Callable[[], None]:
    def run() -> None:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
    return run


def _store_calls(db: Path, calls: Callable[[SQLiteStore], Awaitable[Any]]) -> Callable[[], None]:
    def run() -> None:
        async def go() -> None:
            st = SQLiteStore(db)
            await st.open()
            try:
                await calls(st)
            finally:
                await st.close()
        asyncio.run(go())
    return run


def _overview(expected: int) -> Callable[[SQLiteStore], Awaitable[None]]:
    async def reads(st: SQLiteStore) -> None:  # what the console's overview page reads
        now = datetime.now(UTC)
        await st.approval_counts()  # every approval per source and status
        await st.job_counts(now)
        await st.waiting_events()
        await st.list_jobs("dead", 1000)
        await _alerts(expected)(st)
    return reads


def _alerts(expected: int) -> Callable[[SQLiteStore], Awaitable[None]]:
    async def read(st: SQLiteStore) -> None:
        """The overview's last hour: the alert lines alone, by kind and time (bridge.console.overview)."""
        hour = await st.journal_alerts(datetime.now(UTC) - timedelta(hours=1), ALERT_SCAN)
        if len(hour) != min(ALERT_SCAN, expected):
            raise RuntimeError(f"journal_alerts read {len(hour)} lines, the hour holds {expected}")
    return read


async def _alerts_before(st: SQLiteStore) -> None:
    """The baseline: how the overview read its last hour before journal_alerts, the journal's last 5,000 lines."""
    await st.journal_tail(5000)


def _raw(db: Path, query: str, params: Any) -> Callable[[], None]:
    """One statement on a plain sqlite3 connection: a store query beside its old form (a same-run baseline)."""
    def run() -> None:
        with contextlib.closing(sqlite3.connect(db)) as con:
            con.execute(query, params).fetchall()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a small database; functional checks only")
    ap.add_argument("--approvals", type=int, default=None, help="default 500000")
    ap.add_argument("--journal", type=int, default=None, help="default 1000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the database at this path")
    a = ap.parse_args()
    approvals = a.approvals or (2_000 if a.quick else 500_000)
    journal = a.journal or (4_000 if a.quick else 1_000_000)
    print(f"operator reads: {journal:,} journal rows, {approvals:,} approvals; load {common.load_avg()}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        work = Path(tmp)
        db = a.keep or work / "bridge.db"
        t0 = time.monotonic()
        if not db.exists():
            build(db, approvals, journal)
        print(f"  database built in {time.monotonic() - t0:.1f} s ({db.stat().st_size / 2**20:.0f} MiB)")
        sim = common.start_simulator(work)
        setup = common.BridgeSetup(work, sim.url, db=str(db.resolve()), admin_token=TOKEN)
        cfg = work / "reads.toml"
        cfg.write_text(setup.toml())
        mid = f"A{approvals // 2:07d}"
        alerts = journal // FAILURE_EVERY  # every line of the built journal is within the last hour
        reads: dict[str, Callable[[], None]] = {
            "bridge tail -n 20": _cli(cfg, "tail", "-n", "20"),
            f"bridge status {common.SOURCE} {mid}": _cli(cfg, "status", common.SOURCE, mid),
            "bridge jobs --state dead": _cli(cfg, "jobs", "--state", "dead"),
            "bridge jobs --state done": _cli(cfg, "jobs", "--state", "done"),
            "bridge jobs": _cli(cfg, "jobs"),
            "console overview (store reads)": _store_calls(db, _overview(alerts)),
            ALERTS_NOW: _store_calls(db, _alerts(alerts)),
            ALERTS_BEFORE: _store_calls(db, _alerts_before),
            DONE_BEFORE: _raw(db, "SELECT * FROM jobs WHERE state = ? ORDER BY id DESC LIMIT 100", ("done",)),
            DONE_NOW: _raw(db, Q["list_done_jobs"], {"limit": 100}),
        }
        for name, run in reads.items():
            figures[name] = _median_ms(run, a.repeat)
            print(f"  {name}: {figures[name]:.1f} ms (target < {TARGET_MS:.0f} ms)")
        bridge = common.start_bridge(setup, timeout=120)
        try:
            base = setup.url
            api = {
                "GET /approvals": "/approvals",
                "GET /approvals?status=pending": "/approvals?status=pending",
                "GET /approvals?since=<an hour ago>": "/approvals?since="
                + (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "GET /jobs": "/jobs",
                "GET /jobs?state=dead": "/jobs?state=dead",
                "GET /jobs?state=pending": "/jobs?state=pending",
                "GET /jobs?state=done": "/jobs?state=done",
                f"GET /approvals/{common.SOURCE}/{mid}": f"/approvals/{common.SOURCE}/{mid}",
                "GET /apps": "/apps",
                "GET /metrics": "/metrics",
            }
            served: dict[str, Callable[[], None]] = {name: _get(base + path) for name, path in api.items()}
            served["bridge status (each app, from the running bridge)"] = _cli(cfg, "status")
            for name, run in served.items():
                figures[name] = _median_ms(run, a.repeat)
                print(f"  {name}: {figures[name]:.1f} ms (target < {TARGET_MS:.0f} ms)")
        finally:
            bridge.stop()
            sim.stop()
    for new, old in ((ALERTS_NOW, ALERTS_BEFORE), (DONE_NOW, DONE_BEFORE)):
        print(f"  ratio {new} / {old}: {figures[new] / figures[old]:.3f}")
    slow = {k: round(v, 1) for k, v in figures.items() if v >= TARGET_MS and "baseline" not in k}
    print(f"operator reads: slowest {max(figures.values()):.1f} ms; {len(slow)} over {TARGET_MS:.0f} ms {slow}; "
          f"load {common.load_avg()}")
    common.write_result("operator_reads", {"quick": a.quick, "approvals": approvals, "journal": journal,
                                           "reads_ms": {k: round(v, 2) for k, v in figures.items()},
                                           "target_ms": TARGET_MS, "load": common.load_avg()})
    return common.report({f"every read < {TARGET_MS:.0f} ms": not slow}, a.quick)


if __name__ == "__main__":
    raise SystemExit(main())

"""Several `bridge serve` processes on one PostgreSQL database, with the simulator as DingTalk: one receiver,
two workers and one `all` process; 1,000 approvals (1, 3 and 7 recipients), pending then approved, to both
receiving ports; one worker is killed with SIGKILL mid-run and restarted. Every card must end right (已同意 on
the simulator), nothing lost, no event decided twice, repeated sends and updates at most one per kill, the
simulator's per-endpoint rate (most calls in any rolling 1.02 s of its call log) never above the app's qps for
the three delivering processes together, and no two gettoken calls within one refresh period of the short
token lifetime the simulator is given.

Load-independent: every wait is a condition polled with a generous bound, never an elapsed time; a loaded
machine makes the run slower, not different (the rate and token checks are upper bounds that slowness only
makes easier to keep)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
import pytest

from bridge.config import SourceConfig
from bridge.secret import Secret
from bridge.sources import signatures
from tests.acceptance.conftest import BRIDGE, env, free_port, http_json, poll

pytestmark = pytest.mark.acceptance

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SOURCE = SourceConfig(name="erp", signature="standard-webhooks", secrets=(Secret(SECRET),))
APPROVALS = 1000  # 1, 3 and 7 recipients in turn: 1,333 cards (7 recipients need two sends of at most 5)
CARDS = sum((1, 1, 2)[i % 3] for i in range(APPROVALS))
QPS = 50  # the app's, for the whole fleet (the simulator enforces it too): a quick run, the same sharing
TOKEN_TTL_S = 20.0  # refreshed every 10 s (half the lifetime for short tokens): several refreshes per run
RATE_WINDOW_S = 1.02
JITTER_CALLS = 3  # calls a stalled simulator may stamp into one window early (see the rate checks)


def toml(port: int, pg_url: str, sim_url: str) -> str:
    return f"""
[server]
host = "127.0.0.1"
port = {port}
shutdown_timeout_s = 2.0

[storage]
url = "{pg_url}"
pool_size = 10

[dingtalk]
base_url = "{sim_url}"
app_key = "dingdemoappkey"
app_secret = "demo-app-secret"
agent_id = 1000001
qps = {QPS}  # for the fleet: the three delivering processes share it through PostgreSQL
timeout_s = 2.0

[worker]
concurrency = 8
lease_s = 7.0
retry_base_s = 0.05
retry_cap_s = 0.5
poll_interval_s = 0.5
check_delay_s = 0.2

[[sources]]
name = "erp"
signature = "standard-webhooks"
secret = "{SECRET}"
"""


def start(work: Path, name: str, role: str, pg_url: str, sim_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = work / f"{name}.toml"
    cfg.write_text(toml(port, pg_url, sim_url), encoding="utf-8")
    with (work / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen([BRIDGE, "serve", "--config", str(cfg), "--role", role, "--log-format", "json",
                                 "--log-level", "warning"], cwd=work, env=env(), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    poll(lambda: proc.poll() is None and http_json(url + "/readyz")[0] == 200, 120, 0.1, f"{name} ready")
    return proc, url


def event(i: int, status: str, minutes: int) -> bytes:
    recipients = [f"user{i}-{k}" for k in range((1, 3, 7)[i % 3])]
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return json.dumps({"event_id": f"F-{i}-{status}", "approval_id": f"F-{i}", "status": status,
                       "occurred_at": at.isoformat(), "title": f"采购申请 F-{i}", "recipients": recipients,
                       "url": f"https://erp.example.com/po/{i}"}).encode()


async def post_all(urls: list[str], bodies: list[bytes]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(16)

        async def one(n: int, raw: bytes) -> int:
            headers = {"Content-Type": "application/json",
                       **signatures.sign_headers(SOURCE, raw, datetime.now(UTC))}
            async with sem, http.post(urls[n % len(urls)] + "/webhooks/erp", data=raw, headers=headers) as resp:
                return resp.status

        return await asyncio.gather(*(one(n, raw) for n, raw in enumerate(bodies)))


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def most_in_window(stamps: list[str], window: float) -> int:
    """The most calls the simulator received in any rolling `window` seconds."""
    times, best, lo = sorted(map(at, stamps)), 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def rows(pg_url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(sql.encode()).fetchall()


@pytest.mark.timeout(900)  # a bound against hangs only: four bridge processes and the simulator share 2 cores
def test_receiver_two_workers_and_all_share_one_database_through_a_kill(pg_url: str, tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    sim_port = free_port()
    sim = subprocess.Popen([BRIDGE, "simulator", "--port", str(sim_port), "--qps", str(QPS),
                            "--token-ttl", str(TOKEN_TTL_S)], cwd=tmp_path, env=env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim_url = f"http://127.0.0.1:{sim_port}"
    try:
        poll(lambda: http_json(sim_url + "/_sim/stats")[0] == 200, 60, 0.1, "simulator")
        receiver, rx_url = start(tmp_path, "receiver", "receiver", pg_url, sim_url)
        both, all_url = start(tmp_path, "all", "all", pg_url, sim_url)
        one, _ = start(tmp_path, "worker1", "worker", pg_url, sim_url)
        two, _ = start(tmp_path, "worker2", "worker", pg_url, sim_url)
        procs += [receiver, both, one, two]

        codes = asyncio.run(post_all([rx_url, all_url], [event(i, "pending", 0) for i in range(APPROVALS)]))
        assert set(codes) == {202}
        poll(lambda: rows(pg_url, "SELECT COUNT(*) FROM jobs WHERE state = 'done'")[0][0] >= 200, 180, 0.05,
             "some jobs done")
        one.send_signal(signal.SIGKILL)  # mid-run: it may hold claimed jobs and deciding leases
        one.wait(10)
        codes = asyncio.run(post_all([rx_url, all_url], [event(i, "approved", 1) for i in range(APPROVALS)]))
        assert set(codes) == {202}
        again, _ = start(tmp_path, "worker1b", "worker", pg_url, sim_url)
        procs.append(again)

        def settled() -> bool:
            open_work = rows(pg_url, "SELECT (SELECT COUNT(*) FROM inbox WHERE NOT processed) + "
                                     "(SELECT COUNT(*) FROM jobs WHERE state <> 'done')")[0][0]
            return open_work == 0
        poll(settled, 400, 0.2, "every event decided and every job done")

        assert rows(pg_url, "SELECT COUNT(*) FROM inbox")[0][0] == 2 * APPROVALS  # 0 lost
        twice = rows(pg_url, "SELECT inbox_id FROM audit GROUP BY inbox_id HAVING COUNT(*) > 1")
        assert twice == []  # no event decided twice
        assert rows(pg_url, "SELECT outcome, COUNT(*) FROM inbox GROUP BY outcome") == [("applied", 2 * APPROVALS)]
        assert rows(pg_url, "SELECT COUNT(*) FROM approvals WHERE status = 'approved'")[0][0] == APPROVALS
        notices = rows(pg_url, "SELECT task_id, state, status_value FROM notices ORDER BY id")
        assert len(notices) == CARDS and all(n[1] == "sent" and n[2] == "已同意" for n in notices)
        for task_id, _, _ in notices:
            code, task = http_json(f"{sim_url}/_sim/tasks/{task_id}")
            assert code == 200 and "已同意" in json.dumps(task, ensure_ascii=False), task
        stats = http_json(sim_url + "/_sim/stats")[1]
        # The simulator stamps calls as it reads them: on a loaded machine a stalled simulator reads several at
        # once, so its 1 s counts (throttled) and the busiest 1.02 s can show a few calls more than bridge started
        # (4 throttled of ~5,300 calls seen at load 9). The bounds allow that jitter and no more; a fleet whose
        # processes each kept the qps alone would show three times it, in every window.
        assert stats["throttled"] <= stats["calls"] // 200, stats
        ok = {call: n - stats["errors_per_call"].get(call, 0) for call, n in stats["per_call"].items()}
        assert CARDS <= ok["asyncsend_v2"] <= CARDS + 1  # at most one repeated send per kill
        assert CARDS <= ok["status_bar_update"] <= CARDS + 1  # and one repeated update
        calls = http_json(sim_url + "/_sim/calls", timeout=60)[1]["calls"]
        rates = {call: most_in_window([c["at"] for c in calls if c["call"] == call], RATE_WINDOW_S)
                 for call in ok if call != "gettoken"}
        assert max(rates.values()) <= QPS + JITTER_CALLS, rates  # the fleet, not each process, keeps the app's qps
        long = {call: most_in_window([c["at"] for c in calls if c["call"] == call], 10 * RATE_WINDOW_S)
                for call in rates}
        assert max(long.values()) <= 10 * QPS + JITTER_CALLS, long  # and over 10 windows, where jitter is ~nothing
        fetched = sorted(at(c["at"]) for c in calls if c["call"] == "gettoken" and c["errcode"] == 0)
        period = TOKEN_TTL_S / 2  # a token is refreshed half its (short) lifetime before it expires
        gaps = [b - a for a, b in itertools.pairwise(fetched)]
        assert fetched and all(g >= period - 1.0 for g in gaps), gaps  # one gettoken per app per token
    finally:
        for proc in [*procs, sim]:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in [*procs, sim]:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

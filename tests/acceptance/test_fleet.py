"""Several `bridge serve` processes on one PostgreSQL database, with the simulator as DingTalk: one receiver,
two workers and one `all` process; 1,000 approvals (1, 3 and 7 recipients), pending then approved, to both
receiving ports; one worker is killed with SIGKILL mid-run and restarted. Every card must end right (已同意 on
the simulator), nothing lost, no event decided twice, repeated sends and updates at most one per kill, the
app's qps per endpoint kept by the delivering processes together, and at most one gettoken per app per token
lifetime.

The rate, and why it is checked this way. What bridge controls is when calls start: every process takes its
start times from one schedule per app and endpoint in PostgreSQL (the `rate_slots` row, see
bridge.dingtalk.fleetlimit). The simulator sees arrivals, stamped when its handler reads them: the start plus
a delay that load stretches (a stalled simulator reads several calls at once and stamps them together), so a
count of arrivals per 1.02 s measures the machine as much as bridge; the old bound (qps + 3 per window and
≤ 0.5% throttled) was a guess about load. A delay only ever makes an arrival later, never earlier, and the
database and the simulator read the same system clock; the checks rest on that:

1. The schedule, exactly. A trigger the test puts on `rate_slots` in its database (nothing in bridge knows
   it) logs every reservation any process made: the first slot and where `next_at` moved, so every slot the
   fleet was granted is known to the µs. Per endpoint at most `qps` of them lie in any 1.02 s.
2. No call without its slot, exactly. Per endpoint and for every moment t, the calls the simulator had
   received by t (throttled ones too) are no more than the slots granted by t + SPREAD_S: the i-th arrival
   is no earlier than the i-th slot less SPREAD_S, the limiter's own allowance for the error of its clock
   offset. And per process: the calls each process that lived to the end made (its /metrics, whatever the
   answer) are no more than the slots its own connections took (the trigger logs each connection's
   application_name, `bridge:PID:…`; the killed worker's count died with it). Load cannot break either (it
   only delays arrivals; a count is a count); a process keeping its own limit (three processes, three times
   the rate) or calling without a slot would. With 1: the fleet's calls came from one schedule, and it keeps
   the app's qps. The cumulative bound is looser than it looks by the slots the limiter drops (a slot reached late is
   dropped, not used: a third of them on this loaded machine), so it catches early starts only where the
   schedule is the limit; a call started late looks like a delayed one, which is what the dropping prevents.
3. The simulator's own count, a second and coarse bound: at most 11 × qps arrivals in any 10.2 s. Those ten
   windows hold at most 10 × qps slots; more can only be calls delayed into them, and one window's worth
   would take a stall of about a second.
The simulator's throttle counter is not checked: under load it counts its own bunched arrivals. Throttled
calls are retried, and the counts of successful sends and updates still see every card once.

Repeats are counted by body: a repeated send or update is a successful call whose body the simulator had
already accepted. A kill between a send reaching DingTalk and its commit repeats it, the repeat is filtered
(143106), the card is orphaned and its next status goes out as a new, distinct card instead of an update
(docs/design.md, orphaned cards): so besides at most one repeat of each, the cards sent may exceed the 1,333
by the sends repeated, and the updates fall short by as many (the old count of all sends failed then).

The token: the simulator logs, with each gettoken it answers, the expiry of the lifetime that answer gave.
Within each such lifetime the whole fleet makes at most one more gettoken, the renewal: bridge renews a short
token at half its lifetime, counted from when the answer arrived, so no lifetime can hold two renewals, while
a process fetching a token of its own would put its call into a lifetime that is renewed anyway.

Load-independent: every wait is a condition polled with a generous bound, never an elapsed time; a loaded
machine makes the run slower, not different. The client timeout is 5 s (it was 2 s: a loaded machine could time
out a send the simulator had accepted, and its retry counted as a repeated send).

Time (the run used to take 97-253 s). Its drain was three drains one after the other: claims go by due time,
so 1,333 queued sends filled every worker slot (each process makes one send at a time, see bridge/worker.py)
and the progress checks and updates waited behind them, each endpoint alone at 48 calls/s. Now the approvals
are posted in chunks, each once the queue of events and sends or updates is short, every approved event two
chunks after its pending one, so sends, checks and updates run together; the app's qps is 100 (the simulator
enforces the same); the processes start together; the schema is migrated in-process; the first progress
check comes after the simulator's 1 s (one getsendprogress per send); the cards are read concurrently."""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bridge.config import SourceConfig
from bridge.dingtalk.client import RATE_WINDOW_S
from bridge.dingtalk.fleetlimit import SPREAD_S
from bridge.secret import Secret
from bridge.sources import signatures
from bridge.store.postgres import PostgresStore
from tests.acceptance.conftest import BRIDGE, env, free_port, http_json, poll

pytestmark = pytest.mark.acceptance

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SOURCE = SourceConfig(name="erp", signature="standard-webhooks", secrets=(Secret(SECRET),))
APPROVALS = 1000  # 1, 3 and 7 recipients in turn: 1,333 cards (7 recipients need two sends of at most 5)
CARDS = sum((1, 1, 2)[i % 3] for i in range(APPROVALS))
QPS = 100  # the app's, for the whole fleet (the simulator enforces it too)
SLOT_US = round((RATE_WINDOW_S + SPREAD_S) / QPS * 1_000_000)  # the schedule's spacing (bridge.dingtalk.fleetlimit)
TOKEN_TTL_S = 10.0  # renewed every 5 s (half the lifetime of a short token): several lifetimes per run
LONG_WINDOWS = 10
CHUNK = 50  # approvals posted at a time ...
BACKLOG = 50  # ... once no more than this many events and sends or updates wait (3 × 32 worker slots)
LAG = 2  # chunks between an approval's pending event and its approved one
KILL_AFTER = 500  # events posted before the kill: early, so the killed worker's leases end before the rest does
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SLOT_LOG = """
CREATE TABLE fleet_test_slots (key TEXT NOT NULL, first_us BIGINT NOT NULL, next_us BIGINT NOT NULL,
                               taker TEXT NOT NULL);
CREATE FUNCTION fleet_test_log_slots() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_test_slots VALUES (NEW.key, CASE WHEN TG_OP = 'INSERT' THEN NEW.touched_at
                                                  ELSE GREATEST(OLD.next_at, NEW.touched_at) END, NEW.next_at,
                                         current_setting('application_name'));
    RETURN NULL;
END $$;
CREATE TRIGGER fleet_test_slots AFTER INSERT OR UPDATE ON rate_slots
    FOR EACH ROW EXECUTE FUNCTION fleet_test_log_slots();
"""
DROP_SLOT_LOG = """
DROP TRIGGER IF EXISTS fleet_test_slots ON rate_slots;
DROP FUNCTION IF EXISTS fleet_test_log_slots();
DROP TABLE IF EXISTS fleet_test_slots;
"""


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
timeout_s = 5.0

[worker]
concurrency = 32
lease_s = 16.0  # more than 3 × timeout_s; the killed worker's jobs come back after it
retry_base_s = 0.05
retry_cap_s = 0.5
poll_interval_s = 0.5
check_delay_s = 1.0  # the simulator's sends are done after 1 s: one progress check each

[[sources]]
name = "erp"
signature = "standard-webhooks"
secret = "{SECRET}"
"""


def launch(work: Path, name: str, role: str, pg_url: str, sim_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = work / f"{name}.toml"
    cfg.write_text(toml(port, pg_url, sim_url), encoding="utf-8")
    with (work / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen([BRIDGE, "serve", "--config", str(cfg), "--role", role, "--log-format", "json",
                                 "--log-level", "warning"], cwd=work, env=env(), stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def ready(proc: subprocess.Popen[bytes], url: str, name: str, work: Path) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            log = (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")
            raise AssertionError(f"{name} exited {proc.returncode}: {log[-2000:]}")
        return bool(http_json(url + "/readyz")[0] == 200)
    poll(up, 120, 0.05, f"{name} ready")


def event(i: int, status: str, minutes: int) -> bytes:
    recipients = [f"user{i}-{k}" for k in range((1, 3, 7)[i % 3])]
    at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return json.dumps({"event_id": f"F-{i}-{status}", "approval_id": f"F-{i}", "status": status,
                       "occurred_at": at.isoformat(), "title": f"采购申请 F-{i}", "recipients": recipients,
                       "url": f"https://erp.example.com/po/{i}"}).encode()


def stream() -> list[bytes]:
    """Every approval's pending event, and its approved one LAG chunks later: sends, checks and updates overlap."""
    chunks = range(0, APPROVALS, CHUNK)
    pending = [[event(i, "pending", 0) for i in range(c, min(c + CHUNK, APPROVALS))] for c in chunks]
    approved = [[event(i, "approved", 1) for i in range(c, min(c + CHUNK, APPROVALS))] for c in chunks]
    out: list[bytes] = []
    for k in range(len(pending) + LAG):
        out += (pending[k] if k < len(pending) else []) + (approved[k - LAG] if k >= LAG else [])
    return out


async def post_all(urls: list[str], bodies: list[bytes], backlog: Callable[[], int]) -> list[int]:
    """POST the bodies in chunks, each once `backlog()` (events undecided plus sends and updates not done) is
    down to BACKLOG: with no deep queue of sends the workers' claims take checks and updates too, so every
    endpoint is busy at once instead of one after the other (claims go by due time; a queue of 1,333 sends
    filled every worker's slots and the run took the three endpoints' times added up)."""
    codes: list[int] = []
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(32)

        async def one(n: int, raw: bytes) -> int:
            headers = {"Content-Type": "application/json",
                       **signatures.sign_headers(SOURCE, raw, datetime.now(UTC))}
            async with sem, http.post(urls[n % len(urls)] + "/webhooks/erp", data=raw, headers=headers) as resp:
                return resp.status

        for first in range(0, len(bodies), CHUNK):
            deadline = time.monotonic() + 120
            while await asyncio.to_thread(backlog) > BACKLOG:  # a condition polled, bounded
                assert time.monotonic() < deadline, f"backlog stuck at {backlog()}"
                await asyncio.sleep(0.02)
            chunk = bodies[first:first + CHUNK]
            codes += await asyncio.gather(*(one(first + n, raw) for n, raw in enumerate(chunk)))
    return codes


async def get_all(urls: list[str]) -> list[tuple[int, Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        sem = asyncio.Semaphore(8)

        async def one(url: str) -> tuple[int, Any]:
            async with sem, http.get(url) as resp:
                return resp.status, await resp.json()

        return await asyncio.gather(*(one(u) for u in urls))


async def migrate(pg_url: str) -> None:
    st = PostgresStore(pg_url, pool_size=1)
    await st.open()  # creates rate_slots, so the slot log is in place before any process takes a slot
    await st.close()


def us(stamp: str) -> int:
    """An ISO time in µs since 1970, exactly (the database's clock_timestamp() is kept in µs too)."""
    return (datetime.fromisoformat(stamp) - EPOCH) // timedelta(microseconds=1)


def most_in_window(times_us: list[int], window_s: float) -> int:
    """The most of `times_us` in any rolling `window_s` seconds (half-open, as DingTalk's seconds are)."""
    times, best, lo, window = sorted(times_us), 0, 0, round(window_s * 1_000_000)
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def logged(work: Path) -> Counter[str]:
    """The warnings and errors the bridge processes logged, by event (what explains a repeated call)."""
    events: Counter[str] = Counter()
    for log in work.glob("*.log"):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events[str(json.loads(line).get("event"))] += 1
            except (ValueError, AttributeError):
                events["(not JSON)"] += 1
    return events


def accepted(calls: list[dict[str, Any]], name: str) -> Counter[str]:
    """The successful calls of one name, counted by their body: a body seen twice is a repeated call."""
    return Counter(json.dumps(c["body"], sort_keys=True, ensure_ascii=False) for c in calls
                   if c["call"] == name and c["errcode"] == 0)


def rows(pg_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute(sql.encode()).fetchall()


def granted_slots(pg_url: str) -> tuple[dict[str, list[int]], Counter[tuple[int, str]]]:
    """Every start slot the fleet's schedule granted, per endpoint, in µs on the database's clock; and how
    many each process took, per endpoint, by pid (its connections are named `bridge:PID:…`)."""
    slots: dict[str, list[int]] = defaultdict(list)
    taken: Counter[tuple[int, str]] = Counter()
    for key, first, nxt, taker in rows(pg_url, "SELECT key, first_us, next_us, taker FROM fleet_test_slots"):
        count, rest = divmod(nxt - first, SLOT_US)
        assert count >= 1 and rest == 0, (key, first, nxt)  # one reservation: `count` slots SLOT_US apart
        call = key.rpartition(":")[2]
        slots[call].extend(first + i * SLOT_US for i in range(count))
        taken[(int(taker.split(":")[1]), call)] += count
    return slots, taken


def calls_made(url: str) -> Counter[str]:
    """The DingTalk calls one bridge process made, per call name, whatever their answer (its /metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    made: Counter[str] = Counter()
    for call, n in re.findall(r'^bridge_dingtalk_calls_total\{[^}]*call="([^"]+)"[^}]*\} (\S+)$', text, re.M):
        made[call] += int(float(n))
    return made


def ahead_of_schedule(arrivals: list[int], slots: list[int]) -> list[tuple[int, int]]:
    """Arrivals that came more than SPREAD_S before the slot they need (the i-th arrival, the i-th slot)."""
    a, s, spread = sorted(arrivals), sorted(slots), round(SPREAD_S * 1_000_000)
    short = [(t, -1) for t in a[len(s):]]  # calls beyond every slot granted
    return [(t, slot) for t, slot in zip(a, s, strict=False) if t + spread < slot] + short


def renewals_per_lifetime(calls: list[dict[str, Any]]) -> dict[str, int]:
    """Per app, the most gettoken calls that fell within one token lifetime, after the call that gave it."""
    answers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for c in calls:
        if c["call"] == "gettoken" and c.get("expires_at"):
            answers[c["query"]["appkey"]].append((us(c["at"]), us(c["expires_at"])))
    most: dict[str, int] = {}
    for app, given in answers.items():
        starts = sorted(t for t, _ in given)
        most[app] = max(bisect.bisect_left(starts, end) - bisect.bisect_right(starts, t) for t, end in given)
    return most


@pytest.mark.timeout(600)  # a bound against hangs only: four bridge processes and the simulator share 2 cores
def test_receiver_two_workers_and_all_share_one_database_through_a_kill(pg_url: str, tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    sim_port = free_port()
    sim = subprocess.Popen([BRIDGE, "simulator", "--port", str(sim_port), "--qps", str(QPS),
                            "--token-ttl", str(TOKEN_TTL_S)], cwd=tmp_path, env=env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim_url = f"http://127.0.0.1:{sim_port}"
    try:
        asyncio.run(migrate(pg_url))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(DROP_SLOT_LOG.encode())
            conn.execute(SLOT_LOG.encode())
        started = [launch(tmp_path, name, role, pg_url, sim_url)
                   for name, role in (("receiver", "receiver"), ("all", "all"), ("worker1", "worker"),
                                      ("worker2", "worker"))]
        procs += [p for p, _ in started]
        poll(lambda: http_json(sim_url + "/_sim/stats")[0] == 200, 60, 0.05, "simulator")
        for (proc, url), name in zip(started, ("receiver", "all", "worker1", "worker2"), strict=True):
            ready(proc, url, name, tmp_path)
        (_, rx_url), (_, all_url), (one, _), _ = started

        def backlog() -> int:
            return int(rows(pg_url, "SELECT (SELECT COUNT(*) FROM inbox WHERE NOT processed) + (SELECT COUNT(*) "
                                    "FROM jobs WHERE state = 'pending' AND kind IN ('send', 'update'))")[0][0])

        bodies = stream()
        codes = asyncio.run(post_all([rx_url, all_url], bodies[:KILL_AFTER], backlog))
        poll(lambda: rows(pg_url, "SELECT COUNT(*) FROM jobs WHERE state = 'done'")[0][0] >= 200, 180, 0.02,
             "some jobs done")
        one.send_signal(signal.SIGKILL)  # mid-run, sending and updating: it may hold claimed jobs and leases
        one.wait(10)
        again, again_url = launch(tmp_path, "worker1b", "worker", pg_url, sim_url)
        procs.append(again)
        codes += asyncio.run(post_all([rx_url, all_url], bodies[KILL_AFTER:], backlog))
        assert set(codes) == {202}
        ready(again, again_url, "worker1b", tmp_path)

        def settled() -> bool:
            open_work = rows(pg_url, "SELECT (SELECT COUNT(*) FROM inbox WHERE NOT processed) + "
                                     "(SELECT COUNT(*) FROM jobs WHERE state <> 'done')")[0][0]
            return bool(open_work == 0)
        poll(settled, 400, 0.1, "every event decided and every job done")

        assert rows(pg_url, "SELECT COUNT(*) FROM inbox")[0][0] == 2 * APPROVALS  # 0 lost
        twice = rows(pg_url, "SELECT inbox_id FROM audit GROUP BY inbox_id HAVING COUNT(*) > 1")
        assert twice == []  # no event decided twice
        assert rows(pg_url, "SELECT outcome, COUNT(*) FROM inbox GROUP BY outcome") == [("applied", 2 * APPROVALS)]
        assert rows(pg_url, "SELECT COUNT(*) FROM approvals WHERE status = 'approved'")[0][0] == APPROVALS
        notices = rows(pg_url, "SELECT task_id, state, status_value FROM notices ORDER BY id")
        assert len(notices) == CARDS and all(n[1] == "sent" and n[2] == "已同意" for n in notices)
        tasks = asyncio.run(get_all([f"{sim_url}/_sim/tasks/{task_id}" for task_id, _, _ in notices]))
        for code, task in tasks:
            assert code == 200 and (task["status_bar"] or {}).get("value") == "已同意", task

        stats = http_json(sim_url + "/_sim/stats")[1]
        ok = {call: n - stats["errors_per_call"].get(call, 0) for call, n in stats["per_call"].items()}
        made = {proc.pid: calls_made(url) for proc, url in [*started, (again, again_url)] if proc is not one}
        calls = http_json(sim_url + "/_sim/calls", timeout=60)[1]["calls"]
        sends, updates = accepted(calls, "asyncsend_v2"), accepted(calls, "status_bar_update")
        repeated = {"sends": sends.total() - len(sends), "updates": updates.total() - len(updates)}
        why = (repeated, stats, logged(tmp_path))
        assert max(repeated.values()) <= 1, why  # at most one repeated send and one repeated update per kill
        resent = len(sends) - CARDS  # a card whose send was repeated into an orphan is sent again, distinct
        assert 0 <= resent <= repeated["sends"] and CARDS - resent <= len(updates) <= CARDS, why
        arrivals: dict[str, list[int]] = defaultdict(list)
        for c in calls:
            arrivals[c["call"]].append(us(c["at"]))
        slots, taken = granted_slots(pg_url)
        scheduled = {call: most_in_window(s, RATE_WINDOW_S) for call, s in slots.items()}
        assert max(scheduled.values()) <= QPS, scheduled  # 1. the one schedule keeps the app's qps
        early = {call: ahead_of_schedule(a, slots.get(call, [])) for call, a in arrivals.items()}
        assert set(arrivals) <= set(slots) and not any(early.values()), early  # 2. every call on its slot
        beyond = {(pid, call): (n, taken[(pid, call)]) for pid, m in made.items() for call, n in m.items()
                  if n > taken[(pid, call)]}
        assert not beyond and sum(map(sum, (m.values() for m in made.values()))) > 0, beyond  # 2. and per process
        long = {call: most_in_window(a, LONG_WINDOWS * RATE_WINDOW_S) for call, a in arrivals.items()}
        assert max(long.values()) <= (LONG_WINDOWS + 1) * QPS, long  # 3. the simulator's count, coarse
        renewed = renewals_per_lifetime(calls)
        assert set(renewed) == {"dingdemoappkey"} and ok["gettoken"] >= 2, (renewed, ok)  # renewed in the run
        assert max(renewed.values()) <= 1, renewed  # one gettoken per app per token lifetime
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
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(DROP_SLOT_LOG.encode())
        except psycopg.Error:
            pass  # the database is the session's, dropped after it anyway

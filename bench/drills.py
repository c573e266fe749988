"""Reliability drills against a real `bridge serve` and simulator: crash, faults, bad input, storage trouble.

Why: "nothing accepted is ever lost" is only worth the drill that tries to break it. Each drill prints its
counts, writes bench/results/drills-<name>.json and fails (exit 1) when a target is missed.
  crash     kill -9 bridge five times during an e2e load (at fixed fractions of the events answered, not at
            times, so a loaded machine changes nothing), restart it each time; compare what each recipient holds
            in the simulator with the 202'd events: lost 0, every recipient's newest card right (green), and
            status-bar repeats at most one per kill for a card (a kill between DingTalk's answer and bridge's
            commit repeats that call: at-least-once, and an update to the same value is harmless), at most
            kills x worker concurrency in all. Orphaned cards (143106 after a lost answer) are counted.
  faults    the simulator fails 20% of calls (5xx, errcode -1, throttling, token errors, timeouts, delays):
            every approval reaches its final green card, nothing dead, retries counted in /metrics.
  badinput  10,000 hostile requests while valid traffic flows: zero 5xx, no crash, nothing invalid stored,
            every valid event accepted.
  storage   the SQLite file's filesystem (a small tmpfs; needs root to mount) fills up mid-run: 503s, never a
            false 202, and recovery by itself when space returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import common

GREEN = "已同意"


def approval_requests(run: str, n: int) -> list[tuple[dict[str, str], bytes]]:
    from datetime import datetime, timedelta

    t0 = datetime.now().astimezone()
    pend = [common.signed(common.event(f"{run}-{i}", "pending", 0, occurred=t0)) for i in range(n)]
    appr = [common.signed(common.event(f"{run}-{i}", "approved", 1, occurred=t0 + timedelta(seconds=1)))
            for i in range(n)]
    return pend + appr


def sim_cards(sim_url: str, run: str) -> dict[str, list[dict[str, Any]]]:
    """Approval id -> the simulator's tasks for it (full task views, oldest first)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tid in common.http_json(sim_url + "/_sim/tasks")["task_ids"]:
        task = common.http_json(f"{sim_url}/_sim/tasks/{tid}")
        title = str(task["msg"].get("oa", {}).get("body", {}).get("title", ""))
        approval = title.removeprefix("采购申请 ")
        if approval.startswith(run):
            out.setdefault(approval, []).append(task)
    return out


def _delivered(task: dict[str, Any]) -> set[str]:
    result = task.get("send_result") or {}
    return set(result.get("read_user_id_list") or ()) | set(result.get("unread_user_id_list") or ())


def verdict(cards: dict[str, list[dict[str, Any]]], approvals: list[str]) -> dict[str, int]:
    """What the recipients hold, physically. `lost`: an approval with a recipient who got no card at all;
    `not_green`: a recipient whose newest card is not green; `stale_cards_left`: older cards a recipient still
    holds that are not green (an orphan's first card, which nobody can update); `extra_sends`: tasks beyond
    one per approval (filtered retries and resends); `updates_repeated`: status-bar updates repeated on one
    card, and `max_repeats_on_a_card`."""
    lost = extra = repeated = most = not_green = stale = 0
    for a in approvals:
        tasks = cards.get(a, [])
        if not tasks:
            lost += 1
            continue
        extra += len(tasks) - 1
        users = {u for t in tasks for u in t["userids"]}
        if any(not any(u in _delivered(t) for t in tasks) for u in users):
            lost += 1
        for u in users:
            held = [t for t in tasks if u in _delivered(t)]
            if held and (held[-1]["status_bar"] or {}).get("value") != GREEN:
                not_green += 1
            stale += sum(1 for t in held[:-1] if (t["status_bar"] or {}).get("value") != GREEN)
        for t in tasks:
            counts = Counter(x["status_value"] for x in t["updates"])
            repeats = sum(c - 1 for c in counts.values() if c > 1)
            repeated += repeats
            most = max(most, repeats)
    return {"lost": lost, "not_green": not_green, "stale_cards_left": stale, "extra_sends": extra,
            "updates_repeated": repeated, "max_repeats_on_a_card": most}


def orphans(db: Path) -> dict[str, int]:
    """Orphaned cards bridge found (notice.orphaned) and new cards it sent for them (notice.resent)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = dict(con.execute("SELECT kind, count(*) FROM journal WHERE kind IN ('notice.orphaned', "
                                "'notice.resent') GROUP BY kind").fetchall())
    finally:
        con.close()
    return {"orphaned": int(rows.get("notice.orphaned", 0)), "resent": int(rows.get("notice.resent", 0))}


async def send_until_accepted(url: str, reqs: list[tuple[dict[str, str], bytes]], conns: int,
                              stop: threading.Event, codes: Counter[int] | None = None) -> Counter[int]:
    """Deliver every request, retrying connection errors and 5xx like a webhook sender does (`codes`, when
    given, is counted into as answers arrive, for another thread to watch progress)."""
    codes = Counter() if codes is None else codes
    it = iter(reqs)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async def worker() -> None:
            for headers, body in it:
                while not stop.is_set():
                    try:
                        async with s.post(url + f"/webhooks/{common.SOURCE}", data=body, headers=headers) as r:
                            await r.read()
                            codes[r.status] += 1
                            if r.status < 500:
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        codes[0] += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(conns)))
    return codes


def wait_drained(db: Path, timeout: float = 900.0) -> None:
    """A bounded poll; the bound is generous because a busy machine may be slow, never because it must wait."""
    common.wait_until(lambda: common.open_work(db) == 0, timeout, 0.2, "bridge to finish its work")


# --- crash ---------------------------------------------------------------------------------------------------
def crash(quick: bool, work: Path) -> tuple[dict[str, Any], dict[str, bool], dict[str, bool]]:
    n = 60 if quick else 2000
    kills = 2 if quick else 5
    run = "C" + uuid.uuid4().hex[:6]
    concurrency = 16
    sim = common.start_simulator(work, qps=0)
    setup = common.BridgeSetup(work, sim.url, qps=100_000, concurrency=concurrency, timeout_s=2)
    bridge = common.start_bridge(setup, timeout=120)
    stop = threading.Event()
    codes: Counter[int] = Counter()
    reqs = approval_requests(run, n)
    t = threading.Thread(target=lambda: asyncio.run(send_until_accepted(bridge.url, reqs, 16, stop, codes)))

    def answered() -> int:
        return sum(c for k, c in list(codes.items()) if 200 <= k < 300)

    try:
        t.start()
        for k in range(1, kills + 1):  # kill at fixed fractions of the load, whatever the machine's speed
            common.wait_until(lambda k=k: answered() >= k * len(reqs) // (kills + 1), 600, 0.01,
                              f"{k}/{kills + 1} of the events answered")
            os.kill(bridge.pid, signal.SIGKILL)
            bridge.popen.wait(30)
            bridge = common.start_bridge(setup, timeout=120)
        t.join(900)
        wait_drained(setup.db_path)
        cards = sim_cards(sim.url, run)
        found = orphans(setup.db_path)
    finally:
        stop.set()
        bridge.stop()
        sim.stop()
    v = verdict(cards, [f"{run}-{i}" for i in range(n)])
    figures = {"approvals": n, "kills": kills, **v, **found,
               "answers": {str(k): c for k, c in sorted(codes.items())}}
    targets = {"lost == 0": v["lost"] == 0, "every recipient's newest card green": v["not_green"] == 0,
               "repeats <= 1 per kill on a card": v["max_repeats_on_a_card"] <= kills,
               "repeats <= kills x concurrency": v["updates_repeated"] <= kills * concurrency}
    return figures, targets, {"every event answered": answered() >= 2 * n}


# --- faults --------------------------------------------------------------------------------------------------
def faults(quick: bool, work: Path) -> tuple[dict[str, Any], dict[str, bool], dict[str, bool]]:
    n = 40 if quick else 500
    run = "F" + uuid.uuid4().hex[:6]
    sim = common.start_simulator(work, qps=0)
    plan = {"rate": 0.2, "kinds": ["http_500", "errcode_-1", "throttle", "token", "timeout", "delay"],
            "seed": 7, "delay_s": 0.2, "timeout_s": 3.0}
    common.http_json(sim.url + "/_sim/faults", plan, method="POST")
    setup = common.BridgeSetup(work, sim.url, qps=100_000, concurrency=16, timeout_s=1.0)
    bridge = common.start_bridge(setup)
    try:
        codes = asyncio.run(send_until_accepted(bridge.url, approval_requests(run, n), 16, threading.Event()))
        wait_drained(setup.db_path)
        cards = sim_cards(sim.url, run)
        found = orphans(setup.db_path)
        stats = common.http_json(sim.url + "/_sim/stats")
        import urllib.request

        with urllib.request.urlopen(bridge.url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        jobs = common.job_counts(setup.db_path)
    finally:
        bridge.stop()
        sim.stop()
    retries = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("bridge_job_retries_total"))
    dead = sum(c for k, c in jobs.items() if k.endswith(":dead"))
    v = verdict(cards, [f"{run}-{i}" for i in range(n)])
    figures = {"approvals": n, **v, **found, "dead": dead, "retries_in_metrics": retries,
               "faults_injected": stats["faults"],
               "answers": {str(k): c for k, c in codes.items()}}
    targets = {"every recipient's newest card green": v["lost"] == 0 and v["not_green"] == 0, "nothing dead": dead == 0,
               "retries counted": retries > 0}
    return figures, targets, {}


# --- bad input -----------------------------------------------------------------------------------------------
def hostile(rng: random.Random, valid_sample: tuple[dict[str, str], bytes], max_body: int
            ) -> tuple[str, dict[str, str], bytes]:
    path = f"/webhooks/{common.SOURCE}"
    kind = rng.randrange(12)
    good_ev = common.event(f"X{kind}-" + uuid.uuid4().hex[:8], "pending", 0)
    if kind == 0:
        body = rng.randbytes(rng.randrange(1, 2000))
        return path, common.signed(body)[0], body
    if kind == 1:
        raw = json.dumps(good_ev).encode()
        body = raw[: rng.randrange(1, len(raw))]
        return path, common.signed(body)[0], body
    if kind == 2:
        depth = rng.choice((100, 1000, 5000, 20000))
        body = (b'{"a":' * depth) + b"1" + (b"}" * depth)
        return path, common.signed(body)[0], body
    if kind == 3:
        ev = dict(good_ev, title="长" * rng.choice((1000, 10000, 20000)))
        h, b = common.signed(ev)
        return path, h, b
    if kind == 4:
        ev = dict(good_ev)
        key = rng.choice(["event_id", "approval_id", "status", "occurred_at", "recipients", "title"])
        # (a null event_id is not hostile: bridge then uses the webhook-id, as documented)
        wrong = [None, 1, [1], {}, {"a": 1}] if key == "recipients" else [1, 1.5, True, [], {}]
        ev[key] = rng.choice(wrong if key == "event_id" else [*wrong, None])
        h, b = common.signed(ev)
        return path, h, b
    if kind == 5:
        h, b = common.signed(dict(good_ev, status=rng.choice(["done", "APPROVED", "批准", "", "pending!"])))
        return path, h, b
    if kind == 6:
        h, b = common.signed(good_ev)
        h = dict(h, **{"webhook-signature": "v1," + "A" * 44})
        return path, h, b
    if kind == 7:  # replayed signature on a different body
        h, _ = valid_sample
        return path, h, json.dumps(good_ev).encode()
    if kind == 8:
        h, b = common.signed(good_ev, ts=int(time.time()) - 3600)
        return path, h, b
    if kind == 9:
        body = b'{"pad":"' + b"x" * (max_body + rng.randrange(1, 100_000)) + b'"}'
        return path, common.signed(body)[0], body
    if kind == 10:
        bad = rng.choice(["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "bench%00", "BENCH", "a" * 300,
                          "bench/../admin", "%2Fetc%2Fpasswd", "bench;rm"])
        h, b = common.signed(good_ev)
        return f"/webhooks/{bad}", h, b
    h, b = common.signed(good_ev)
    drop = rng.choice(["webhook-id", "webhook-timestamp", "webhook-signature"])
    h = {k: v for k, v in h.items() if k != drop}
    return path, h, b


def badinput(quick: bool, work: Path) -> tuple[dict[str, Any], dict[str, bool], dict[str, bool]]:
    n_bad = 500 if quick else 10_000
    n_good = 50 if quick else 1000
    run = "V" + uuid.uuid4().hex[:6]
    rng = random.Random(2026)
    sim = common.start_simulator(work, qps=0)
    setup = common.BridgeSetup(work, sim.url, qps=100_000, concurrency=16)
    bridge = common.start_bridge(setup)
    good = [common.signed(common.event(f"{run}-{i}", "pending", 0)) for i in range(n_good)]
    bad = [hostile(rng, good[0], setup.max_body_bytes) for _ in range(n_bad)]
    codes: Counter[int] = Counter()
    kinds_5xx: list[str] = []

    async def go() -> common.LoadResult:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            async def shoot(path: str, h: dict[str, str], b: bytes) -> None:
                try:
                    async with s.post(bridge.url + path, data=b, headers=h) as r:
                        await r.read()
                        codes[r.status] += 1
                        if r.status >= 500:
                            kinds_5xx.append(f"{r.status} {path[:40]} {b[:40]!r}")
                except (aiohttp.ClientError, TimeoutError):
                    codes[0] += 1

            bad_it = iter(bad)

            async def bad_worker() -> None:
                for p, h, b in bad_it:
                    await shoot(p, h, b)

            good_res = asyncio.create_task(common.load(bridge.url, good, 4))
            await asyncio.gather(*(bad_worker() for _ in range(16)))
            return await good_res

    try:
        good_res = asyncio.run(go())
        alive = bridge.popen.poll() is None
        wait_drained(setup.db_path)
        stored = common.stored_event_ids(setup.db_path)
    finally:
        bridge.stop()
        sim.stop()
    valid_ids = {f"{run}-{i}-pending-0" for i in range(n_good)}
    invalid = sorted(stored - valid_ids)
    invalid_stored = len(invalid)
    if invalid:
        con = __import__("sqlite3").connect(str(setup.db_path))
        examples = [r[0][:300] for e in invalid[:5]
                    for r in con.execute("SELECT event FROM inbox WHERE event_id = ?", (e,))]
        print("stored hostile examples:", *examples, sep="\n  ")
    fives = sum(c for k, c in codes.items() if k >= 500)
    figures = {"hostile": n_bad, "valid": n_good, "hostile_answers": {str(k): c for k, c in sorted(codes.items())},
               "valid_answers": {str(k): c for k, c in good_res.codes.items()}, "5xx": fives,
               "5xx_examples": kinds_5xx[:5], "crashed": not alive, "invalid_stored": invalid_stored,
               "valid_stored": len(stored & valid_ids)}
    targets = {"zero 5xx": fives == 0 and codes.get(0, 0) == 0, "no crash": alive,
               "nothing invalid stored": invalid_stored == 0,
               "valid all accepted": good_res.codes.get(202, 0) == n_good and len(stored & valid_ids) == n_good}
    return figures, targets, {}




# --- storage -------------------------------------------------------------------------------------------------
def storage(quick: bool, work: Path) -> tuple[dict[str, Any], dict[str, bool], dict[str, bool]]:
    mnt = work / "tiny"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True,
                       capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"storage drill skipped: cannot mount a tmpfs ({exc})")
        return {"skipped": "cannot mount tmpfs"}, {}, {}
    run = "S" + uuid.uuid4().hex[:6]
    sim = common.start_simulator(work, qps=0)
    setup = common.BridgeSetup(work, sim.url, qps=100_000, db=str(mnt / "bridge.db"), lease_s=3.0,
                               timeout_s=0.5)
    bridge = common.start_bridge(setup)
    filler = mnt / "filler"
    phases: dict[str, Counter[int]] = {}
    accepted: list[str] = []
    i = 0

    def batch(name: str, count: int) -> None:
        nonlocal i
        reqs = [common.signed(common.event(f"{run}-{k}", "pending", 0)) for k in range(i, i + count)]
        res = asyncio.run(common.load(bridge.url, reqs, 8))
        accepted.extend(f"{run}-{i + k}-pending-0" for k in res.accepted)
        phases.setdefault(name, Counter()).update(res.codes)
        i += count

    try:
        batch("before", 50)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the filesystem to the last byte
        try:
            for size in (1 << 16, 1 << 10, 1):
                try:
                    while os.write(fd, b"\0" * size) == size:
                        pass
                except OSError:
                    pass
        finally:
            os.close(fd)
        for _ in range(10 if quick else 40):
            batch("full", 20)
        alive_full = bridge.popen.poll() is None
        filler.unlink()
        recovered_after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            batch("after", 10)
            if phases["after"].get(202, 0) >= 10:
                recovered_after = round(time.monotonic() - t0, 2)
                break
            time.sleep(0.2)
        try:
            wait_drained(setup.db_path, 20)
        except TimeoutError:
            pass
        open_left = common.open_work(setup.db_path)
        stored = common.stored_event_ids(setup.db_path)
        jobs = common.job_counts(setup.db_path)
    finally:
        bridge.stop()
        sim.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
    false_202 = len(set(accepted) - stored)
    full = phases.get("full", Counter())
    figures = {"phases": {k: {str(c): n for c, n in v.items()} for k, v in phases.items()},
               "false_202": false_202, "recovered_after_s": recovered_after, "alive_while_full": alive_full,
               "accepted": len(accepted), "open_work_after": open_left, "jobs": jobs}
    targets = {"503 while full": full.get(503, 0) > 0, "no false 202": false_202 == 0,
               "no 500": all(c not in (500, 0) for v in phases.values() for c in v),
               "recovers": recovered_after is not None, "alive": alive_full, "work finishes": open_left == 0}
    return figures, targets, {}


DRILLS = {"crash": crash, "faults": faults, "badinput": badinput, "storage": storage}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drill", nargs="*", help=f"any of {', '.join(DRILLS)}, or all (default)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    names = list(DRILLS) if "all" in a.drill or not a.drill else a.drill
    if unknown := [d for d in names if d not in DRILLS]:
        ap.error(f"unknown drill {unknown}; choose from {', '.join(DRILLS)}, all")
    rc = 0
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"bench-drill-{name}-"))
        try:
            figures, targets, functional = DRILLS[name](a.quick, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"drill {name}: {json.dumps(figures, ensure_ascii=False)}")
        common.write_result(f"drills-{name}", {"quick": a.quick, "figures": figures,
                                               "targets": targets})
        # drills are functional checks: a miss fails in quick mode too
        rc |= common.report({}, a.quick, {**targets, **functional})
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

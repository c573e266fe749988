"""The installed `bridge` command, end to end: one `bridge serve --sandbox` per module, the other commands
run beside it as separate processes on the same SQLite file, the cards checked in the embedded simulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge import config
from bridge.sources import signatures
from tests.acceptance.conftest import Proc, Server, http_json, poll, run, start_server

pytestmark = pytest.mark.acceptance

ORANGE, GREEN = ("待审批", "orange", False), ("已同意", "green", False)


def event(approval_id: str, status: str, *, recipients: list[str] | None = None, n: int = 0) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"{approval_id}-{status}-{n}",
        "approval_id": approval_id,
        "status": status,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if recipients:
        ev.update(title=f"采购申请 {approval_id}", recipients=recipients, applicant="张三",
                  url=f"https://erp.example.com/po/{approval_id}")
    return ev


def send(server: Server, ev: dict[str, Any]) -> tuple[int, str]:
    path = server.cwd / f"{ev['event_id']}.json"
    path.write_text(json.dumps(ev, ensure_ascii=False), encoding="utf-8")
    r = server.cli("send", "--source", "demo", "--url", f"{server.url}/webhooks/demo", path.name)
    return r.code, r.stderr + r.stdout


def db_value(server: Server, sql: str, *params: Any) -> Any:
    con = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchone()[0]
    finally:
        con.close()


def idle(server: Server) -> bool:
    return db_value(server, "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')") == 0 and \
        db_value(server, "SELECT count(*) FROM inbox WHERE processed = 0") == 0


def cards(server: Server, userid: str, expected: list[tuple[str, str, bool]], timeout: float = 10.0) -> None:
    poll(lambda: server.bars(userid) == expected, timeout, what=f"{userid}'s cards to be {expected}; "
         f"they are {server.bars(userid)}")


# --- send, status, jobs ------------------------------------------------------------------------------------

def test_send_turns_the_card_orange_then_green_and_status_shows_it(server: Server) -> None:
    code, out = send(server, event("PO-A1", "pending", recipients=["alice", "bob"]))
    assert code == 0 and "HTTP 202" in out and '"accepted"' in out
    cards(server, "alice", [ORANGE])
    code, out = send(server, event("PO-A1", "approved", n=1))
    assert code == 0 and "HTTP 202" in out
    cards(server, "alice", [GREEN])
    cards(server, "bob", [GREEN])
    code, out = send(server, event("PO-A1", "approved", n=1))
    assert code == 0 and "HTTP 200" in out and "duplicate" in out
    poll(lambda: idle(server), what="the worker to finish")

    r = server.cli("status", "demo", "PO-A1")
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("demo/PO-A1  approved  采购申请 PO-A1")
    assert "[已同意] 0xFF78C06E" in r.stdout and "alice,bob" in r.stdout
    assert "\033[" not in r.stdout  # no colours when stdout is not a terminal
    assert "PO-A1-pending-0" in r.stdout and "+1 duplicate deliveries" in r.stdout

    r = server.cli("status", "demo", "PO-A1", "--json")
    assert r.code == 0
    d = r.json()
    assert d["status"] == "approved"
    [n] = d["notices"]
    assert n["status_bar"] == {"value": "已同意", "color": "0xFF78C06E"} and n["userids"] == ["alice", "bob"]
    assert [e["outcome"] for e in d["history"]] == ["applied", "applied"]

    r = server.cli("status", "demo", "PO-NOPE")
    assert r.code == 1 and "no approval 'PO-NOPE'" in r.stderr

    r = server.cli("jobs", "--all", "--json")
    assert r.code == 0
    jobs = r.json()
    mine = [j for j in jobs["jobs"] if j["approval_id"] == "PO-A1"]
    assert sorted(j["kind"] for j in mine) == ["check", "send", "update"]
    assert all(j["state"] == "done" for j in mine)
    r = server.cli("jobs", "--state", "done")
    assert r.code == 0 and "job " in r.stdout and "job(s) in state done" in r.stderr


def test_dead_job_listed_retried_one_and_all(server: Server) -> None:
    code, _ = send(server, event("PO-D1", "pending", recipients=["dave"]))
    assert code == 0
    cards(server, "dave", [ORANGE])
    poll(lambda: idle(server), what="the worker to finish")
    # eight days pass at DingTalk: the card can no longer be updated, so the update dies at once (permanent)
    assert http_json(f"{server.sim_url}/_sim/clock/advance", {"seconds": 8 * 86400})[0] == 200
    code, _ = send(server, event("PO-D1", "approved", n=1))
    assert code == 0
    poll(lambda: db_value(server, "SELECT count(*) FROM jobs WHERE state = 'dead'") == 1, what="a dead job")

    r = server.cli("jobs", "--dead", "--json")
    assert r.code == 0
    [dead] = r.json()["jobs"]
    assert dead["kind"] == "update" and dead["approval_id"] == "PO-D1" and dead["attempts"] == 1
    assert "7 days" in dead["last_error"]
    r = server.cli("jobs", "--dead")
    assert r.code == 0 and f"job {dead['id']}" in r.stdout and "last_error" in r.stdout

    for bad in ([], [str(dead["id"]), "--all-dead"]):
        r = server.cli("retry", *bad)
        assert r.code == 2 and "JOB_ID or --all-dead" in r.stderr
    r = server.cli("retry", "999999")
    assert r.code == 1 and "no job 999999" in r.stderr

    def deaths(n: int) -> None:
        sql = "SELECT count(*) FROM journal WHERE job_id = ? AND kind = 'job.dead'"
        poll(lambda: db_value(server, sql, dead["id"]) == n, what=f"job {dead['id']} dead {n} times")
        poll(lambda: db_value(server, "SELECT state FROM jobs WHERE id = ?", dead["id"]) == "dead", what="dead")

    deaths(1)
    r = server.cli("retry", dead["id"])
    assert r.code == 0 and "1 job(s) put back" in r.stdout
    # the serve process picks it up from the file within its poll interval; DingTalk still refuses: dead again
    deaths(2)
    r = server.cli("retry", "--all-dead", "--json")
    assert r.code == 0 and r.json() == {"retried": 1}
    deaths(3)
    r = server.cli("retry", "--all-dead")
    assert r.code == 0 and "1 job(s)" in r.stdout
    deaths(4)
    r = server.cli("status", "demo", "PO-D1")
    assert r.code == 0 and "1 dead" in r.stdout and "7 days" in r.stdout
    r = server.cli("tail", "--all", "--source", "demo")
    assert r.stdout.count(f"job={dead['id']}") >= 4 and "job.dead" in r.stdout


def test_recall(server: Server) -> None:
    code, _ = send(server, event("PO-R1", "pending", recipients=["rita"]))
    assert code == 0
    cards(server, "rita", [ORANGE])
    poll(lambda: idle(server), what="the worker to finish")
    r = server.cli("recall", "demo", "PO-R1")
    assert r.code == 0 and "recall accepted as event operator-recall-" in r.stdout
    cards(server, "rita", [("待审批", "orange", True)])
    r = server.cli("status", "demo", "PO-R1", "--json")
    assert r.json()["status"] == "recalled"
    r = server.cli("recall", "demo", "PO-NOPE", "--json")
    assert r.code == 1 and "no approval 'PO-NOPE'" in r.stderr


# --- tail and ingest: other processes writing the same file --------------------------------------------------

def test_tail_and_tail_follow_see_what_the_serve_process_writes(server: Server) -> None:
    code, _ = send(server, event("PO-T1", "pending", recipients=["tom"]))
    assert code == 0
    cards(server, "tom", [ORANGE])
    poll(lambda: idle(server), what="the worker to finish")
    r = server.cli("tail", "--all")
    assert r.code == 0 and "demo/PO-T1" in r.stdout and "dingtalk.sent" in r.stdout
    # -n N reads the newest N lines. How many lines the journal holds by now depends on whether the delivery
    # check has run yet, so compare with the whole journal read just before and just after (unchanged between).
    def newest_two() -> bool:
        before = [json.loads(x) for x in server.cli("tail", "--all", "--json").stdout.splitlines()]
        got = [json.loads(x) for x in server.cli("tail", "-n", "2", "--json").stdout.splitlines()]
        after = [json.loads(x) for x in server.cli("tail", "--all", "--json").stdout.splitlines()]
        if before != after:
            return False
        assert len(before) >= 2 and got == before[-2:], (got, before)
        assert all({"kind", "message", "approval_id"} <= set(x) for x in got)
        return True

    poll(newest_two, timeout=120, what="a quiet journal to compare tail -n 2 with")

    follower = Proc.start("tail", "--sandbox", "--sim-port", server.sim_port, "--follow", "--source", "demo",
                          "--interval", "0.1", cwd=server.cwd)
    try:
        follower.wait_line("demo/PO-T1", "dingtalk.sent")  # the last lines first
        mark = follower.mark()
        code, _ = send(server, event("PO-T2", "pending", recipients=["tom"]))
        assert code == 0
        follower.wait_line("event.applied", "demo/PO-T2", since=mark)
        follower.wait_line("dingtalk.sent", "demo/PO-T2", since=mark)
        mark = follower.mark()
        code, _ = send(server, event("PO-T2", "approved", n=1))
        line = follower.wait_line("dingtalk.status_bar_updated", since=mark)
        assert "demo/PO-T2" in line and "已同意" in line and "event=PO-T2-approved-1" in line
        assert all("demo/" in x for x in follower.out)
    finally:
        follower.signal(signal.SIGINT)
        assert follower.wait(10) == 0


def test_ingest_follow_picks_up_appended_lines_and_reports_bad_ones(server: Server) -> None:
    log = server.cwd / "approvals.jsonl"
    good1 = json.dumps(event("PO-I1", "pending", recipients=["ivy"]), ensure_ascii=False)
    log.write_text(good1 + "\n" + "{this is not json\n", encoding="utf-8")
    proc = Proc.start("ingest", "--sandbox", "--sim-port", server.sim_port, "--source", "demo", "--follow",
                      log.name, cwd=server.cwd)
    try:
        bad = proc.wait_line("line 2:", stream="err")
        assert "JSON" in bad
        cards(server, "ivy", [ORANGE])  # the serve process took the event from the file
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event("PO-I1", "approved", n=1)))  # no newline yet: not taken
            f.flush()
            time.sleep(0.3)
            assert db_value(server, "SELECT count(*) FROM inbox WHERE event_id = 'PO-I1-approved-1'") == 0
            f.write("\n" + json.dumps(event("PO-I3", "pending")) + "\n")  # a first event without its card
        cards(server, "ivy", [GREEN])
        missing = proc.wait_line("line 4:", stream="err")
        assert "PO-I3" in missing and "recipients" in missing
    finally:
        proc.signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_ingest_of_a_file_reports_and_fails_on_bad_lines(server: Server) -> None:
    path = server.cwd / "batch.jsonl"
    rows = [json.dumps(event(f"PO-F{i}", "pending", recipients=[f"fay{i}"])) for i in range(3)]
    path.write_text("\n".join([rows[0], rows[1], '{"approval_id": 1}', "", rows[2], rows[0]]) + "\n")
    r = server.cli("ingest", "--source", "demo", "--json", path.name)
    assert r.code == 1
    assert "line 3:" in r.stderr and "6 lines: 3 accepted, 1 duplicates, 1 bad, 1 blank" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["accepted"] == 3 and summary["bad"] == 1 and summary["problems"][0].startswith("line 3:")
    r = server.cli("ingest", "--source", "demo", "-", stdin=(rows[1] + "\n").encode())
    assert r.code == 0 and "1 duplicates" in r.stderr
    r = server.cli("ingest", "--source", "nope", path.name)
    assert r.code == 2 and "no source named 'nope'" in r.stderr


# --- configuration, demo, usage -------------------------------------------------------------------------------

VALID = """
[server]
admin_token = "env:TEST_BRIDGE_ADMIN_TOKEN_UNSET"
[dingtalk]
app_key = "dingabc"
app_secret = "inline-app-secret-1"
agent_id = 42
[[sources]]
name = "erp"
signature = "hmac-sha256"
secret = "erp-webhook-secret-1"
"""


def test_check_config_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "ok.toml").write_text(VALID.replace('admin_token = "env:TEST_BRIDGE_ADMIN_TOKEN_UNSET"\n', ""))
    r = run("check-config", "--config", "ok.toml", cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert "inline-app-secret-1" not in r.stdout + r.stderr and "erp-webhook-secret-1" not in r.stdout
    r = run("check-config", "--config", "ok.toml", "--json", cwd=tmp_path)
    assert r.code == 0 and json.loads(r.stdout)
    (tmp_path / "env.toml").write_text(VALID)
    r = run("check-config", "--config", "env.toml", cwd=tmp_path)
    assert r.code == 2 and "TEST_BRIDGE_ADMIN_TOKEN_UNSET" in r.stderr
    (tmp_path / "bad.toml").write_text("[server\nport = 1\n")
    r = run("check-config", "--config", "bad.toml", cwd=tmp_path)
    assert r.code == 2 and "bad.toml" in r.stderr
    r = run("check-config", cwd=tmp_path)
    assert r.code == 2 and "bridge.toml" in r.stderr


def test_demo_runs_a_whole_life(tmp_path: Path) -> None:
    r = run("demo", cwd=tmp_path, timeout=30)
    assert r.code == 0, r.stderr
    assert "已同意" in r.stdout and "待审批" in r.stdout and "recalled" in r.stdout.lower()
    assert "/console (admin token " in r.stdout and "/_sim/ui" in r.stdout
    assert list(tmp_path.iterdir()) == []  # a temporary database, not one in the cwd


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nosuch"],
        ["status"],
        ["status", "demo"],
        ["jobs", "--state", "zombie"],
        ["jobs", "--limit", "many"],
        ["retry", "abc"],
        ["serve", "--port", "eighty"],
        ["tail", "--lines"],
        ["send", "event.json"],
        ["status", "demo", "PO-1"],  # no --sandbox and no bridge.toml here
        ["send", "--sandbox", "--source", "nope", "event.json"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "event.json").write_text("{}")
    r = run(*args, cwd=tmp_path)
    assert r.code == 2, (args, r.stdout, r.stderr)
    assert r.stderr.strip()  # and says why (argparse usage or "error: ...")


def test_send_to_nothing_listening_exits_1(tmp_path: Path) -> None:
    from tests.acceptance.conftest import free_port

    (tmp_path / "event.json").write_text(json.dumps(event("PO-X", "pending", recipients=["x"])))
    r = run("send", "--sandbox", "--source", "demo", "--url", f"http://127.0.0.1:{free_port()}/webhooks/demo",
            "event.json", cwd=tmp_path)
    assert r.code == 1 and "cannot reach" in r.stderr


# --- graceful shutdown under load ------------------------------------------------------------------------------

async def _post_until_refused(url: str, worker: int, accepted: list[str], stop: asyncio.Event,
                              sent: list[int]) -> None:
    source = config.sandbox("http://127.0.0.1:1", "unused.db").source("demo")
    assert source is not None
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        i = 0
        while True:
            i += 1
            ev = event(f"PO-L{worker}-{i}", "pending", recipients=[f"load{worker}"])
            raw = json.dumps(ev).encode()
            headers = {"Content-Type": "application/json",
                       **signatures.sign_headers(source, raw, datetime.now(UTC))}
            try:
                async with session.post(url, data=raw, headers=headers) as resp:
                    await resp.read()
                    sent[0] += 1
                    if resp.status == 202:
                        accepted.append(ev["event_id"])
                    elif stop.is_set():
                        return
                    else:
                        raise AssertionError(f"unexpected answer {resp.status}")
            except (TimeoutError, aiohttp.ClientError):
                if stop.is_set():
                    return
                raise


async def test_sigterm_under_load_loses_no_accepted_event(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "load")
    accepted: list[str] = []
    stop = asyncio.Event()
    sent = [0]
    try:
        tasks = [asyncio.create_task(_post_until_refused(f"{srv.url}/webhooks/demo", w, accepted, stop, sent))
                 for w in range(6)]
        while sent[0] < 150:
            await asyncio.sleep(0.01)
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
        stop.set()
        srv.proc.signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
        code = await asyncio.to_thread(srv.proc.wait, 15)
        assert code == 0, srv.proc.err[-10:]
        assert time.monotonic() - signalled < 10.0 + 2.0  # within shutdown_timeout_s (10 s) and a margin
    finally:
        srv.proc.stop()
    assert len(accepted) >= 150 // 2
    con = sqlite3.connect(srv.db)
    try:
        stored = {row[0] for row in con.execute("SELECT event_id FROM inbox WHERE source = 'demo'")}
    finally:
        con.close()
    missing = set(accepted) - stored
    assert not missing, f"{len(missing)} accepted events are not in the database: {sorted(missing)[:5]}"
    events_log = [json.loads(line) for line in srv.proc.err if line.startswith("{")]
    names = [e["event"] for e in events_log]
    assert "bridge.stopping" in names and names[-1] == "bridge.stopped"


# --- start-up failures and the sandbox admin token -------------------------------------------------------------

def test_serve_on_a_port_in_use_exits_2_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        (tmp_path / "bridge.toml").write_text(VALID.replace('admin_token = "env:TEST_BRIDGE_ADMIN_TOKEN_UNSET"\n',
                                                            f"port = {port}\n"))
        r = run("serve", "--log-level", "error", cwd=tmp_path, timeout=20)  # a hang fails on the timeout
    assert r.code == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [f"error: cannot listen on 127.0.0.1:{port}: address already in use"], r.stderr
    assert "Traceback" not in r.stderr


def test_sandbox_prints_the_console_and_sim_ui_urls(server: Server) -> None:
    import urllib.request

    console = server.proc.wait_line("console (log in with the token):", stream="err").rsplit(": ", 1)[1].strip()
    sim_ui = server.proc.wait_line("DingTalk inboxes as on a phone:", stream="err").rsplit(": ", 1)[1].strip()
    assert console == f"{server.url}/console" and sim_ui.endswith("/_sim/ui")
    with urllib.request.urlopen(f"{console}/login", timeout=5) as resp:
        assert resp.status == 200 and "管理令牌" in resp.read().decode()
    with urllib.request.urlopen(sim_ui, timeout=5) as resp:
        assert resp.status == 200 and "工作通知" in resp.read().decode()


def test_sandbox_prints_a_random_admin_token_that_opens_the_admin_api(server: Server) -> None:
    line = server.proc.wait_line("sandbox admin token", stream="err")
    token = line.rsplit(": ", 1)[1].strip()
    assert len(token) >= 16
    import urllib.request

    req = urllib.request.Request(f"{server.url}/approvals", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200 and "approvals" in json.loads(resp.read())
    status, answer = http_json(f"{server.url}/approvals")
    assert status == 401 and answer["error"] == "unauthorized"

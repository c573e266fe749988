"""The CLI's commands run in-process (`bridge.cli.main`) against a real SQLite file written by a real worker.

The state is made by the decider and the worker (FakeDingTalk, FakeClock) on the same file the commands
then read and change, as an operator's terminal would beside a running bridge. Fast, and it covers the
text and JSON outputs and the exit codes in detail; tests/acceptance runs the installed command.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge import config, errors, service, store, worker
from bridge.cli import main as cli
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.events import Status
from bridge.store.sqlite import SQLiteStore
from tests.unit.helpers import event

pytestmark = pytest.mark.integration

CONFIG = """
[storage]
path = "state/bridge.db"
[dingtalk]
app_key = "dingabc"
app_secret = "inline-app-secret-77"
agent_id = 42
[worker]
max_attempts = 2
[[sources]]
name = "erp"
signature = "hmac-sha256"
secret = "erp-webhook-secret-77"
"""


@dataclass
class World:
    dir: Path
    cfg_path: Path
    db: Path

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = cli.main([args[0], "--config", str(self.cfg_path), *args[1:]])
        out, err = capsys.readouterr()
        return code, out, err


async def _populate(cfg: config.Config) -> None:
    """PO-1 approved with its update dead (the card still orange), PO-2 approved (green), PO-3 pending."""
    clock = FakeClock()
    st = SQLiteStore(cfg.storage.path)
    await st.open()
    try:
        fake = FakeDingTalk()
        w = worker.Worker(st, fake, cfg, clock, decider=service.Decider(st, cfg, clock))  # type: ignore[arg-type]
        for ev in (event(Status.PENDING, approval_id="PO-1"), event(Status.PENDING, approval_id="PO-2", n=1),
                   event(Status.PENDING, approval_id="PO-3", n=3)):
            await st.add_event(ev, ev.to_json().encode(), clock.now())
        for _ in range(5):
            await w.run(burst=True)
            clock.advance(5)
        fake.fail_next("status_bar_update", errors.PermanentDingTalkError(call="status_bar_update", errcode=40035,
                                                                          errmsg="不合法的参数"))
        for ev in (event(Status.APPROVED, approval_id="PO-1", minutes=5, card=False),
                   event(Status.APPROVED, approval_id="PO-2", minutes=5, card=False)):
            await st.add_event(ev, ev.to_json().encode(), clock.now())
        await st.add_event(event(Status.APPROVED, approval_id="PO-1", minutes=5, card=False),
                           b"{}", clock.now())  # a duplicate delivery
        for _ in range(5):
            await w.run(burst=True)
            clock.advance(5)
    finally:
        await st.close()


@pytest.fixture
def world(tmp_path: Path) -> World:
    cfg_path = tmp_path / "bridge.toml"
    cfg_path.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "state").mkdir()
    cfg = config.load(cfg_path)
    asyncio.run(_populate(cfg))
    return World(tmp_path, cfg_path, Path(cfg.storage.path))


def jobs_in(world: World, state: str) -> list[store.Job]:
    async def main() -> list[store.Job]:
        st = SQLiteStore(world.db)
        await st.open()
        try:
            return await st.list_jobs(state)
        finally:
            await st.close()

    return asyncio.run(main())


def test_status_text_and_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = world.run(capsys, "status", "erp", "PO-2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "erp/PO-2  approved  采购申请 PO-1"
    assert "[已同意] 0xFF78C06E" in out and "→ user01" in out
    assert "Jobs: 0 pending, 0 dead, 3 done" in out
    code, out, _ = world.run(capsys, "status", "erp", "PO-1")
    assert "Jobs: 0 pending, 1 dead, 2 done" in out and "last_error: status_bar_update failed errcode=40035" in out
    assert "PO-1-approved-5  applied  (pending → approved)  +1 duplicate deliveries" in out
    assert "delivery: all delivered" in out
    code, out, _ = world.run(capsys, "status", "erp", "PO-1", "--json")
    d = json.loads(out)
    assert code == 0 and d["status"] == "approved"
    assert d["notices"][0]["status_bar"] == {"value": "待审批", "color": "0xFFFF9D46"}
    [dead] = d["jobs"]["dead"]
    assert dead["kind"] == "update" and "40035" in dead["last_error"]
    code, out, err = world.run(capsys, "status", "erp", "PO-404")
    assert code == 1 and out == "" and "no approval 'PO-404'" in err


def test_jobs_lists_by_state(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = world.run(capsys, "jobs", "--dead")
    assert code == 0
    [line] = out.splitlines()
    assert "update" in line and "dead" in line and "erp/PO-1" in line and "last_error:" in line
    assert "1 job(s) in state dead" in err
    code, out, _ = world.run(capsys, "jobs", "--json")
    answer = json.loads(out)
    assert [j["state"] for j in answer["jobs"]] == ["dead"]  # by default only what needs attention: open and dead
    code, out, _ = world.run(capsys, "jobs", "--all", "--json")
    answer = json.loads(out)
    assert answer["count"] == len(answer["jobs"]) == 8  # 3 sends, 3 checks, 2 updates
    ids = [j["id"] for j in answer["jobs"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    code, out, _ = world.run(capsys, "jobs", "--state", "done", "--limit", "2", "--json")
    assert [j["id"] for j in json.loads(out)["jobs"]] == [j["id"] for j in answer["jobs"] if j["state"] == "done"][:2]


def test_retry_one_and_all(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    [dead] = jobs_in(world, "dead")
    [done, *_] = jobs_in(world, "done")
    code, _, err = world.run(capsys, "retry", str(done.id))
    assert code == 1 and "only dead jobs can be retried" in err
    code, _, err = world.run(capsys, "retry")
    assert code == 2 and "JOB_ID or --all-dead" in err
    code, out, _ = world.run(capsys, "retry", str(dead.id), "--json")
    assert code == 0 and json.loads(out) == {"retried": 1}
    [again] = jobs_in(world, "pending")
    assert again.id == dead.id and again.attempts == 0
    assert jobs_in(world, "dead") == []
    code, out, _ = world.run(capsys, "retry", "--all-dead")
    assert code == 0 and out.startswith("0 job(s) put back")


def test_recall_is_stored_as_an_operator_event(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = world.run(capsys, "recall", "erp", "PO-3", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["status"] == "accepted" and answer["event_id"].startswith("operator-recall-")
    code, out, _ = world.run(capsys, "status", "erp", "PO-3", "--json")
    last = json.loads(out)["history"][-1]
    assert last["event_id"] == answer["event_id"] and last["status"] == "deleted" and last["processed"] is False
    code, _, err = world.run(capsys, "recall", "erp", "PO-404")
    assert code == 1 and "PO-404" in err


def test_tail_text_json_source_and_lines(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = world.run(capsys, "tail", "--all")
    assert code == 0
    assert "dingtalk.sent" in out and "job.dead" in out and "erp/PO-2" in out
    code, out, _ = world.run(capsys, "tail", "--all", "--json")
    every = [json.loads(line) for line in out.splitlines()]
    assert len(every) > 4 and [r["id"] for r in every] == sorted(r["id"] for r in every)
    code, out, _ = world.run(capsys, "tail", "-n", "2", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == every[-2:]
    assert {"job.dead", "dingtalk.status_bar_updated"} <= {r["kind"] for r in every}
    code, out, _ = world.run(capsys, "tail", "--all", "--source", "nope")
    assert code == 0 and out == ""


def test_ingest_reports_bad_lines_and_progress(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    good = [json.dumps({"event_id": f"I-{i}", "approval_id": f"PO-I{i}", "status": "pending",
                        "occurred_at": "2026-11-29T10:00:00+08:00", "title": "采购申请", "recipients": ["u1"],
                        "url": "https://erp.example.com/po/1"}, ensure_ascii=False) for i in range(4)]
    path = world.dir / "events.jsonl"
    path.write_text("\n".join([good[0], good[1], "not json", good[2], good[0], good[3]]) + "\n", encoding="utf-8")
    code, out, err = world.run(capsys, "ingest", "--source", "erp", "--progress-every", "2", "--json", str(path))
    assert code == 1
    assert "line 3: " in err and "… 2 lines:" in err and "6 lines: 4 accepted, 1 duplicates, 1 bad, 0 blank" in err
    assert json.loads(out)["problems"] == [p for p in err.splitlines() if p.startswith("line 3:")]
    code, out, _ = world.run(capsys, "status", "erp", "PO-I3", "--json")
    assert code == 0 and json.loads(out)["history"][0]["processed"] is False


def test_check_config_masks_secrets(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["check-config", "--config", str(world.cfg_path), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "inline-app-secret-77" not in out and "erp-webhook-secret-77" not in out
    assert json.loads(out)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: bridge" in err


def test_status_is_coloured_on_a_terminal_only(world: World, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = world.run(capsys, "status", "erp", "PO-2")
    assert code == 0
    assert "\033[32mapproved\033[0m" in out  # the status word in green
    assert "\033[48;2;120;192;110m" in out and " 已同意 " in out  # the status bar on its own colour
    code, out, _ = world.run(capsys, "status", "erp", "PO-2", "--json")
    assert "\033[" not in out and json.loads(out)["status"] == "approved"


def test_status_alone_needs_the_admin_api_and_says_why(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`bridge status` without an approval reads the running bridge's GET /apps; without a token it cannot."""
    code, _out, err = world.run(capsys, "status")
    assert code == 1 and "admin_token is not set" in err
    code, _out, err = world.run(capsys, "status", "erp")
    assert code == 2 and "give both SOURCE and APPROVAL_ID" in err


def test_status_alone_names_the_address_it_could_not_reach(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.cfg_path.write_text(CONFIG.replace("[storage]", '[server]\nadmin_token = "adm-0123456789abcdef"\n'
                                             "port = 1\n[storage]"), encoding="utf-8")
    code, _out, err = world.run(capsys, "status")
    assert code == 1 and "cannot reach the running bridge at http://127.0.0.1:1/apps" in err

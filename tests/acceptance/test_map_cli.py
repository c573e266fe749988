"""`bridge map` as an integrator runs it: the installed command on a preset source, the payload on stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import run

pytestmark = pytest.mark.acceptance

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CONFIG = """
[server]
host = "127.0.0.1"

[dingtalk]
base_url = "http://127.0.0.1:9"
app_key = "dingdemoappkey"
app_secret = "inline-app-secret-1"
agent_id = 1000001

[[sources]]
name = "jira"
format = "preset:jira"
signature = "none"
[sources.mapping.id_map]
"5b10ac8d82e05b22cc7d4ef5" = "mia"
"""


def test_bridge_map_shows_the_event_and_exits_1_on_problems(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(CONFIG, encoding="utf-8")
    delivery = json.loads((FIXTURES / "presets" / "jira.json").read_text("utf-8"))["deliveries"]["pending"]
    body = json.dumps(delivery["body"]).encode()
    r = run("map", "--source", "jira", "--header", "X-Atlassian-Webhook-Identifier:3401", "-", cwd=tmp_path,
            stdin=body)  # fmt: skip
    assert r.code == 0, r.stderr
    event = json.loads(r.stdout)
    assert (event["event_id"], event["approval_id"], event["status"]) == ("3401", "IT-4", "pending")
    assert event["recipients"] == ["mia"]  # the unmapped approver is dropped and recorded
    assert event["extra"]["unmapped_ids"] == "712020:1a2b3c4d-5e6f-7a8b-9c0d-e1f2a3b4c5d6"

    r = run("map", "--source", "jira", "-", cwd=tmp_path, stdin=b'{"webhookEvent": "jira:issue_updated"}')
    assert r.code == 1 and r.stdout == ""
    assert "issue.key: missing path 'issue.key' (needed for approval_id)" in r.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "bridge.toml"]  # nothing stored

"""End to end with real processes: `bridge simulator --app ... --app ...` serving two DingTalk apps, and
`bridge serve` with two [[dingtalk.apps]] and a source on each. Each source's cards come from its own agent
(the simulator's tasks and call log name it), and `bridge status` shows both apps' figures.

Nothing here depends on timing: every wait is a bounded poll for a state, and no figure is a rate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import BRIDGE, Proc, env, free_port, http_json, poll, run

pytestmark = pytest.mark.acceptance

HR = ("dinghrappkey", "hr-app-secret-0001", 1001)
SALES = ("dingsalesappkey", "sales-app-secret-0002", 2002)
ADMIN = "adm-apps-acceptance-0123456789"

CONFIG = """
[server]
port = {port}
admin_token = "{admin}"
[storage]
path = "bridge.db"
[dingtalk]
base_url = "{sim}"
[[dingtalk.apps]]
name = "hr"
app_key = "{hr_key}"
app_secret = "env:HR_APP_SECRET"
agent_id = {hr_agent}
qps = 5
[[dingtalk.apps]]
name = "sales"
app_key = "{sales_key}"
app_secret = "env:SALES_APP_SECRET"
agent_id = {sales_agent}
[[sources]]
name = "erp"
signature = "none"
app = "hr"
[[sources]]
name = "crm"
signature = "none"
app = "sales"
"""


def event(approval_id: str, userid: str) -> dict[str, object]:
    return ({"event_id": f"{approval_id}-pending", "approval_id": approval_id, "status": "pending",
                       "occurred_at": "2026-12-01T08:00:00+08:00", "title": f"申请 {approval_id}",
                       "recipients": [userid], "url": f"https://erp.example.com/{approval_id}"})


@pytest.mark.timeout(120)
def test_two_sources_on_two_apps_through_real_processes(tmp_path: Path) -> None:
    sim_port, port = free_port(), free_port()
    sim_url, url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{port}"
    apps = [f"--app={k}:{s}:{a}" for k, s, a in (HR, SALES)]
    sim = subprocess.Popen([BRIDGE, "simulator", "--port", str(sim_port), *apps], cwd=tmp_path, env=env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp_path / "bridge.toml").write_text(CONFIG.format(
        port=port, admin=ADMIN, sim=sim_url, hr_key=HR[0], hr_agent=HR[2], sales_key=SALES[0],
        sales_agent=SALES[2]), encoding="utf-8")
    secrets = {"HR_APP_SECRET": HR[1], "SALES_APP_SECRET": SALES[1]}
    serve: Proc | None = None
    try:
        poll(lambda: http_json(sim_url + "/_sim/stats")[0] == 200, 20, 0.1, "simulator")
        assert [a["agent_id"] for a in http_json(sim_url + "/_sim/apps")[1]["apps"]] == [HR[2], SALES[2]]
        checked = run("check-config", "--config", "bridge.toml", cwd=tmp_path, extra_env=secrets)
        assert checked.code == 0, checked.stderr
        assert HR[1] not in checked.stdout and "dingtalk  hr" in checked.stdout and "app=sales" in checked.stdout

        serve = Proc.start("serve", "--config", "bridge.toml", cwd=tmp_path, extra_env=secrets)
        poll(lambda: http_json(url + "/healthz", timeout=1.0)[0] == 200, 20, 0.1, "bridge serve")
        for source, approval, userid in (("erp", "HR-1", "hr01"), ("crm", "CRM-1", "sales01")):
            status, _ = http_json(f"{url}/webhooks/{source}", data=event(approval, userid), method="POST")
            assert status == 202

        def agent_of(userid: str) -> int | None:
            cards = http_json(f"{sim_url}/_sim/inbox/{userid}")[1]["cards"]
            if not cards:
                return None
            return int(http_json(f"{sim_url}/_sim/tasks/{cards[0]['task_id']}")[1]["agent_id"])

        assert poll(lambda: agent_of("hr01"), 20, 0.1, "hr01's card") == HR[2]
        assert poll(lambda: agent_of("sales01"), 20, 0.1, "sales01's card") == SALES[2]
        sends = http_json(f"{sim_url}/_sim/calls?path=asyncsend_v2")[1]["calls"]
        assert sorted(c["body"]["agent_id"] for c in sends) == [HR[2], SALES[2]]

        shown = run("status", "--config", "bridge.toml", cwd=tmp_path, extra_env=secrets)
        assert shown.code == 0, shown.stderr
        assert "app hr  agent 1001" in shown.stdout and "app sales  agent 2002" in shown.stdout
        figures = run("status", "--config", "bridge.toml", "--json", cwd=tmp_path, extra_env=secrets).json()
        by_name = {a["name"]: a for a in figures["apps"]}
        assert by_name["hr"]["token"]["ok"] and by_name["sales"]["token"]["ok"]
        assert by_name["hr"]["sources"] == ["erp"] and by_name["sales"]["sources"] == ["crm"]
        assert by_name["hr"]["calls"] >= 2 and by_name["sales"]["calls"] >= 2  # gettoken and the send, at least
        ready = http_json(url + "/readyz")[1]
        assert set(ready["checks"]["dingtalk_token"]["apps"]) == {"hr", "sales"}
    finally:
        if serve is not None:
            serve.stop()
        sim.terminate()
        sim.wait(10)

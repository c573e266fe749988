"""`bridge status`, run as its own process, shows the DingTalk Stream connection of a running `bridge serve`:
connected while the simulator's gateway is up, not connected (with the reason) once it is gone. The state lives
in the serving process; status asks its admin API (GET /apps carries `streams`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Proc, free_port, http_json, poll, run

pytestmark = pytest.mark.acceptance

ADMIN_TOKEN = "stream-status-admin-token-0123456789"


def _config(tmp_path: Path, port: int, sim_url: str) -> Path:
    path = tmp_path / "stream.toml"
    path.write_text(f'''
[server]
host = "127.0.0.1"
port = {port}
admin_token = "{ADMIN_TOKEN}"

[storage]
path = "{tmp_path / 'bridge.db'}"

[dingtalk]
base_url = "{sim_url}"
app_key = "dingdemoappkey"
app_secret = "demo-app-secret"
agent_id = 1000001

[[sources]]
name = "ding-stream"
format = "dingtalk"
transport = "stream"
client_id = "dingdemoappkey"
client_secret = "demo-app-secret"
gateway_url = "{sim_url}"
notify = "applicant"
''')
    return path


def _streams(tmp_path: Path, cfg: Path) -> list[dict[str, Any]]:
    r = run("status", "--config", cfg, "--json", cwd=tmp_path)
    if r.code != 0:
        return []
    streams: list[dict[str, Any]] = json.loads(r.stdout)["streams"]
    return streams


@pytest.mark.timeout(120)
def test_bridge_status_shows_the_stream_connection_of_the_running_bridge(tmp_path: Path) -> None:
    sim_port, port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = Proc.start("simulator", "--port", sim_port, cwd=tmp_path)
    serve: Proc | None = None
    try:
        poll(lambda: http_json(sim_url + "/_sim/stats")[0] == 200, 20, 0.1, "simulator")
        cfg = _config(tmp_path, port, sim_url)
        serve = Proc.start("serve", "--config", cfg, cwd=tmp_path)
        [up] = poll(lambda: [s for s in _streams(tmp_path, cfg) if s["connected"]], 40, 0.2, "stream connected")
        assert up["source"] == "ding-stream" and up["state"] == "connected" and up["connected_at"]
        text = run("status", "--config", cfg, cwd=tmp_path)
        assert text.code == 0 and "stream ding-stream  connected since" in text.stdout
        assert sim.stop() == 0  # the gateway goes away: the connection drops and cannot be reopened
        [down] = poll(lambda: [s for s in _streams(tmp_path, cfg) if not s["connected"] and s["last_error"]], 40,
                      0.2, "stream down, with the failed reconnect's error")
        assert down["state"] != "connected" and down["connections"] >= 1
        text = run("status", "--config", cfg, cwd=tmp_path)
        assert "stream ding-stream  " in text.stdout and "connected since" not in text.stdout
        assert "last error" in text.stdout
    finally:
        if serve is not None:
            serve.stop()
        sim.stop()

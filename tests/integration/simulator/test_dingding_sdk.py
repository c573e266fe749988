"""PyPI's `dingding-sdk` (0.0.7) as a real client of the simulator on 127.0.0.1: it fetches a token with
appkey/appsecret and sends a work notice with `"dept_id_list": null` in a JSON body (which used to answer 40035),
then reads the progress.

dingding-sdk and dingtalk-sdk both install a top-level `dingtalk` package (and dingding-sdk's `core.py` sits
beside dingtalk-sdk's `core/`, which wins), so dingding-sdk cannot be imported in this process. The test copies
its installed files into a directory of their own and runs the client in a subprocess with that directory
first on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.simulator import server as simulator
from bridge.simulator.state import DEMO_APP

CLIENT = """
import json, sys
from dingtalk import core, message
from dingtalk.dingtalk import DingTalk
core.URL = message.URL = sys.argv[1]  # the library hard-codes https://oapi.dingtalk.com
client = DingTalk(sys.argv[2], sys.argv[3], agentid=int(sys.argv[4]))
task_id = client.workmessage.send_notification({"text": {"content": "报销单 PO-7 待审批"}}, type="text",
                                               userid_list="manager01,user02")
progress = client.workmessage.get_notificatioin_progress(task_id)
print("RESULT " + json.dumps({"task_id": task_id, "progress": progress}))
"""


def _isolated_copy(dest: Path) -> Path:
    try:
        files = importlib.metadata.files("dingding-sdk") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the test extra installs dingding-sdk")
    package = dest / "dingtalk"
    package.mkdir()
    for f in files:
        parts = Path(str(f)).parts
        if len(parts) == 2 and parts[0] == "dingtalk" and parts[1].endswith(".py") and parts[1] != "__init__.py":
            shutil.copy(Path(str(f.locate())), package / parts[1])
    (package / "__init__.py").write_text("")  # the shared __init__.py may be dingtalk-sdk's
    return dest


def _run(path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run([sys.executable, "-c", CLIENT, base_url, DEMO_APP.app_key, DEMO_APP.app_secret,
                           str(DEMO_APP.agent_id)], env=env, cwd=path, capture_output=True, text=True, timeout=60,
                          check=False)


async def test_dingding_sdk_sends_with_a_null_dept_id_list(tmp_path: Path) -> None:
    path = _isolated_copy(tmp_path)
    async with simulator.running() as sim:
        proc = await asyncio.to_thread(_run, path, sim.base_url)
        calls = sim.state.calls(path="/topapi/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    send = next(c for c in calls if c["call"] == "asyncsend_v2")
    assert "dept_id_list" in send["body"] and send["body"]["dept_id_list"] is None  # what the library sends
    assert send["errcode"] == 0 and out["task_id"] in sim.state.tasks
    assert sorted(sim.state.tasks[out["task_id"]].delivered) == ["manager01", "user02"]
    assert set(out["progress"]) == {"progress_in_percent", "status"}

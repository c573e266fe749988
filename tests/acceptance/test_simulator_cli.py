"""`bridge simulator --app KEY:SECRET:AGENT` (repeatable) and `--user USERID:MOBILE[:UNIONID]` (repeatable), seen
from outside: GET /_sim/apps lists the apps (secrets masked), each gets a token, and the directory lookups
know exactly the users given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.conftest import Proc, free_port, http_json, poll, run

pytestmark = pytest.mark.acceptance


def test_apps_and_users_from_the_command_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = Proc.start("simulator", "--port", port, "--app", "dingkeyone:secret-one-1:11",
                     "--app", "dingkeytwo:secret-two-2:22", "--user", "u9:13000000009:union-9",
                     "--user", "u8::union-8", cwd=tmp_path)
    try:
        status, apps = poll(lambda: (r := http_json(url + "/_sim/apps"))[0] == 200 and r, 20, 0.1, "simulator")
        assert [(a["app_key"], a["agent_id"]) for a in apps["apps"]] == [("dingkeyone", 11), ("dingkeytwo", 22)]
        assert all("secret-" not in a["app_secret"] for a in apps["apps"])  # masked
        _, tok = http_json(url + "/gettoken?appkey=dingkeytwo&appsecret=secret-two-2")
        _, demo = http_json(url + "/gettoken?appkey=dingdemoappkey&appsecret=demo-app-secret")
        assert tok["errcode"] == 0 and demo["errcode"] == 40096  # the demo app is replaced, not added to
        token = tok["access_token"]
        _, by_mobile = http_json(f"{url}/topapi/v2/user/getbymobile?access_token={token}", {"mobile": "13000000009"})
        _, by_union = http_json(f"{url}/topapi/user/getbyunionid?access_token={token}", {"unionid": "union-8"})
        _, default_user = http_json(f"{url}/topapi/v2/user/getbymobile?access_token={token}",
                                    {"mobile": "13800138000"})
        assert by_mobile["result"]["userid"] == "u9" and by_union["result"]["userid"] == "u8"
        assert default_user["errcode"] == 60121  # the default directory is replaced too
        _, directory = http_json(url + "/_sim/directory")
        assert directory["employees"] == [{"userid": "u9", "mobile": "13000000009", "unionid": "union-9"},
                                          {"userid": "u8", "mobile": None, "unionid": "union-8"}]
    finally:
        assert sim.stop() == 0


@pytest.mark.parametrize(("flag", "value"), [("--app", "key-only"), ("--app", "k:s:notanumber"),
                                             ("--user", "nomobile"), ("--user", ":13000000000")])
def test_a_malformed_app_or_user_exits_2_naming_the_flag(tmp_path: Path, flag: str, value: str) -> None:
    r = run("simulator", "--port", free_port(), flag, value, cwd=tmp_path)
    assert r.code == 2 and flag in r.stdout + r.stderr


def test_the_directory_from_a_file_plus_users(tmp_path: Path) -> None:
    (tmp_path / "staff.json").write_text(json.dumps({"employees": [
        {"userid": "zhangsan", "mobile": "13800000001", "unionid": None}]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = Proc.start("simulator", "--port", port, "--directory", "staff.json", "--user", "lisi::unionid-ls",
                     cwd=tmp_path)
    try:
        _, directory = poll(lambda: (r := http_json(url + "/_sim/directory"))[0] == 200 and r, 20, 0.1, "simulator")
        assert [e["userid"] for e in directory["employees"]] == ["zhangsan", "lisi"]
    finally:
        assert sim.stop() == 0
    (tmp_path / "bad.json").write_text(json.dumps({"employees": [{"mobile": "1"}]}))
    r = run("simulator", "--port", free_port(), "--directory", "bad.json", cwd=tmp_path)
    assert r.code == 2 and "--directory bad.json" in r.stdout + r.stderr

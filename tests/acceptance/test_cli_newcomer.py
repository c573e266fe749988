"""The papercuts a newcomer hit on the command line (issue 16), each checked on the installed commands in a
subprocess: one-line errors and their exit codes, --sandbox against --config, check-config reporting every
problem at once, gen-secret, dingbridge and `python -m bridge`, --help, tail -n 0, times with their offset,
shell completion.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli.helptext import EXAMPLES, SUMMARIES
from bridge.sources import signatures
from tests.acceptance.conftest import BRIDGE, Proc, Server, env, poll, run

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ENV = ("BRIDGE_ADMIN_TOKEN", "DINGTALK_APP_SECRET", "ERP_WEBHOOK_SECRET", "LEGACY_OA_SECRET",
               "LEGACY_OA_SECRET_OLD", "OA_DINGTALK_SECRET", "OA_FEISHU_SECRET")


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- 1. --sandbox with --config -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["serve", "status", "jobs", "tail", "send"])
def test_sandbox_and_config_together_are_refused_in_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "bridge.toml").write_text("")
    extra = {"status": ["demo", "PO-1"], "send": ["--source", "demo", "x.json"]}.get(command, [])
    r = run(command, "--sandbox", "--config", "bridge.toml", *extra, cwd=tmp_path)
    assert r.code == 2
    line = one_error_line(r.stderr)
    assert "--sandbox" in line and "--config" in line and "not both" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "bridge.toml"]  # nothing started, no database made


# --- 2. check-config and gen-secret ------------------------------------------------------------------------
def test_check_config_names_every_unset_variable_in_one_run(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.example.toml", tmp_path / "bridge.toml")
    r = run("check-config", cwd=tmp_path)
    assert r.code == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    for name in EXAMPLE_ENV:
        assert sum(f"variable {name} is not set" in line for line in errors) == 1, (name, r.stderr)
    assert len(errors) == len(EXAMPLE_ENV) and "7 problems" in r.stderr


def test_check_config_reports_problems_of_several_sections_and_sources(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[server]\nport = "eighty"\n[dingtalk]\napp_key = "k"\napp_secret = "s"\nagent_id = 1\n'
        '[worker]\nconcurrency = "many"\n[colours]\n'
        '[[sources]]\nname = "erp"\nsignature = "hmac"\nsecret = "x"\n'
        '[[sources]]\nname = "oa"\nsignature = "token"\n'
    )
    r = run("check-config", cwd=tmp_path)
    assert r.code == 2
    for needle in ("server.port", "worker.concurrency", "colours", "sources[0].signature", "sources[1].secret"):
        assert needle in r.stderr, (needle, r.stderr)


def test_check_config_summary_shows_each_status_label_and_colour(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.example.toml", tmp_path / "bridge.toml")
    secrets = {name: "a-long-enough-value-for-tests" for name in EXAMPLE_ENV}
    secrets["ERP_WEBHOOK_SECRET"] = run("gen-secret", cwd=tmp_path).stdout.strip()
    r = run("check-config", cwd=tmp_path, extra_env=secrets)
    assert r.code == 0, r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.strip().startswith("statuses")]
    for label, colour in (("待审批", "0xFFFF9D46"), ("已同意", "0xFF78C06E"), ("已拒绝", "0xFFF65E5E"),
                          ("已撤销", "0xFF858E99")):
        assert f"[{label}] {colour}" in line
    assert "\033[" not in r.stdout  # not a terminal: no colour codes


def test_gen_secret_makes_a_fresh_standard_webhooks_secret(tmp_path: Path) -> None:
    first, second = (run("gen-secret", cwd=tmp_path) for _ in range(2))
    assert first.code == second.code == 0
    secret = first.stdout.strip()
    assert secret.startswith("whsec_") and secret != second.stdout.strip()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signatures.decode_whsec(secret)  # what [[sources]] secret accepts
    token = run("gen-secret", "--admin-token", cwd=tmp_path).stdout.strip()
    assert len(token) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", token)


# --- 4. one-line errors and exit codes ---------------------------------------------------------------------
def test_send_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("send", "--sandbox", "--source", "demo", "missing.json", cwd=tmp_path)
    assert r.code == 2
    assert one_error_line(r.stderr) == "error: cannot read 'missing.json': No such file or directory"


def test_ingest_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run("ingest", "--sandbox", "--source", "demo", "missing.jsonl", cwd=tmp_path)
    assert r.code == 2 and "missing.jsonl" in one_error_line(r.stderr)


def test_argparse_errors_are_one_line(tmp_path: Path) -> None:
    r = run("jobs", "--limit", "many", cwd=tmp_path)
    assert r.code == 2 and "--limit" in one_error_line(r.stderr)


# --- 5. names that cannot clash with iproute2 --------------------------------------------------------------
def test_dingbridge_and_python_m_bridge_are_the_same_command(tmp_path: Path) -> None:
    dingbridge = str(Path(BRIDGE).with_name("dingbridge"))
    for command in ([dingbridge], [sys.executable, "-m", "bridge"]):
        r = run("--version", cwd=tmp_path, command=command)
        assert r.code == 0 and r.stdout.startswith("bridge "), (command, r)
        r = run("gen-secret", cwd=tmp_path, command=command)
        assert r.code == 0 and r.stdout.startswith("whsec_")
    r = run("jobs", "--limit", "x", cwd=tmp_path, command=[dingbridge])
    assert r.code == 2 and one_error_line(r.stderr).startswith("dingbridge jobs: error:")


# --- 6. --help -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", sorted(SUMMARIES))
def test_every_command_has_a_description_and_an_example(tmp_path: Path, command: str) -> None:
    r = run(command, "--help", cwd=tmp_path)
    assert r.code == 0
    assert SUMMARIES[command][1:] in r.stdout and "examples:" in r.stdout
    assert EXAMPLES[command].splitlines()[0].strip().split("#")[0].strip() in r.stdout


def test_sandbox_help_names_its_ports_and_sim_port_is_listed(tmp_path: Path) -> None:
    out = re.sub(r"\s+", " ", run("serve", "--help", cwd=tmp_path).stdout)
    assert "127.0.0.1:8080" in out and "127.0.0.1:8789" in out
    assert "--sim-port N with --sandbox: the simulator's port (default: 8789)" in out


def test_help_imports_no_display_or_server_library() -> None:
    """`bridge --help` stays fast: wcwidth, shtab, aiohttp and prometheus_client load only in commands that use them."""
    code = ("import sys; from bridge.cli import main; main.build_parser().format_help(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'wcwidth', 'shtab', 'aiohttp', 'rich', "
            "'prometheus_client', 'structlog', 'aiosqlite'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.strip() == "[]"


# --- 7 and 8. tail -n 0, times with their offset -----------------------------------------------------------
def test_tail_n_0_prints_nothing_and_with_follow_only_new_lines(server: Server) -> None:
    from tests.acceptance.test_cli import event, send

    assert send(server, event("PO-N0", "pending", recipients=["tina"]))[0] == 0
    poll(lambda: "PO-N0" in server.cli("tail", "--source", "demo").stdout, what="PO-N0 in the journal")
    r = server.cli("tail", "-n", "0")
    assert r.code == 0 and r.stdout == ""
    follower = Proc.start("tail", "--sandbox", "--sim-port", server.sim_port, "-n", "0", "-f", "--interval", "0.1",
                          cwd=server.cwd)
    try:
        follower.wait_line("following", stream="err")  # its starting point is fixed: only lines after it
        assert send(server, event("PO-N1", "pending", recipients=["tina"]))[0] == 0
        follower.wait_line("demo/PO-N1", "event.applied")
        assert not any("PO-N0" in line for line in follower.out)
    finally:
        follower.signal(signal.SIGINT)
        assert follower.wait(10) == 0


def test_times_show_in_the_local_zone_with_the_offset_or_in_utc(server: Server) -> None:
    from tests.acceptance.test_cli import event, send

    assert send(server, event("PO-TZ", "pending", recipients=["zoe"]))[0] == 0
    poll(lambda: "PO-TZ" in server.cli("tail", "--source", "demo").stdout, what="PO-TZ in the journal")
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    shanghai = server.cli("tail", "-n", "1", extra_env={"TZ": "Asia/Shanghai"}).stdout
    assert re.match(stamp + r"\+08:00 ", shanghai), shanghai
    utc = server.cli("tail", "-n", "1", "--utc", extra_env={"TZ": "Asia/Shanghai"}).stdout
    assert re.match(stamp + r"\+00:00 ", utc), utc
    status = server.cli("status", "demo", "PO-TZ", extra_env={"TZ": "Asia/Shanghai"}).stdout
    assert "+08:00" in status
    raw = json.loads(server.cli("tail", "-n", "1", "--json", extra_env={"TZ": "Asia/Shanghai"}).stdout)
    assert raw["at"].endswith("+00:00")  # JSON keeps UTC for machines


# --- 9. NO_COLOR ---------------------------------------------------------------------------------------------
def test_no_color_turns_colour_off_even_on_a_terminal(tmp_path: Path) -> None:
    """On a (pseudo-)terminal `check-config` draws each status label on its colour, unless NO_COLOR is set."""
    pty = pytest.importorskip("pty")
    shutil.copy(REPO / "config.example.toml", tmp_path / "bridge.toml")
    secrets = {name: "a-long-enough-value-for-tests" for name in EXAMPLE_ENV}
    secrets["ERP_WEBHOOK_SECRET"] = run("gen-secret", cwd=tmp_path).stdout.strip()

    def on_a_terminal(extra: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.run([BRIDGE, "check-config"], cwd=tmp_path, env={**env(), **secrets, **extra},
                              stdout=follower, stderr=subprocess.PIPE, timeout=30, check=False)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.returncode == 0, proc.stderr
        return b"".join(chunks).decode()

    assert "\033[48;2;255;157;70m" in on_a_terminal({})  # 待审批 on its orange
    assert "\033[" not in on_a_terminal({"NO_COLOR": "1"})


# --- 10. shell completion ------------------------------------------------------------------------------------
def test_completion_scripts_for_bash_and_zsh(tmp_path: Path) -> None:
    bash = run("completion", "bash", cwd=tmp_path)
    assert bash.code == 0 and "check-config" in bash.stdout and "--sandbox" in bash.stdout
    checked = subprocess.run(["bash", "-n"], input=bash.stdout, text=True, capture_output=True, check=False)
    assert checked.returncode == 0, checked.stderr
    zsh = run("completion", "zsh", "--prog", "dingbridge", cwd=tmp_path)
    assert zsh.code == 0 and zsh.stdout.startswith("#compdef dingbridge") and "gen-secret" in zsh.stdout
    if shutil.which("zsh"):
        checked = subprocess.run(["zsh", "-n"], input=zsh.stdout, text=True, capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr
    r = run("completion", "fish", cwd=tmp_path)
    assert r.code == 2

"""`bridge render`: an event file → the card the source would send (JSON; drawn on a terminal), offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main as cli
from bridge.cli import render as render_command
from bridge.cli.present import Style
from bridge.render import TRUNCATED_NOTE
from tests.unit.sources.test_presets import ENV, FIXTURES, deliveries

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[3] / "docs" / "cards.md"
EVENT: dict[str, Any] = {
    "event_id": "ev-1", "approval_id": "PO-2026-0042", "status": "pending", "occurred_at": "2026-11-30T08:00:00Z",
    "title": "采购申请 PO-2026-0042", "recipients": ["manager01"], "applicant": "张三",
    "url": "https://erp.example.com/po/42", "amount": {"num": "12000", "unit": "元"},
    "content": "办公设备采购，请审批。",
    "form": [{"key": "供应商", "value": "上海某某贸易"}, {"key": "金额", "value": "12,000 元"}],
}


@pytest.fixture
def cfg_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The configuration of docs/cards.md's example, with the rest a file needs."""
    monkeypatch.setenv("ERP_WEBHOOK_SECRET", "erp-webhook-secret-0123")
    monkeypatch.delenv("NO_COLOR", raising=False)
    example = DOCS.read_text(encoding="utf-8").split("## Example", 1)[1].split("```toml\n", 1)[1].split("```")[0]
    path = tmp_path / "bridge.toml"
    path.write_text('[dingtalk]\napp_key = "k"\napp_secret = "s"\nagent_id = 1\n' + example +
                    '\n[[sources]]\nname = "dt"\nformat = "dingtalk"\ntoken = "tok-0123"\naes_key = "' + "a" * 43 +
                    '"\napp_key = "dingk"\nnotify = "applicant"\n',
                    encoding="utf-8")
    return str(path)


def write(tmp_path: Path, body: object, name: str = "event.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["render", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_render_prints_the_templated_card_as_json(tmp_path: Path, cfg_path: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--config", cfg_path, "--source", "erp", write(tmp_path, EVENT))
    assert code == 0 and err == ""
    oa = json.loads(out)["oa"]
    assert oa["body"]["title"] == "【采购】采购申请 PO-2026-0042"
    assert [r["key"] for r in oa["body"]["form"]] == ["申请人", "金额（含税）", "供应商", "提交次数"]
    assert oa["message_url"].startswith("dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Ferp.example.com")
    assert oa["status_bar"]["status_value"] == "等待审批"


def test_status_and_generation_show_another_state_and_a_resubmission(tmp_path: Path, cfg_path: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", cfg_path, "--source", "erp", "--status", "approved", "--generation", "3",
                       write(tmp_path, EVENT))
    oa = json.loads(out)["oa"]
    assert code == 0 and oa["status_bar"] == {"status_value": "采购已批准", "status_bg": "0xFF2EA043"}
    assert oa["body"]["content"].endswith("（第 3 次提交）")
    assert {"key": "提交次数", "value": "第 3 次"} in oa["body"]["form"]


def test_on_a_terminal_the_card_is_drawn_before_the_json(tmp_path: Path, cfg_path: str,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = run(capsys, "--config", cfg_path, "--source", "erp", write(tmp_path, EVENT))
    drawing, _, js = out.partition("\n\n")
    assert code == 0 and json.loads(js)["msgtype"] == "oa"
    assert drawing.splitlines()[:4] == ["┌ 审批  (head FF1E7CF7)", "│ 【采购】采购申请 PO-2026-0042",
                                        "│   申请人：张三", "│   金额（含税）：12,000 元"]
    assert "│   12000 元" in drawing and "│ ERP 采购模块 · 张三" in drawing
    assert "└ status bar: [等待审批] 0xFFFF9D46" in drawing and "  message_url:    dingtalk://" in drawing


def test_draw_shows_every_part_and_colours_the_bar() -> None:
    msg = {"msgtype": "oa", "oa": {"message_url": "https://x/1", "head": {"bgcolor": "FF000000", "text": "T"},
                                   "status_bar": {"status_value": "已同意", "status_bg": "0xFF78C06E"},
                                   "body": {"image": "@m", "content": "a\nb"}}}
    text = render_command.draw(msg, Style(colour=True))
    assert "│ a\n│ b" in text and "[image @m]" in text and "\033[48;2;120;192;110m" in text


def test_a_long_event_is_cut_with_a_warning(tmp_path: Path, cfg_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    body = {**EVENT, "content": "很长的说明。" * 300}
    code, out, err = run(capsys, "--config", cfg_path, "--source", "erp", write(tmp_path, body))
    assert code == 0 and json.loads(out)["oa"]["body"]["content"].endswith(TRUNCATED_NOTE)
    assert err.startswith("warning: the card was too long for DingTalk and was shortened: content")


def test_a_mapped_source_renders_its_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pending = deliveries("github")["pending"]
    code, out, err = run(capsys, "--config", str(FIXTURES / "mapping-presets.toml"), "--source", "github",
                         "--header", "X-GitHub-Delivery: d-1", write(tmp_path, pending["body"]))
    assert code == 0, err
    assert json.loads(out)["oa"]["status_bar"]["status_value"] == "待审批"


def test_a_native_dingtalk_source_renders_its_decrypted_callback(tmp_path: Path, cfg_path: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    callback = (FIXTURES / "dingtalk-bpms_instance_change-start.json").read_text(encoding="utf-8")
    code, out, err = run(capsys, "--config", cfg_path, "--source", "dt", write(tmp_path, json.loads(callback)))
    assert code == 0, err
    oa = json.loads(out)["oa"]
    assert oa["body"]["title"] == "报销-测试" and oa["status_bar"]["status_value"] == "待审批"
    assert oa["message_url"] == "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm"


@pytest.mark.parametrize(("args", "body", "expected"), [
    (["--source", "nope"], EVENT, "error: no source named 'nope' in the configuration (configured: erp, dt)"),
    (["--source", "dt"], "[1]", "expected the decrypted callback: a JSON object"),
    (["--source", "erp"], {**EVENT, "status": "done"}, "event.json: invalid event: status:"),
    (["--source", "erp"], "not json", "event.json: "),
    (["--source", "erp", "--generation", "0"], EVENT, "error: --generation must be at least 1, got 0"),
    (["--source", "erp"], {k: v for k, v in EVENT.items() if k != "url"}, "no card can be made: approval "
                                                                          "PO-2026-0042: card data has no url"),
])
def test_every_problem_is_one_line_and_exit_2(tmp_path: Path, cfg_path: str, capsys: pytest.CaptureFixture[str],
                                              args: list[str], body: object, expected: str) -> None:
    raw = write(tmp_path, body) if not isinstance(body, str) else str(tmp_path / "event.json")
    if isinstance(body, str):
        Path(raw).write_text(body, encoding="utf-8")
    code, out, err = run(capsys, "--config", cfg_path, *args, raw)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_a_missing_file_is_one_line(cfg_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", cfg_path, "--source", "erp", "/nonexistent/event.json")
    assert code == 2 and err.startswith("error: cannot read '/nonexistent/event.json'")

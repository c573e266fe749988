"""`bridge map`: a payload file → the canonical event it becomes, or every problem (exit 1), offline (item 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main as cli
from tests.unit.sources.test_presets import ENV, FIXTURES, deliveries

CONFIG = str(FIXTURES / "mapping-presets.toml")


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def write(tmp_path: Path, body: object) -> str:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_map_prints_the_canonical_event_headers_included(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = deliveries("github")["pending"]
    code = cli.main(["map", "--config", CONFIG, "--source", "github", "--header", "X-GitHub-Delivery: d-1",
                     write(tmp_path, pending["body"])])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    event = json.loads(out.out)
    assert (event["event_id"], event["status"], event["recipients"]) == ("d-1", "pending", ["hubot_dt", "monalisa"])
    assert out.err == ""


@pytest.mark.parametrize("header", ["webhook-id", "Svix-Id"])
def test_map_falls_back_to_the_delivery_id_header_as_the_receiver_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str) -> None:
    pending = deliveries("github")["pending"]
    code = cli.main(["map", "--config", CONFIG, "--source", "github", "--header", f"{header}: msg_7",
                     write(tmp_path, pending["body"])])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["event_id"] == "msg_7"


def test_map_names_every_problem_by_the_senders_path_and_exits_1(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    body = deliveries("weaver")["pending"]["body"] | {"src": "bounce", "operatetime": None}
    assert cli.main(["map", "--config", CONFIG, "--source", "weaver", write(tmp_path, body)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: invalid event: 2 problems\n")
    assert "  src/nodetype: unknown status 'bounce/1'" in err
    assert "  templates.occurred_at: {operatetime} matched nothing (needed for occurred_at)" in err

    assert cli.main(["map", "--config", CONFIG, "--source", "weaver", "--json", write(tmp_path, body)]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["error"] == "invalid_event" and len(answer["problems"]) == 2


def test_map_warns_when_a_first_event_would_lack_card_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = deliveries("weaver")["pending"]["body"] | {"operators": []}
    assert cli.main(["map", "--config", CONFIG, "--source", "weaver", write(tmp_path, body)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["status"] == "pending"
    assert "warning: as the first event of approval '80231' this would be refused: operators[*].loginid: " \
           "operators[*].loginid matched nothing" in out.err


def test_map_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = write(tmp_path, {})
    assert cli.main(["map", "--config", CONFIG, "--source", "nope", payload]) == 2
    assert "no source named 'nope'" in capsys.readouterr().err
    assert cli.main(["map", "--config", CONFIG, "--source", "github", "--header", "no-colon", payload]) == 2
    assert "expected NAME:VALUE" in capsys.readouterr().err
    assert cli.main(["map", "--config", CONFIG, "--source", "github", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert cli.main(["map", "--config", CONFIG, "--source", "github", str(tmp_path / "bad.json")]) == 1
    assert "error: invalid JSON at line 1" in capsys.readouterr().err

"""bridge.native: config parsing and validation, encode_request → handle round trips, secrets kept out of sight."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import ConfigError
from bridge.events import Status
from bridge.secret import Secret
from bridge.sources.native import FeishuKeys, NativeConfig, WxKeys, encode_request, handle, parse_config
from tests.unit.sources.native_support import (
    TABLES,
    at,
    config,
    dumps,
    ensure_resolve_secret,
    fixture_bytes,
    fixture_json,
    seeded_rng,
)

NOW = at(1700000000.25)


@pytest.fixture(autouse=True)
def _resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_resolve_secret(monkeypatch)


# ---------------------------------------------------------------- config


def test_dingtalk_config_parses_into_wx_keys() -> None:
    cfg = config("dingtalk")
    assert cfg.platform == "dingtalk"
    assert isinstance(cfg.keys, WxKeys)
    assert cfg.keys.receive_id == "dingsnotzck6pm5veliw"
    assert cfg.keys.token == Secret("123456")
    assert cfg.routing.notify == "applicant"


def test_feishu_encrypt_key_is_optional() -> None:
    cfg = config("feishu", encrypt_key=None)
    assert isinstance(cfg.keys, FeishuKeys)
    assert cfg.keys.encrypt_key is None
    assert cfg.routing.recipients == ("manager01", "manager02")


def test_wecom_config_and_env_secrets() -> None:
    cfg = config("wecom", token="env:WECOM_TOKEN", env={"WECOM_TOKEN": "from-env-token"})
    assert isinstance(cfg.keys, WxKeys)
    assert cfg.keys.token.reveal() == "from-env-token"
    assert cfg.keys.receive_id == "ww1436e0e65a779aee"
    assert cfg.routing.id_map == {"WuJunJie": "ding_wjj"}


@pytest.mark.parametrize("fmt", ["dingtalk", "feishu", "wecom"])
def test_config_repr_hides_every_secret(fmt: str) -> None:
    cfg = config(fmt)
    text = repr(cfg) + str(cfg)
    for key in ("token", "aes_key", "encoding_aes_key", "verification_token", "encrypt_key"):
        if key in TABLES[fmt]:
            assert TABLES[fmt][key] not in text


@pytest.mark.parametrize(
    ("fmt", "overrides", "message"),
    [
        ("dingtalk", {"colour": "red"}, "unknown key(s) for a dingtalk source: colour"),
        ("feishu", {"aes_key": "x"}, "unknown key(s) for a feishu source: aes_key"),
        ("dingtalk", {"token": None}, "token is required"),
        ("dingtalk", {"app_key": None}, "app_key is required"),
        ("dingtalk", {"app_key": ""}, "app_key"),
        ("wecom", {"corp_id": None}, "corp_id is required"),
        ("feishu", {"verification_token": None}, "verification_token is required"),
        ("dingtalk", {"aes_key": "1234567890123456789012345678901234567890"}, "aes_key must be exactly 43"),
        ("wecom", {"encoding_aes_key": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhU+"}, "encoding_aes_key must be"),
        ("dingtalk", {"token": 123456}, "token must be a string"),
        ("dingtalk", {"token": ""}, "token is empty"),
        ("dingtalk", {"notify": None}, "notify is required"),
        ("dingtalk", {"notify": "everyone"}, "notify must be one of"),
        ("dingtalk", {"notify": "fixed"}, "non-empty recipients"),
        ("dingtalk", {"notify": "fixed", "recipients": "u1"}, "recipients must be a list"),
        ("dingtalk", {"notify": "path"}, "recipients_path is required"),
        ("dingtalk", {"notify": "path", "recipients_path": "a..b"}, "dotted path"),
        ("feishu", {"notify": "applicant"}, "name no applicant"),
        ("feishu", {"url_template": None}, "url_template is required for feishu"),
        ("wecom", {"url_template": None}, "url_template is required for wecom"),
        ("wecom", {"id_map": {"a": 1}}, "id_map must be a table"),
        ("wecom", {"id_map_passthrough": "yes"}, "id_map_passthrough must be true or false"),
        ("dingtalk", {"title_template": "审批 {unclosed"}, "title_template: not a valid template"),
        ("dingtalk", {"url_template": "https://x/{0}"}, "plain payload field names"),
        ("dingtalk", {"url_template": "https://x/{a.b}"}, "plain payload field names"),
    ],
)
def test_config_errors_name_the_source_and_the_key(fmt: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"sources\.test-") as info:
        config(fmt, **overrides)
    assert message in str(info.value)
    for value in TABLES[fmt].values():
        if isinstance(value, str) and len(value) > 20 and "{" not in value:
            assert value not in str(info.value)


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a native format"):
        parse_config("canonical", {}, "sources[0]", {})


def test_parse_config_does_not_mutate_the_callers_table() -> None:
    table = dict(TABLES["wecom"])
    parse_config("wecom", table, "sources[2]", {})
    assert table == TABLES["wecom"]


# ---------------------------------------------------------------- round trips


def _round_trip(cfg: NativeConfig, plaintext: bytes) -> Any:
    method, query, headers, body = encode_request(cfg, plaintext, NOW, rng=seeded_rng(11))
    return handle(cfg, "src", method, query, headers, body, NOW, rng=seeded_rng(12))


def test_dingtalk_round_trip() -> None:
    cfg = config("dingtalk")
    method, query, headers, body = encode_request(cfg, b"{}", NOW, nonce="fixednonce")
    assert method == "POST"
    assert query["nonce"] == "fixednonce"
    assert query["timestamp"] == "1700000000250"  # milliseconds, as DingTalk sends them
    assert headers["Content-Type"] == "application/json"
    assert set(json.loads(body)) == {"encrypt"}
    event = _round_trip(cfg, fixture_bytes("native-dingtalk-instance.json")).event
    assert event is not None
    assert event.status is Status.APPROVED
    assert event.title == "报销-测试"


def test_feishu_round_trip_signed_event_and_unsigned_challenge() -> None:
    cfg = config("feishu")
    method, query, headers, body = encode_request(cfg, fixture_bytes("native-feishu-instance.json"), NOW)
    assert (method, query) == ("POST", {})
    assert {"X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce"} <= set(headers)
    event = handle(cfg, "src", method, query, headers, body, NOW).event
    assert event is not None
    assert event.status is Status.APPROVED

    challenge = dumps({"challenge": "c-123", "token": "vt_test_token", "type": "url_verification"})
    method, query, headers, body = encode_request(cfg, challenge, NOW)
    assert "X-Lark-Signature" not in headers  # Feishu does not sign the challenge
    result = handle(cfg, "src", method, query, headers, body, NOW)
    assert result.event is None
    assert json.loads(result.reply.body) == {"challenge": "c-123"}


def test_feishu_round_trip_without_encrypt_key_sends_the_plaintext() -> None:
    cfg = config("feishu", encrypt_key=None)
    plaintext = fixture_bytes("native-feishu-task.json")
    method, query, headers, body = encode_request(cfg, plaintext, NOW)
    assert body == plaintext
    assert "X-Lark-Signature" not in headers
    event = handle(cfg, "src", method, query, headers, body, NOW).event
    assert event is not None
    assert event.status is None


def test_wecom_round_trip_post_and_get() -> None:
    cfg = config("wecom")
    plaintext = fixture_bytes("native-wecom-approval.xml")
    method, query, headers, body = encode_request(cfg, plaintext, NOW)
    assert method == "POST"
    assert query["timestamp"] == "1700000000"  # seconds
    assert b"<AgentID><![CDATA[3010040]]></AgentID>" in body
    event = handle(cfg, "src", method, query, headers, body, NOW).event
    assert event is not None
    assert event.status is Status.PENDING
    assert event.approval_id == "202506110002"

    method, query, headers, body = encode_request(cfg, b"8837562301", NOW)
    assert (method, body) == ("GET", b"")
    result = handle(cfg, "src", method, query, headers, body, NOW)
    assert result.event is None
    assert result.reply.body == b"8837562301"


def test_the_same_plaintext_encodes_differently_but_normalises_identically() -> None:
    cfg = config("dingtalk")
    plaintext = fixture_bytes("native-dingtalk-instance.json")
    first = encode_request(cfg, plaintext, NOW)
    second = encode_request(cfg, plaintext, NOW)
    assert first[3] != second[3]  # a fresh random prefix each time
    events = [handle(cfg, "src", *request, NOW).event for request in (first, second)]
    assert events[0] == events[1]


def test_events_serialise_for_storage() -> None:
    event = _round_trip(config("feishu"), dumps(fixture_json("native-feishu-instance.json"))).event
    assert event is not None
    restored = type(event).from_json(event.to_json())
    assert restored == event
    assert restored.extra == event.extra

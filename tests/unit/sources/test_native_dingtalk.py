"""DingTalk HTTP-push callbacks through bridge.native.handle: handshakes, events, status table, refusals."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bridge.errors import MalformedPayload, SignatureInvalid
from bridge.events import Status
from bridge.sources.native import NativeResult, encode_request, handle
from bridge.sources.native import crypto as nc
from tests.unit.sources.native_support import (
    at,
    config,
    dumps,
    ensure_resolve_secret,
    fixture_bytes,
    fixture_json,
    seeded_rng,
)
from tests.unit.sources.test_native_crypto import D_A, D_C, D_D, D_E_ENCRYPT

NOW = at(1663143335.6)


@pytest.fixture(autouse=True)
def _resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_resolve_secret(monkeypatch)


def _send(payload: dict[str, Any] | bytes, now: Any = NOW, **cfg_overrides: Any) -> NativeResult:
    cfg = config("dingtalk", **cfg_overrides)
    plaintext = payload if isinstance(payload, bytes) else dumps(payload)
    method, query, headers, body = encode_request(cfg, plaintext, now, rng=seeded_rng(7))
    return handle(cfg, "dt", method, query, headers, body, now, rng=seeded_rng(99))


def _assert_success_reply(result: NativeResult, token: str, aes_key: str, receive_id: str) -> None:
    assert result.reply.status == 200
    assert result.reply.content_type == "application/json"
    reply = json.loads(result.reply.body)
    assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert reply["msg_signature"] == nc.wx_signature(token, reply["timeStamp"], reply["nonce"], reply["encrypt"])
    assert nc.wx_decrypt(nc.wx_key(aes_key), reply["encrypt"], receive_id) == b"success"


def test_check_url_handshake_official_vector_gets_encrypted_success() -> None:
    cfg = config("dingtalk", token=D_A["token"], aes_key=D_A["aes_key"], app_key=D_A["receive_id"])
    query = {"msg_signature": D_A["signature"], "timestamp": D_A["timestamp"], "nonce": D_A["nonce"]}
    body = json.dumps({"encrypt": D_A["encrypt"]}).encode()
    result = handle(cfg, "dt", "POST", query, {}, body, at(1608001896.9))
    assert result.event is None
    _assert_success_reply(result, D_A["token"], D_A["aes_key"], D_A["receive_id"])
    assert json.loads(result.reply.body)["timeStamp"] == "1608001896900"  # ms, camelCase key


def test_legacy_suite_handshake_with_legacy_query_names() -> None:
    cfg = config("dingtalk", token=D_C["token"], aes_key=D_C["aes_key"], app_key=D_C["receive_id"])
    query = {"signature": D_C["signature"], "timeStamp": D_C["timestamp"], "nonce": D_C["nonce"]}
    result = handle(cfg, "dt", "POST", query, {}, json.dumps({"encrypt": D_C["encrypt"]}).encode(),
                    at(1445827045.0))
    assert result.event is None
    _assert_success_reply(result, D_C["token"], D_C["aes_key"], D_C["receive_id"])


def test_d_e_approval_event_vector_becomes_an_approved_event() -> None:
    query = {"msg_signature": "00b7246a6fe6c8b3aba4c54b034c7181062fb424", "timestamp": "1663143335600",
             "nonce": "nonce123"}
    result = handle(config("dingtalk"), "dt", "POST", query, {"Content-Type": "application/json"},
                    json.dumps({"encrypt": D_E_ENCRYPT}).encode(), NOW)
    _assert_success_reply(result, D_D["token"], D_D["aes_key"], D_D["receive_id"])
    event = result.event
    assert event is not None
    assert (event.source, event.event_id, event.approval_id) == ("dt", "c7c7120f2c0741900ebdba0318c8",
                                                                  "9Qgx5QqjR7axMw01")
    assert event.status is Status.APPROVED
    assert event.raw_status == "finish/agree"
    assert event.occurred_at == at(1663143335.567)
    assert event.title == "报销-测试"
    assert event.url == "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm"
    assert event.applicant == "manager75"
    assert event.recipients == ("manager75",)
    assert event.unresolved is None
    assert event.extra["corp_id"] == "dingcorp0001"
    assert event.extra["business_id"] == "202209141615000123"


def test_instance_fixture_matches_the_d_e_plaintext_byte_for_byte() -> None:
    key = nc.wx_key(D_D["aes_key"])
    assert nc.wx_encrypt(key, fixture_bytes("native-dingtalk-instance.json"), D_D["receive_id"],
                         b"0123456789abcdef") == D_E_ENCRYPT


@pytest.mark.parametrize(
    ("kind", "result", "status"),
    [
        ("start", None, Status.PENDING),
        ("finish", "agree", Status.APPROVED),
        ("finish", "refuse", Status.REJECTED),
        ("terminate", None, Status.REVOKED),
        ("delete", None, Status.DELETED),
    ],
)
def test_instance_status_table(kind: str, result: str | None, status: Status) -> None:
    payload = fixture_json("native-dingtalk-instance.json") | {"type": kind}
    payload.pop("result")
    if result:
        payload["result"] = result
    event = _send(payload).event
    assert event is not None
    assert event.status is status
    assert event.note is None


def test_finish_with_an_unknown_result_changes_nothing() -> None:
    event = _send(fixture_json("native-dingtalk-instance.json") | {"result": "redirect"}).event
    assert event is not None
    assert event.status is None
    assert "finish/redirect" in (event.note or "")


def test_task_change_is_recorded_without_a_status() -> None:
    event = _send(fixture_json("native-dingtalk-task.json")).event
    assert event is not None
    assert event.status is None
    assert event.approval_id == "9Qgx5QqjR7axMw01"
    assert event.event_id == "f1e2d3c4b5a6978800112233"
    assert "task" in (event.note or "")
    assert event.extra["corp_id"] == "dingcorp0001"  # legacy lowercase corpId
    assert event.recipients == ()


def test_other_event_types_are_recorded_without_a_status() -> None:
    event = _send({"EventType": "user_add_org", "UserId": ["u1"], "TimeStamp": "1663143335000"}).event
    assert event is not None
    assert event.status is None
    assert "user_add_org" in (event.note or "")


def test_duplicate_deliveries_get_the_same_event_id() -> None:
    payload = fixture_json("native-dingtalk-instance.json")
    first, second = _send(payload).event, _send(payload, now=at(1663143340.0)).event
    assert first is not None and second is not None
    assert first.event_id == second.event_id
    del payload["eventId"]
    assert _send(payload).event.event_id == "1663143335567"  # type: ignore[union-attr]
    del payload["BizId"]
    assert _send(payload).event.event_id == "9Qgx5QqjR7axMw01:finish"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("drop", "kind", "expected_ms"),
    [
        ((), "finish", 1663143335567),
        (("EventTime",), "finish", 1663143335000),
        (("EventTime",), "start", 1663143300000),
        (("EventTime", "finishTime"), "terminate", 1663143300000),
    ],
)
def test_occurred_at_fallbacks(drop: tuple[str, ...], kind: str, expected_ms: int) -> None:
    payload = fixture_json("native-dingtalk-instance.json") | {"type": kind}
    for key in drop:
        del payload[key]
    event = _send(payload).event
    assert event is not None
    assert event.occurred_at == at(expected_ms / 1000)


def test_title_and_url_come_from_the_payload_else_the_templates() -> None:
    payload = fixture_json("native-dingtalk-instance.json")
    templated = {"title_template": "审批 {businessId}", "url_template": "https://erp.example/a/{processInstanceId}"}
    event = _send(payload, **templated).event
    assert event is not None
    assert (event.title, event.url) == ("报销-测试", "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm")
    del payload["title"], payload["url"]
    event = _send(payload, **templated).event
    assert event is not None
    assert (event.title, event.url) == ("审批 202209141615000123", "https://erp.example/a/9Qgx5QqjR7axMw01")


def test_a_template_field_missing_from_the_payload_is_unresolved_not_a_crash() -> None:
    payload = fixture_json("native-dingtalk-instance.json")
    del payload["url"]
    event = _send(payload, url_template="https://erp.example/{missingField}").event
    assert event is not None
    assert event.status is Status.APPROVED
    assert event.url is None
    assert "missingField" in (event.unresolved or "")


def test_applicant_missing_is_unresolved() -> None:
    payload = fixture_json("native-dingtalk-instance.json")
    del payload["staffId"]
    event = _send(payload).event
    assert event is not None
    assert event.recipients == ()
    assert event.unresolved == "notify = 'applicant' but this dingtalk payload names no applicant"


def test_tampered_body_is_refused() -> None:
    cfg = config("dingtalk")
    method, query, headers, body = encode_request(cfg, fixture_bytes("native-dingtalk-instance.json"), NOW)
    encrypt = json.loads(body)["encrypt"]
    tampered = json.dumps({"encrypt": ("B" if encrypt[0] != "B" else "C") + encrypt[1:]}).encode()
    with pytest.raises(SignatureInvalid, match="msg_signature"):
        handle(cfg, "dt", method, query, headers, tampered, NOW)


def test_wrong_token_and_missing_signature_are_refused() -> None:
    method, query, headers, body = encode_request(config("dingtalk"), b'{"EventType":"check_url"}', NOW)
    with pytest.raises(SignatureInvalid) as info:
        handle(config("dingtalk", token="another-token"), "dt", method, query, headers, body, NOW)
    assert "another-token" not in str(info.value)
    with pytest.raises(SignatureInvalid, match="msg_signature"):
        handle(config("dingtalk"), "dt", method, {"timestamp": query["timestamp"], "nonce": query["nonce"]}, headers,
               body, NOW)


def test_wrong_receive_id_is_malformed() -> None:
    method, query, headers, body = encode_request(config("dingtalk", app_key="dingotherapp"), b'{"EventType":"x"}', NOW)
    with pytest.raises(MalformedPayload, match="wrong receive id"):
        handle(config("dingtalk"), "dt", method, query, headers, body, NOW)


def _signed(encrypt: str) -> tuple[dict[str, str], bytes]:
    timestamp, nonce = "1663143335600", "n0nce"
    query = {"msg_signature": nc.wx_signature(D_D["token"], timestamp, nonce, encrypt), "timestamp": timestamp,
             "nonce": nonce}
    return query, json.dumps({"encrypt": encrypt}).encode()


def test_bad_padding_under_a_valid_signature_is_malformed() -> None:
    key = nc.wx_key(D_D["aes_key"])
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    plain = b"0123456789abcdef" + b"\x00\x00\x00\x02{}" + D_D["receive_id"].encode()
    plain += b"\x00" * (64 - len(plain))  # pad byte 0: invalid
    query, body = _signed(base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode())
    with pytest.raises(MalformedPayload, match="bad padding"):
        handle(config("dingtalk"), "dt", "POST", query, {}, body, NOW)


def test_truncated_ciphertext_under_a_valid_signature_is_malformed() -> None:
    query, body = _signed(base64.b64encode(base64.b64decode(D_E_ENCRYPT)[:-5]).decode())
    with pytest.raises(MalformedPayload, match="truncated"):
        handle(config("dingtalk"), "dt", "POST", query, {}, body, NOW)


@pytest.mark.parametrize("unit", ["ms", "s"])
def test_stale_timestamps_are_refused_in_either_unit(unit: str) -> None:
    cfg = config("dingtalk")
    method, query, headers, body = encode_request(cfg, b'{"EventType":"check_url"}', NOW)
    if unit == "s":  # re-sign with a 10-digit timestamp
        query["timestamp"] = str(int(NOW.timestamp()))
        encrypt = json.loads(body)["encrypt"]
        query["msg_signature"] = nc.wx_signature(D_D["token"], query["timestamp"], query["nonce"], encrypt)
    assert handle(cfg, "dt", method, query, headers, body, at(NOW.timestamp() + 299)).event is None
    with pytest.raises(SignatureInvalid, match="stale"):
        handle(cfg, "dt", method, query, headers, body, at(NOW.timestamp() + 301))
    with pytest.raises(SignatureInvalid, match="stale"):
        handle(cfg, "dt", method, query, headers, body, at(NOW.timestamp() - 31), tolerance_s=30)


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", b""), ("POST", b"not json"), ("POST", b"[1]"), ("POST", b'{"encrypt": 5}')],
)
def test_unreadable_requests_are_malformed(method: str, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        handle(config("dingtalk"), "dt", method, {"msg_signature": "a", "timestamp": "1", "nonce": "n"}, {}, body,
               NOW)


def test_decrypted_plaintext_that_is_not_json_is_malformed() -> None:
    query = {"msg_signature": D_D["signature"], "timestamp": D_D["timestamp"], "nonce": D_D["nonce"]}
    with pytest.raises(MalformedPayload, match="not valid JSON"):  # D-D decrypts to the bare word "success"
        handle(config("dingtalk"), "dt", "POST", query, {}, json.dumps({"encrypt": D_D["encrypt"]}).encode(),
               at(1614767836))


def test_an_absurd_event_time_falls_back_instead_of_crashing() -> None:
    payload = fixture_json("native-dingtalk-instance.json") | {"EventTime": "99999999999999999999"}
    event = _send(payload).event
    assert event is not None
    assert event.occurred_at == at(1663143335.0)  # finishTime

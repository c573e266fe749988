"""Feishu callbacks through bridge.native.handle: challenges, signatures over the raw body, status table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import MalformedPayload, SignatureInvalid
from bridge.events import Status
from bridge.sources.native import NativeResult, encode_request, handle
from tests.unit.sources.native_support import (
    at,
    config,
    dumps,
    ensure_resolve_secret,
    fixture_bytes,
    fixture_json,
    seeded_rng,
)
from tests.unit.sources.test_native_crypto import F_B_ENCRYPT, F_C_ENCRYPT, F_C_SIGNATURE

NOW = at(1666079208.5)
F_C_HEADERS = {
    "X-Lark-Request-Timestamp": "1666079208",
    "X-Lark-Request-Nonce": "a1b2c3d4",
    "X-Lark-Signature": F_C_SIGNATURE,
}


@pytest.fixture(autouse=True)
def _resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_resolve_secret(monkeypatch)


def _send(payload: dict[str, Any], now: Any = NOW, **cfg_overrides: Any) -> NativeResult:
    cfg = config("feishu", **cfg_overrides)
    method, query, headers, body = encode_request(cfg, dumps(payload), now, rng=seeded_rng(3))
    return handle(cfg, "fs", method, query, headers, body, now)


def test_plain_challenge_without_signature_headers_is_answered() -> None:
    body = b'{"challenge":"ajls384kdjx98XX","token":"vt_test_token","type":"url_verification"}'
    for cfg in (config("feishu"), config("feishu", encrypt_key=None)):
        result = handle(cfg, "fs", "POST", {}, {"Content-Type": "application/json"}, body, NOW)
        assert result.event is None
        assert result.reply.status == 200
        assert json.loads(result.reply.body) == {"challenge": "ajls384kdjx98XX"}


def test_encrypted_challenge_f_b_is_answered_in_plain_json() -> None:
    body = json.dumps({"encrypt": F_B_ENCRYPT}).encode()
    result = handle(config("feishu"), "fs", "POST", {}, {}, body, NOW)
    assert result.event is None
    assert result.reply.body == b'{"challenge":"ajls384kdjx98XX"}'


def test_challenge_with_the_wrong_token_is_refused() -> None:
    body = b'{"challenge":"c","token":"not_the_token","type":"url_verification"}'
    with pytest.raises(SignatureInvalid, match="verification_token") as info:
        handle(config("feishu"), "fs", "POST", {}, {}, body, NOW)
    assert "vt_test_token" not in str(info.value)


def test_f_c_approval_instance_vector_becomes_an_approved_event() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    result = handle(config("feishu"), "fs", "POST", {}, F_C_HEADERS, body, NOW)
    assert result.reply.status == 200
    assert json.loads(result.reply.body) == {"msg": "success"}
    event = result.event
    assert event is not None
    assert event.event_id == "bc447199585340d1f3728d26b1c0297a"  # the envelope uuid, never event.uuid
    assert event.approval_id == "81D31358-93AF-92D6-7425-01A5D67C4E71"
    assert event.status is Status.APPROVED
    assert event.raw_status == "APPROVED"
    assert event.occurred_at == at(1666079207.003)
    assert event.title == "飞书审批 81D31358-93AF-92D6-7425-01A5D67C4E71"
    assert event.url == "https://applink.feishu.cn/client/approval?instanceCode=81D31358-93AF-92D6-7425-01A5D67C4E71"
    assert event.recipients == ("manager01", "manager02")
    assert event.extra["approval_code"] == "7C468A54-8745-2245-9675-08B7C63E7A85"


def test_signature_headers_are_case_insensitive() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    lowered = {k.lower(): v for k, v in F_C_HEADERS.items()}
    assert handle(config("feishu"), "fs", "POST", {}, lowered, body, NOW).event is not None


def test_a_reserialised_body_fails_the_signature() -> None:
    body = b'{"encrypt": "' + F_C_ENCRYPT.encode() + b'"}'
    with pytest.raises(SignatureInvalid, match="X-Lark-Signature"):
        handle(config("feishu"), "fs", "POST", {}, F_C_HEADERS, body, NOW)


def test_an_event_without_signature_headers_is_refused_when_encrypted() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    with pytest.raises(SignatureInvalid, match="without X-Lark-Signature"):
        handle(config("feishu"), "fs", "POST", {}, {}, body, NOW)


def test_wrong_encrypt_key_fails_the_signature_it_keys() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    with pytest.raises(SignatureInvalid, match="X-Lark-Signature does not match"):
        handle(config("feishu", encrypt_key="other key"), "fs", "POST", {}, F_C_HEADERS, body, NOW)


def test_a_signed_body_is_verified_before_it_is_decrypted() -> None:
    flipped = F_C_ENCRYPT[:40] + ("A" if F_C_ENCRYPT[40] != "A" else "B") + F_C_ENCRYPT[41:]
    body = b'{"encrypt":"' + flipped.encode() + b'"}'
    with pytest.raises(SignatureInvalid, match="does not match"):  # not "bad padding": no padding oracle
        handle(config("feishu"), "fs", "POST", {}, F_C_HEADERS, body, NOW)


def test_an_unsigned_body_that_does_not_decrypt_gets_one_answer_whatever_the_cause() -> None:
    body = b'{"encrypt":"' + F_B_ENCRYPT.encode() + b'"}'
    with pytest.raises(MalformedPayload, match="does not decrypt to JSON") as wrong_key:
        handle(config("feishu", encrypt_key="other key"), "fs", "POST", {}, {}, body, NOW)
    garbled = F_B_ENCRYPT[:30] + ("A" if F_B_ENCRYPT[30] != "A" else "B") + F_B_ENCRYPT[31:]
    with pytest.raises(MalformedPayload) as bad_block:
        handle(config("feishu"), "fs", "POST", {}, {}, b'{"encrypt":"' + garbled.encode() + b'"}', NOW)
    assert str(bad_block.value) == str(wrong_key.value)


def test_encrypted_body_without_an_encrypt_key_configured_is_malformed() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    with pytest.raises(MalformedPayload, match="no encrypt_key"):
        handle(config("feishu", encrypt_key=None), "fs", "POST", {}, F_C_HEADERS, body, NOW)


def test_timestamp_tolerance_applies_only_when_the_header_is_present() -> None:
    body = b'{"encrypt":"' + F_C_ENCRYPT.encode() + b'"}'
    with pytest.raises(SignatureInvalid, match="stale"):
        handle(config("feishu"), "fs", "POST", {}, F_C_HEADERS, body, at(1666079208 + 301))
    plain = fixture_bytes("native-feishu-instance.json")
    late = at(1666079208 + 7 * 3600)  # a 6-hour retry, unsigned: no header, no tolerance
    assert handle(config("feishu", encrypt_key=None), "fs", "POST", {}, {}, plain, late).event is not None


def test_plain_events_are_authenticated_by_their_token() -> None:
    cfg = config("feishu", encrypt_key=None)
    plain = fixture_json("native-feishu-instance.json")
    event = handle(cfg, "fs", "POST", {}, {}, dumps(plain), NOW).event
    assert event is not None
    assert event.status is Status.APPROVED
    with pytest.raises(SignatureInvalid):
        handle(cfg, "fs", "POST", {}, {}, dumps(plain | {"token": "forged"}), NOW)
    with pytest.raises(SignatureInvalid):
        handle(cfg, "fs", "POST", {}, {}, dumps({k: v for k, v in plain.items() if k != "token"}), NOW)


def test_the_token_inside_an_encrypted_event_is_checked_too() -> None:
    payload = fixture_json("native-feishu-instance.json") | {"token": "forged"}
    with pytest.raises(SignatureInvalid, match="verification_token"):
        _send(payload)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("PENDING", Status.PENDING),
        ("OVERTIME_RECOVER", Status.PENDING),
        ("APPROVED", Status.APPROVED),
        ("REJECTED", Status.REJECTED),
        ("OVERTIME_CLOSE", Status.REJECTED),
        ("CANCELED", Status.REVOKED),
        ("REVERTED", Status.REVOKED),
        ("DELETED", Status.DELETED),
    ],
)
def test_instance_status_table(raw: str, status: Status) -> None:
    payload = fixture_json("native-feishu-instance.json")
    payload["event"]["status"] = raw
    event = _send(payload).event
    assert event is not None
    assert event.status is status
    assert event.raw_status == raw


def test_reverted_is_revoked_and_flagged_with_an_int_operate_time() -> None:
    payload = fixture_json("native-feishu-instance.json")
    payload["event"] |= {"status": "REVERTED", "operate_time": 1666079999123}
    event = _send(payload).event
    assert event is not None
    assert event.status is Status.REVOKED
    assert event.extra["revoked_after_approval"] == "true"
    assert "AFTER approval" in (event.note or "")
    assert event.occurred_at == at(1666079999.123)


def test_unknown_instance_status_changes_nothing() -> None:
    payload = fixture_json("native-feishu-instance.json")
    payload["event"]["status"] = "SOMETHING_NEW"
    event = _send(payload).event
    assert event is not None
    assert event.status is None
    assert "SOMETHING_NEW" in (event.note or "")


def test_occurred_at_falls_back_to_instance_operate_time_then_ts() -> None:
    payload = fixture_json("native-feishu-instance.json")
    payload["event"] |= {"operate_time": "", "instance_operate_time": "1666079100000"}
    assert _send(payload).event.occurred_at == at(1666079100.0)  # type: ignore[union-attr]
    del payload["event"]["operate_time"], payload["event"]["instance_operate_time"]
    assert _send(payload).event.occurred_at == at(1666079207.7171419)  # type: ignore[union-attr]


def test_task_events_are_recorded_without_a_status() -> None:
    event = _send(fixture_json("native-feishu-task.json")).event
    assert event is not None
    assert event.status is None
    assert event.event_id == "0f6a1e2d3c4b5a69788796a5b4c3d2e1"
    assert event.approval_id == "81D31358-93AF-92D6-7425-01A5D67C4E71"
    assert "TRANSFERRED" in (event.note or "")
    assert event.recipients == ()


def test_duplicates_share_the_envelope_uuid_and_event_uuid_is_ignored() -> None:
    payload = fixture_json("native-feishu-instance.json")
    first = _send(payload).event
    payload["event"]["uuid"] = "something-else"
    second = _send(payload, now=at(1666079220)).event
    assert first is not None and second is not None
    assert first.event_id == second.event_id == "bc447199585340d1f3728d26b1c0297a"
    del payload["uuid"]
    with pytest.raises(MalformedPayload, match="uuid"):
        _send(payload)


def test_id_map_path_and_unresolved_recipients() -> None:
    payload = fixture_json("native-feishu-instance.json")
    payload["event"]["notify_open_ids"] = ["ou_123", "ou_456"]
    path = {"notify": "path", "recipients_path": "event.notify_open_ids", "recipients": None}
    event = _send(payload, **path, id_map={"ou_123": "ding_u123"}).event
    assert event is not None
    assert event.recipients == ("ding_u123",)
    assert event.unresolved is None
    assert event.extra["unmapped_ids"] == "ou_456"

    event = _send(payload, **path, id_map={}).event
    assert event is not None
    assert event.recipients == ()
    assert event.unresolved == "id_map has no DingTalk userid for feishu user ou_123, ou_456"
    assert event.status is Status.APPROVED  # still returned, never dropped

    event = _send(payload, **path, id_map_passthrough=True).event
    assert event is not None
    assert event.recipients == ("ou_123", "ou_456")


def test_templates_render_event_fields_and_report_missing_ones() -> None:
    payload = fixture_json("native-feishu-instance.json")
    event = _send(payload, title_template="飞书审批 {instance_code} ({status})",
                  pc_url_template="https://www.feishu.cn/approval/{approval_code}/{instance_code}").event
    assert event is not None
    assert event.title == "飞书审批 81D31358-93AF-92D6-7425-01A5D67C4E71 (APPROVED)"
    assert event.pc_url == ("https://www.feishu.cn/approval/7C468A54-8745-2245-9675-08B7C63E7A85/"
                            "81D31358-93AF-92D6-7425-01A5D67C4E71")
    event = _send(payload, title_template="{applicant_name}").event
    assert event is not None
    assert event.title is None
    assert event.unresolved == "title_template needs field 'applicant_name', which this feishu payload lacks"


def test_templates_never_see_the_verification_token() -> None:
    event = _send(fixture_json("native-feishu-instance.json"), title_template="{token}").event
    assert event is not None
    assert event.title is None
    assert "token" in (event.unresolved or "")


def test_v2_envelopes_are_token_checked_and_change_nothing() -> None:
    payload = {
        "schema": "2.0",
        "header": {"event_id": "5e3702a84e847582be8db7fb012345678", "event_type": "contact.user.created_v3",
                   "create_time": "1666079207003", "token": "vt_test_token", "app_id": "cli_test"},
        "event": {"object": {"open_id": "ou_1"}},
    }
    event = _send(payload).event
    assert event is not None
    assert event.status is None
    assert event.event_id == "5e3702a84e847582be8db7fb012345678"
    assert event.occurred_at == at(1666079207.003)
    assert "contact.user.created_v3" in (event.note or "")
    payload["header"]["token"] = "forged"
    with pytest.raises(SignatureInvalid):
        _send(payload)

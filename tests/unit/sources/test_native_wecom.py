"""WeCom callbacks through bridge.native.handle: GET echostr, sys_approval_change, XML refusals."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import MalformedPayload, SignatureInvalid
from bridge.events import Status
from bridge.sources.native import NativeResult, encode_request, handle
from bridge.sources.native import crypto as nc
from tests.unit.sources.native_support import WC_TABLE, at, config, ensure_resolve_secret, fixture_bytes, seeded_rng
from tests.unit.sources.test_native_crypto import W_AB, W_B_ENCRYPT, W_E_ENCRYPT

NOW = at(1571732273.4)
W_E_QUERY = {"msg_signature": "b01d1635dd523d36cf550f6191a69f7508802c11", "timestamp": "1571732273",
             "nonce": "1597212914"}
W_A_ECHOSTR = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
W_F_ECHOSTR = "BDXwBah1UBgzbW/KNrMgV6t+8IWooW/vwL7NxUeSQu1TBcwJIw+Nxjv5UIadLYWZTmNxJnvAvPdkCrWoMhw0fA=="
W_E_BODY = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName><AgentID><![CDATA[3010040]]></AgentID>"
    f"<Encrypt><![CDATA[{W_E_ENCRYPT}]]></Encrypt></xml>"
).encode()


@pytest.fixture(autouse=True)
def _resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_resolve_secret(monkeypatch)


def _send(plaintext: bytes, now: Any = NOW, **cfg_overrides: Any) -> NativeResult:
    cfg = config("wecom", **cfg_overrides)
    method, query, headers, body = encode_request(cfg, plaintext, now, rng=seeded_rng(5))
    return handle(cfg, "wc", method, query, headers, body, now)


def _approval(sp_status: str = "1", change: str = "1", create_time: str = "1571732272") -> bytes:
    xml = fixture_bytes("native-wecom-approval.xml").decode()
    xml = xml.replace("<SpStatus>1</SpStatus><TemplateId>", f"<SpStatus>{sp_status}</SpStatus><TemplateId>")
    xml = xml.replace("<StatuChangeEvent>1<", f"<StatuChangeEvent>{change}<")
    return xml.replace("<CreateTime>1571732272<", f"<CreateTime>{create_time}<").encode()


@pytest.mark.parametrize(
    ("query", "now", "reply"),
    [
        pytest.param({"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "timestamp": "1476416373",
                      "nonce": "47744683",
                      "echostr": W_A_ECHOSTR},
                     at(1476416374), b"1288432023552776189", id="W-A"),
        pytest.param({"msg_signature": "88080caa2cbf5c66bca496b7d0e09eaf43c70520", "timestamp": "1571732300",
                      "nonce": "99887766",
                      "echostr": W_F_ECHOSTR},
                     at(1571732300), b"4868163428351249637", id="W-F"),
    ],
)
def test_get_echostr_is_answered_with_the_bare_plaintext(query: dict[str, str], now: Any, reply: bytes) -> None:
    result = handle(config("wecom"), "wc", "GET", query, {}, b"", now)
    assert result.event is None
    assert result.reply.status == 200
    assert result.reply.content_type == "text/plain"
    assert result.reply.body == reply  # no quotes, no newline


def test_get_echostr_with_a_bad_signature_is_refused() -> None:
    query = {"msg_signature": "0" * 40, "timestamp": "1571732300", "nonce": "99887766",
             "echostr": W_F_ECHOSTR}
    with pytest.raises(SignatureInvalid):
        handle(config("wecom"), "wc", "GET", query, {}, b"", at(1571732300))


def test_w_e_approval_change_vector_becomes_an_approved_event() -> None:
    result = handle(config("wecom"), "wc", "POST", W_E_QUERY, {"Content-Type": "text/xml"}, W_E_BODY, NOW)
    assert result.reply.status == 200
    assert result.reply.body == b""
    event = result.event
    assert event is not None
    assert event.event_id == "ww1436e0e65a779aee:202506110001:2:1571732272"
    assert event.approval_id == "202506110001"
    assert event.status is Status.APPROVED
    assert event.raw_status == "2"
    assert event.occurred_at == at(1571732272)
    assert event.applicant == "WuJunJie"
    assert event.recipients == ("ding_wjj",)  # through id_map
    assert event.title == "示例模板"
    assert event.url == "https://work.weixin.qq.com/approval/202506110001"
    assert event.extra["statu_change_event"] == "2"


@pytest.mark.parametrize(
    ("sp_status", "status"),
    [("1", Status.PENDING), ("2", Status.APPROVED), ("10", Status.APPROVED), ("3", Status.REJECTED),
     ("4", Status.REVOKED), ("6", Status.REVOKED), ("7", Status.DELETED)],
)
def test_sp_status_table(sp_status: str, status: Status) -> None:
    event = _send(_approval(sp_status=sp_status, change="2")).event
    assert event is not None
    assert event.status is status
    assert event.raw_status == sp_status
    assert ("revoked_after_approval" in event.extra) is (sp_status == "6")


def test_status_comes_from_sp_status_not_from_the_change_event() -> None:
    event = _send(_approval(sp_status="1", change="2")).event  # one approver of several agreed
    assert event is not None
    assert event.status is Status.PENDING


@pytest.mark.parametrize("change", ["4", "5", "10", "15"])
def test_reminders_comments_and_transfers_change_nothing(change: str) -> None:
    event = _send(_approval(sp_status="1", change=change)).event
    assert event is not None
    assert event.status is None
    assert "unchanged" in (event.note or "")
    assert event.event_id == f"ww1436e0e65a779aee:202506110002:{change}:1571732272"


def test_unknown_sp_status_changes_nothing() -> None:
    event = _send(_approval(sp_status="9")).event
    assert event is not None
    assert event.status is None
    assert "'9'" in (event.note or "")


def test_duplicates_get_the_same_event_id_and_new_changes_a_new_one() -> None:
    first = _send(_approval()).event
    again = _send(_approval(), now=at(1571732280)).event
    later = _send(_approval(sp_status="2", change="2", create_time="1571732400"), now=at(1571732400)).event
    assert first is not None and again is not None and later is not None
    assert first.event_id == again.event_id == "ww1436e0e65a779aee:202506110002:1:1571732272"
    assert later.event_id != first.event_id


def test_non_approval_messages_change_nothing() -> None:
    cfg = config("wecom")
    query = {"msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "timestamp": "1476422779",
             "nonce": "1597212914"}
    body = f"<xml><ToUserName><![CDATA[{W_AB['receive_id']}]]></ToUserName><Encrypt><![CDATA[{W_B_ENCRYPT}]]>" \
           "</Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    event = handle(cfg, "wc", "POST", query, {}, body.encode(), at(1476422780)).event
    assert event is not None
    assert event.status is None
    assert event.event_id == "ww1436e0e65a779aee:msg:1456453720"


def test_recipients_path_walks_repeated_elements_and_maps_ids() -> None:
    event = _send(_approval(), notify="path", recipients_path="ApprovalInfo.SpRecord.Details.Approver.UserId",
                  id_map={"LiSi": "ding_lisi", "WangWu": "ding_wangwu", "ZhaoLiu": "ding_zhaoliu"}).event
    assert event is not None
    assert event.recipients == ("ding_lisi", "ding_wangwu", "ding_zhaoliu")
    assert event.unresolved is None


def test_unmapped_applicant_is_unresolved_unless_passthrough() -> None:
    event = _send(_approval(), id_map={}).event
    assert event is not None
    assert event.status is Status.PENDING
    assert event.recipients == ()
    assert event.unresolved == "id_map has no DingTalk userid for wecom user WuJunJie"
    event = _send(_approval(), id_map={}, id_map_passthrough=True).event
    assert event is not None
    assert event.recipients == ("WuJunJie",)


def test_fixed_recipients_are_dingtalk_userids_as_given() -> None:
    event = _send(_approval(), notify="fixed", recipients=["finance01"], id_map={}).event
    assert event is not None
    assert event.recipients == ("finance01",)


def test_title_template_uses_approval_info_fields() -> None:
    event = _send(_approval(), title_template="{SpName} #{SpNoStr} ({applicant})").event
    assert event is not None
    assert event.title == "报销审批 #202506110002 (WuJunJie)"


@pytest.mark.parametrize(
    "declaration",
    ['<!DOCTYPE xml [<!ENTITY lol "lol">]>', '<!doctype xml SYSTEM "file:///etc/passwd">', '<!ENTITY x "y">'],
)
def test_xml_declarations_are_refused_in_the_outer_body(declaration: str) -> None:
    body = declaration.encode() + W_E_BODY
    with pytest.raises(MalformedPayload, match="DOCTYPE or ENTITY"):
        handle(config("wecom"), "wc", "POST", W_E_QUERY, {}, body, NOW)


def test_xml_declarations_are_refused_in_the_decrypted_plaintext() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>' + \
        _approval().replace(b"<SpName><![CDATA[", b"<SpName>&b;<![CDATA[")
    with pytest.raises(MalformedPayload, match="DOCTYPE or ENTITY"):
        _send(bomb)


def test_tampered_encrypt_is_refused() -> None:
    body = W_E_BODY.replace(b"<![CDATA[/K4x", b"<![CDATA[/K5x")
    with pytest.raises(SignatureInvalid):
        handle(config("wecom"), "wc", "POST", W_E_QUERY, {}, body, NOW)
    padded = W_E_BODY.replace(b"<![CDATA[/K4x", b"<![CDATA[ /K4x")  # whitespace changes the signed text
    with pytest.raises(SignatureInvalid):
        handle(config("wecom"), "wc", "POST", W_E_QUERY, {}, padded, NOW)


def test_wrong_corp_id_is_malformed() -> None:
    with pytest.raises(MalformedPayload, match="wrong receive id"):
        handle(config("wecom", corp_id="wwsomeoneelse"), "wc", "POST", W_E_QUERY, {}, W_E_BODY, NOW)


def test_stale_timestamp_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="stale"):
        handle(config("wecom"), "wc", "POST", W_E_QUERY, {}, W_E_BODY, at(1571732273 + 301))


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", b"not xml"), ("POST", b"<xml><ToUserName>x</ToUserName></xml>"), ("PUT", b""), ("GET", b"")],
)
def test_unreadable_requests_are_malformed(method: str, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        handle(config("wecom"), "wc", method, dict(W_E_QUERY), {}, body, NOW)


def test_truncated_ciphertext_under_a_valid_signature_is_malformed() -> None:
    echostr = "BDXwBah1UBgzbW/KNrMgV6t+8IWooW/vwL7NxUeSQu1TBcwJ"
    query = {"msg_signature": nc.wx_signature(WC_TABLE["token"], "1571732300", "n", echostr),
             "timestamp": "1571732300", "nonce": "n", "echostr": echostr}
    with pytest.raises(MalformedPayload, match="truncated"):
        handle(config("wecom"), "wc", "GET", query, {}, b"", at(1571732300))


def test_utf16_xml_cannot_hide_a_declaration_from_the_check() -> None:
    body = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE xml [<!ENTITY e "x">]>'
            + W_E_BODY.decode()).encode("utf-16")
    with pytest.raises(MalformedPayload, match="not UTF-8 XML"):
        handle(config("wecom"), "wc", "POST", W_E_QUERY, {}, body, NOW)

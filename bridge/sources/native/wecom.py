"""WeCom (企业微信) app callbacks: URL verification (GET echostr) and `sys_approval_change` events (POST XML).

Why it exists: a self-built WeCom app with the 审批状态通知事件 switch on pushes approval status changes to
bridge, encrypted with the WX-family scheme; this module verifies and decrypts them, normalises
`sys_approval_change` into an `ApprovalEvent` (status from `ApprovalInfo/SpStatus`, never from
`StatuChangeEvent`), and produces the plain replies WeCom expects.

- GET `?msg_signature&timestamp&nonce&echostr`: signature over echostr (already URL-decoded once by the
  framework), decrypt, reply the plaintext as text/plain with no quotes and no newline.
- POST `<xml><ToUserName/><AgentID/><Encrypt/></xml>`: signature over the Encrypt text exactly, decrypt with the
  receive id `corp_id` (a suite id for third-party suites, "" for personal-subject apps), reply 200 empty.
- XML with a DOCTYPE or ENTITY declaration (outer body or decrypted plaintext) is refused before parsing.
- Timestamps are unix seconds, checked against the tolerance.

Templates see the envelope's scalar fields (`ToUserName`, `CreateTime`, `AgentID`, ...) and `ApprovalInfo`'s
(`SpNoStr`, `SpNo`, `SpName`, `SpStatus`, `TemplateId`, `ApplyTime`, `StatuChangeEvent`) plus `approval_id`
and `applicant`. `recipients_path` is walked from the children of `<xml>`, e.g.
`ApprovalInfo.SpRecord.Details.Approver.UserId`. WeCom userids go through `id_map`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from bridge.errors import MalformedPayload
from bridge.events import ApprovalEvent, Status
from bridge.sources.native import crypto as nc
from bridge.sources.native.common import (
    NativeConfig,
    NativeResult,
    Reply,
    WxKeys,
    card_event_fields,
    from_epoch,
    parse_xml,
    resolve_card,
    scalars,
    wx_keys,
    wx_verify_decrypt,
    xml_to_dict,
)

SP_STATUS: dict[str, Status] = {
    "1": Status.PENDING,
    "2": Status.APPROVED,
    "10": Status.APPROVED,  # 已支付: paid, after approval
    "3": Status.REJECTED,
    "4": Status.REVOKED,
    "6": Status.REVOKED,  # 通过后撤销: revoked after approval
    "7": Status.DELETED,
}
# StatuChangeEvent values that leave SpStatus as it was
NO_CHANGE_EVENTS: dict[str, str] = {"4": "transfer (转审)", "5": "reminder (催办)", "10": "comment (添加备注)",
                                    "15": "hand-over (转交)"}
EMPTY_OK = Reply(200, "text/plain", b"")


def _verify(keys: WxKeys, query: Mapping[str, str], encrypt: str, now: datetime, tolerance_s: int) -> bytes:
    return wx_verify_decrypt(keys, "wecom", query.get("msg_signature"), query.get("timestamp"), query.get("nonce"),
                             encrypt, now, tolerance_s)


def handle(
    cfg: NativeConfig,
    source: str,
    method: str,
    query: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    tolerance_s: int,
) -> NativeResult:
    keys = wx_keys(cfg)
    verb = method.upper()
    if verb == "GET":
        echostr = query.get("echostr")
        if not echostr:
            raise MalformedPayload("wecom URL verification without echostr")
        plaintext = _verify(keys, query, echostr, now, tolerance_s)
        return NativeResult(reply=Reply(200, "text/plain", plaintext), event=None)
    if verb != "POST":
        raise MalformedPayload(f"wecom callbacks are GET (verification) or POST (events), not {method}")
    outer = parse_xml(body, "the wecom callback body")
    encrypt = outer.findtext("Encrypt")
    if not encrypt:
        raise MalformedPayload("the wecom callback body has no <Encrypt> element")
    plaintext = _verify(keys, query, encrypt, now, tolerance_s)
    root = parse_xml(plaintext, "the decrypted wecom message")
    return NativeResult(reply=EMPTY_OK, event=normalise(cfg, source, root, plaintext, now))


def normalise(
    cfg: NativeConfig, source: str, root: ElementTree.Element, plaintext: bytes, now: datetime
) -> ApprovalEvent:
    """The ApprovalEvent for one decrypted WeCom message (sys_approval_change, or anything else as a no-op)."""
    payload = xml_to_dict(root)
    envelope = scalars(payload)
    info = raw if isinstance(raw := payload.get("ApprovalInfo"), dict) else {}
    info_fields = scalars(info)
    event_type = envelope.get("Event") or envelope.get("MsgType") or "unknown"
    create_time = envelope.get("CreateTime", "")
    occurred = from_epoch(create_time) or now
    sp_no = info_fields.get("SpNoStr") or info_fields.get("SpNo")
    change = info_fields.get("StatuChangeEvent", "")
    raw_status = info_fields.get("SpStatus")
    to_user = envelope.get("ToUserName", "")
    if event_type == "sys_approval_change" and sp_no:
        event_id = f"{to_user}:{sp_no}:{change}:{create_time}"
    elif envelope.get("MsgId"):
        event_id = f"{to_user}:msg:{envelope['MsgId']}"
    else:
        event_id = f"{event_type}:{hashlib.sha256(plaintext).hexdigest()[:32]}"
    approval_id = sp_no or f"({event_type})"
    applicant_node = info.get("Applyer")
    applicant = applicant_node.get("UserId") if isinstance(applicant_node, dict) else None
    applicant = applicant if isinstance(applicant, str) and applicant else None
    extra = {"event_type": event_type}
    if change:
        extra["statu_change_event"] = change
    for key, name in (("TemplateId", "template_id"), ("SpName", "sp_name")):
        if info_fields.get(key):
            extra[name] = info_fields[key]
    base: dict[str, Any] = {
        "source": source,
        "event_id": event_id,
        "approval_id": approval_id,
        "occurred_at": occurred,
        "raw_status": raw_status,
        "applicant": applicant,
    }
    status = SP_STATUS.get(raw_status or "")
    if event_type != "sys_approval_change" or sp_no is None:
        why = "has no SpNoStr/SpNo" if event_type == "sys_approval_change" else f"event {event_type} is not an approval"
        return ApprovalEvent(status=None, extra=extra, note=f"wecom {why}: recorded, changes nothing", **base)
    if change in NO_CHANGE_EVENTS:
        return ApprovalEvent(status=None, extra=extra, note=f"wecom {NO_CHANGE_EVENTS[change]} on approval {sp_no}: "
                             "the approval status is unchanged", **base)
    if status is None:
        return ApprovalEvent(status=None, extra=extra, note=f"wecom sys_approval_change with unknown SpStatus "
                             f"{raw_status!r}: recorded, changes nothing", **base)
    note = None
    if raw_status == "6":
        extra["revoked_after_approval"] = "true"
        note = "revoked AFTER approval (SpStatus 6, 通过后撤销): side effects of the approval may need undoing"
    fields = envelope | info_fields | {"approval_id": approval_id, "applicant": applicant or ""}
    card = resolve_card(cfg.routing, "wecom", payload=payload, fields=fields, applicant=applicant,
                        default_title=info_fields.get("SpName") or f"企业微信审批 {sp_no}")
    card_kwargs = card_event_fields(card)
    extra |= card_kwargs.pop("extra")
    return ApprovalEvent(status=status, note=note, extra=extra, **card_kwargs, **base)


def encode_request(
    cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Callable[[int], bytes]
) -> tuple[str, dict[str, str], dict[str, str], bytes]:
    """What WeCom would send: XML plaintext → the encrypted POST; anything else → the GET echostr handshake.

    The query values are decoded; percent-encode them when building a URL (`+`, `/` and `=` in echostr).
    """
    keys = wx_keys(cfg)
    timestamp = str(int(now.timestamp()))
    encrypt = nc.wx_encrypt(nc.wx_key(keys.aes_key.reveal()), plaintext, keys.receive_id, rng(16))
    signature = nc.wx_signature(keys.token.reveal(), timestamp, nonce, encrypt)
    query = {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}
    if not plaintext.lstrip().startswith(b"<"):
        return "GET", query | {"echostr": encrypt}, {}, b""
    agent_id = ""
    try:
        agent_id = parse_xml(plaintext, "the plaintext").findtext("AgentID") or ""
    except MalformedPayload:
        pass
    body = (
        f"<xml><ToUserName><![CDATA[{keys.receive_id}]]></ToUserName><AgentID><![CDATA[{agent_id}]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    ).encode()
    return "POST", query, {"Content-Type": "text/xml"}, body

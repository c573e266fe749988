"""DingTalk HTTP-push event subscription callbacks (事件订阅, HTTP 推送): verify, decrypt, normalise, reply.

Why it exists: an internal DingTalk app can push its own approval events (`bpms_instance_change`,
`bpms_task_change`) to bridge, encrypted with the WX-family scheme; this module turns one such request into an
`ApprovalEvent` and the encrypted "success" answer DingTalk insists on (also for the `check_url` handshake).

Request: `POST ?msg_signature=&timestamp=&nonce=` (older: `signature`, `timeStamp`), body `{"encrypt": "..."}`.
The receive id (`app_key` in the config) is the app's Client ID / appKey for a developer-console subscription,
the corpId for the legacy `register_call_back` API, or the suiteKey for third-party (ISV) suites.
Timestamps may be milliseconds (13 digits, as observed) or seconds (10 digits, doc examples); both are checked
against the tolerance.

Templates see the plaintext's top-level scalar fields (`processInstanceId`, `businessId`, `title`, `staffId`,
`processCode`, ...) plus `approval_id`. `notify = "applicant"` uses `staffId` (the initiator on instance events).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bridge.errors import MalformedPayload, SignatureInvalid
from bridge.events import ApprovalEvent, Status
from bridge.sources.native import crypto as nc
from bridge.sources.native.common import (
    NativeConfig,
    NativeResult,
    Reply,
    WxKeys,
    card_event_fields,
    from_epoch,
    load_json_object,
    resolve_card,
    scalars,
    wx_keys,
    wx_verify_decrypt,
)

HANDSHAKES = frozenset({"check_url", "check_create_suite_url", "check_update_suite_url"})

# (type, result) → status, for bpms_instance_change (reference §1.8)
INSTANCE_STATUS: dict[tuple[str, str | None], Status] = {
    ("start", None): Status.PENDING,
    ("finish", "agree"): Status.APPROVED,
    ("finish", "refuse"): Status.REJECTED,
    ("terminate", None): Status.REVOKED,
    ("delete", None): Status.DELETED,
}


def handle(
    cfg: NativeConfig,
    source: str,
    method: str,
    query: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    tolerance_s: int,
    rng: Callable[[int], bytes],
) -> NativeResult:
    keys = wx_keys(cfg)
    if method.upper() != "POST":
        raise MalformedPayload(f"dingtalk callbacks are POST requests, not {method}")
    signature = query.get("msg_signature") or query.get("signature")
    timestamp = query.get("timestamp") or query.get("timeStamp")
    nonce = query.get("nonce")
    if not signature or not timestamp or nonce is None:
        raise SignatureInvalid("dingtalk callback without msg_signature, timestamp and nonce query parameters")
    envelope = load_json_object(body, "the dingtalk callback body")
    encrypt = envelope.get("encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise MalformedPayload("the dingtalk callback body has no 'encrypt' string")
    plaintext = wx_verify_decrypt(keys, "dingtalk", signature, timestamp, nonce, encrypt, now, tolerance_s)
    payload = load_json_object(plaintext, "the decrypted dingtalk message")
    reply = success_reply(keys, now, rng)
    if payload.get("EventType") in HANDSHAKES:
        return NativeResult(reply=reply, event=None)
    return NativeResult(reply=reply, event=normalise(cfg, source, payload, plaintext, now))


def success_reply(keys: WxKeys, now: datetime, rng: Callable[[int], bytes]) -> Reply:
    """HTTP 200 {"msg_signature","timeStamp","nonce","encrypt"} with "success" encrypted (camelCase timeStamp)."""
    timestamp = str(int(now.timestamp() * 1000))
    nonce = rng(8).hex()
    encrypt = nc.wx_encrypt(nc.wx_key(keys.aes_key.reveal()), b"success", keys.receive_id, rng(16))
    body = {
        "msg_signature": nc.wx_signature(keys.token.reveal(), timestamp, nonce, encrypt),
        "timeStamp": timestamp,
        "nonce": nonce,
        "encrypt": encrypt,
    }
    return Reply(200, "application/json", json.dumps(body, separators=(",", ":")).encode())


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value) or None


def normalise(
    cfg: NativeConfig, source: str, payload: dict[str, Any], plaintext: bytes, now: datetime
) -> ApprovalEvent:
    """The ApprovalEvent for one decrypted DingTalk message (instance, task, or any other event type)."""
    event_type = _text(payload, "EventType") or "unknown"
    instance_id = _text(payload, "processInstanceId")
    kind = _text(payload, "type")
    result = _text(payload, "result")
    approval_id = instance_id or f"({event_type})"
    event_id = _text(payload, "eventId") or _text(payload, "BizId")
    if event_id is None:
        if event_type == "bpms_instance_change" and instance_id:
            event_id = f"{instance_id}:{kind}"
        elif event_type == "bpms_task_change" and instance_id:
            event_id = f"{instance_id}:task:{_text(payload, 'taskId')}:{kind}:{result}"
        else:
            event_id = f"{event_type}:{hashlib.sha256(plaintext).hexdigest()[:32]}"
    finished = kind in ("finish", "terminate")
    occurred = (
        from_epoch(payload.get("EventTime"))
        or (from_epoch(payload.get("finishTime")) if finished else None)
        or from_epoch(payload.get("createTime"))
        or now
    )
    extra = {"event_type": event_type}
    for key, name in (("CorpId", "corp_id"), ("corpId", "corp_id"), ("processCode", "process_code"),
                      ("businessId", "business_id")):
        if _text(payload, key):
            extra[name] = str(_text(payload, key))
    raw_status = "/".join(p for p in (kind, result) if p) or None
    base: dict[str, Any] = {
        "source": source,
        "event_id": event_id,
        "approval_id": approval_id,
        "occurred_at": occurred,
        "raw_status": raw_status,
    }
    if event_type == "bpms_task_change":
        return ApprovalEvent(status=None, note=f"dingtalk task event ({raw_status}): recorded as task history, "
                             "the instance status is unchanged", extra=extra, **base)
    if event_type != "bpms_instance_change":
        return ApprovalEvent(status=None, note=f"dingtalk event {event_type} does not change an approval",
                             extra=extra, **base)
    status = INSTANCE_STATUS.get((kind or "", result if kind == "finish" else None))
    if status is None or instance_id is None:
        why = "no processInstanceId" if instance_id is None else f"unknown type/result {raw_status!r}"
        return ApprovalEvent(status=None, note=f"dingtalk bpms_instance_change with {why}: recorded, changes nothing",
                             extra=extra, **base)
    fields = scalars(payload) | {"approval_id": approval_id}
    card = resolve_card(
        cfg.routing,
        "dingtalk",
        payload=payload,
        fields=fields,
        applicant=_text(payload, "staffId"),
        payload_title=_text(payload, "title"),
        payload_url=_text(payload, "url"),
        default_title=f"钉钉审批 {_text(payload, 'businessId') or approval_id}",
    )
    card_kwargs = card_event_fields(card)
    extra |= card_kwargs.pop("extra")
    return ApprovalEvent(status=status, applicant=_text(payload, "staffId"), extra=extra, **card_kwargs, **base)


def encode_request(
    cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Callable[[int], bytes]
) -> tuple[str, dict[str, str], dict[str, str], bytes]:
    """The POST DingTalk would send for `plaintext` (a JSON message), with a millisecond timestamp."""
    keys = wx_keys(cfg)
    timestamp = str(int(now.timestamp() * 1000))
    encrypt = nc.wx_encrypt(nc.wx_key(keys.aes_key.reveal()), plaintext, keys.receive_id, rng(16))
    query = {
        "msg_signature": nc.wx_signature(keys.token.reveal(), timestamp, nonce, encrypt),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    body = json.dumps({"encrypt": encrypt}, separators=(",", ":")).encode()
    return "POST", query, {"Content-Type": "application/json"}, body

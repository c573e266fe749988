"""Feishu / Lark event subscription callbacks ("send to developer server"): verify, decrypt, normalise, reply.

Why it exists: Feishu pushes `approval_instance` / `approval_task` (v1 envelopes only) to one URL per app; this
module turns one such request into an `ApprovalEvent`, and answers the `url_verification` challenge.

Authentication:
- Without an Encrypt Key the body is plain JSON, authenticated only by its token (v1 top-level `token`, v2
  `header.token`) equalling the Verification Token.
- With an Encrypt Key the body is `{"encrypt": "..."}` and event pushes carry `X-Lark-Request-Timestamp`,
  `X-Lark-Request-Nonce` and `X-Lark-Signature` = sha256_hex(timestamp + nonce + encrypt_key + RAW body): it is
  checked over the bytes as received, never a re-serialisation. The token inside is checked too.
- The challenge (`url_verification`, plain or encrypted) carries no signature headers: it is accepted on its
  token alone, and only ever answered with `{"challenge": ...}`; it creates no event.

Timestamp tolerance: Feishu documents none, and retries (15 s, 5 min, 1 h, 6 h) may or may not be re-signed.
`tolerance_s` is applied to `X-Lark-Request-Timestamp` only when that header is present; without it the
signature and the dedupe on the envelope `uuid` are the protection. If retried events start being refused as
stale, raise the source's `timestamp_tolerance_s` above 6 h.

Templates see the `event` object's scalar fields (`instance_code`, `approval_code`, `status`, `operate_time`,
...) plus `approval_id` and `event_id`. Feishu ids (open_id `ou_...`) go through `id_map`. `notify = "applicant"`
is refused at config time: approval_instance events name no applicant.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.errors import MalformedPayload, SignatureInvalid
from bridge.events import ApprovalEvent, Status
from bridge.sources.native import crypto as nc
from bridge.sources.native.common import (
    FeishuKeys,
    NativeConfig,
    NativeResult,
    Reply,
    card_event_fields,
    check_timestamp,
    from_epoch,
    load_json_object,
    lower_keys,
    resolve_card,
    scalars,
)

INSTANCE_STATUS: dict[str, Status] = {
    "PENDING": Status.PENDING,
    "OVERTIME_RECOVER": Status.PENDING,
    "APPROVED": Status.APPROVED,
    "REJECTED": Status.REJECTED,
    "OVERTIME_CLOSE": Status.REJECTED,
    "CANCELED": Status.REVOKED,
    "REVERTED": Status.REVOKED,
    "DELETED": Status.DELETED,
}
_NOTES = {
    "OVERTIME_CLOSE": "closed by timeout, never approved (OVERTIME_CLOSE): treated as rejected",
    "REVERTED": "revoked AFTER approval (REVERTED): side effects of the approval may need undoing",
}
SUCCESS = Reply(200, "application/json", b'{"msg":"success"}')


def _keys(cfg: NativeConfig) -> FeishuKeys:
    assert isinstance(cfg.keys, FeishuKeys)
    return cfg.keys


def handle(
    cfg: NativeConfig,
    source: str,
    method: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    tolerance_s: int,
) -> NativeResult:
    keys = _keys(cfg)
    if method.upper() != "POST":
        raise MalformedPayload(f"feishu callbacks are POST requests, not {method}")
    hdrs = lower_keys(headers)
    outer = load_json_object(body, "the feishu callback body")
    # A signed request is verified before its ciphertext is touched: a tampered body is a 401, and no answer
    # to an unauthenticated ciphertext may tell bad padding from anything else (that would be a padding oracle).
    signed = keys.encrypt_key is not None and bool(hdrs.get("x-lark-signature"))
    if signed:
        _check_signature(keys, hdrs, body)
    if "encrypt" in outer:
        if keys.encrypt_key is None:
            raise MalformedPayload("the feishu body is encrypted but this source has no encrypt_key configured")
        if not isinstance(outer["encrypt"], str):
            raise MalformedPayload("the feishu body's 'encrypt' must be a string")
        try:
            plaintext = nc.feishu_decrypt(nc.feishu_key(keys.encrypt_key.reveal()), outer["encrypt"])
            payload = load_json_object(plaintext, "the decrypted feishu event")
        except MalformedPayload:
            if signed:
                raise
            raise MalformedPayload("undecryptable: an unsigned encrypted feishu body (only the url_verification "
                                   "challenge comes unsigned) does not decrypt to JSON with this source's "
                                   "encrypt_key") from None
    else:
        payload = outer

    _check_token(keys, payload)
    if payload.get("type") == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            raise MalformedPayload("feishu url_verification without a challenge string")
        reply_body = json.dumps({"challenge": challenge}, ensure_ascii=False, separators=(",", ":")).encode()
        return NativeResult(reply=Reply(200, "application/json", reply_body), event=None)

    if keys.encrypt_key is not None and not signed:
        raise SignatureInvalid("feishu event without X-Lark-Signature / -Request-Timestamp / -Request-Nonce")
    timestamp = hdrs.get("x-lark-request-timestamp")
    if timestamp is not None:
        check_timestamp(timestamp.strip(), now, tolerance_s, "X-Lark-Request-Timestamp")
    return NativeResult(reply=SUCCESS, event=normalise(cfg, source, payload, now))


def _check_signature(keys: FeishuKeys, hdrs: Mapping[str, str], body: bytes) -> None:
    assert keys.encrypt_key is not None
    signature = hdrs.get("x-lark-signature")
    timestamp = hdrs.get("x-lark-request-timestamp")
    nonce = hdrs.get("x-lark-request-nonce")
    if not signature or timestamp is None or nonce is None:
        raise SignatureInvalid("feishu event without X-Lark-Signature / -Request-Timestamp / -Request-Nonce")
    expected = nc.feishu_signature(timestamp, nonce, keys.encrypt_key.reveal(), body)
    if not nc.signatures_match(expected, signature):
        raise SignatureInvalid("X-Lark-Signature does not match the raw body (wrong encrypt_key, or tampered)")


def _check_token(keys: FeishuKeys, payload: Mapping[str, Any]) -> None:
    header = payload.get("header")
    token = header.get("token") if isinstance(header, dict) else payload.get("token")
    if not isinstance(token, str) or not hmac.compare_digest(
        token.encode("utf-8"), keys.verification_token.reveal().encode("utf-8")
    ):
        raise SignatureInvalid("the feishu token does not match this source's verification_token")


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value) or None


def _occurred(event: Mapping[str, Any], payload: Mapping[str, Any], now: datetime) -> datetime:
    found = from_epoch(event.get("operate_time")) or from_epoch(event.get("instance_operate_time"))
    if found:
        return found
    header = payload.get("header")
    if isinstance(header, dict) and (found := from_epoch(header.get("create_time"))):
        return found
    try:
        return datetime.fromtimestamp(float(str(payload.get("ts"))), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return now


def normalise(cfg: NativeConfig, source: str, payload: dict[str, Any], now: datetime) -> ApprovalEvent:
    """The ApprovalEvent for one verified Feishu envelope (v1; v2 events are recorded as changing nothing)."""
    event = payload.get("event")
    if not isinstance(event, dict):
        raise MalformedPayload("the feishu envelope has no 'event' object")
    header = raw if isinstance(raw := payload.get("header"), dict) else {}
    event_type = _text(event, "type") or _text(header, "event_type") or "unknown"
    event_id = _text(payload, "uuid") or _text(header, "event_id")  # the envelope's, never event.uuid
    if event_id is None:
        raise MalformedPayload("the feishu envelope has no uuid (v1) or header.event_id (v2)")
    instance_code = _text(event, "instance_code")
    approval_id = instance_code or f"({event_type})"
    raw_status = _text(event, "status")
    extra = {"event_type": event_type}
    for key in ("approval_code", "tenant_key", "app_id"):
        if _text(event, key):
            extra[key] = str(_text(event, key))
    base: dict[str, Any] = {
        "source": source,
        "event_id": event_id,
        "approval_id": approval_id,
        "occurred_at": _occurred(event, payload, now),
        "raw_status": raw_status,
    }
    if event_type == "approval_task":
        who = _text(event, "user_id") or _text(event, "open_id") or "an automatic step"
        return ApprovalEvent(status=None, extra=extra, note=f"feishu task event ({raw_status} by {who}): task history"
                             ", the instance status is unchanged", **base)
    status = INSTANCE_STATUS.get(raw_status or "")
    if event_type != "approval_instance" or status is None or instance_code is None:
        why = (f"event {event_type} does not change an approval" if event_type != "approval_instance"
               else "approval_instance without instance_code" if instance_code is None
               else f"approval_instance with unknown status {raw_status!r}")
        return ApprovalEvent(status=None, extra=extra, note=f"feishu {why}: recorded, changes nothing", **base)
    if raw_status == "REVERTED":
        extra["revoked_after_approval"] = "true"
    fields = scalars(event) | {"approval_id": approval_id, "event_id": event_id}
    card = resolve_card(cfg.routing, "feishu", payload=payload, fields=fields, applicant=None,
                        default_title=f"飞书审批 {instance_code}")
    card_kwargs = card_event_fields(card)
    extra |= card_kwargs.pop("extra")
    return ApprovalEvent(status=status, note=_NOTES.get(raw_status or ""), extra=extra, **card_kwargs, **base)


def encode_request(
    cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, iv: bytes
) -> tuple[str, dict[str, str], dict[str, str], bytes]:
    """The POST Feishu would send for `plaintext`: encrypted and signed with an encrypt_key (the challenge is
    encrypted but unsigned, as Feishu does), else the plaintext as is."""
    keys = _keys(cfg)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if keys.encrypt_key is None:
        return "POST", {}, headers, plaintext
    encrypt = nc.feishu_encrypt(nc.feishu_key(keys.encrypt_key.reveal()), plaintext, iv)
    body = json.dumps({"encrypt": encrypt}, separators=(",", ":")).encode()
    try:
        is_challenge = json.loads(plaintext).get("type") == "url_verification"
    except (ValueError, AttributeError):
        is_challenge = False
    if not is_challenge:
        timestamp = str(int(now.timestamp()))
        headers |= {
            "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": nc.feishu_signature(timestamp, nonce, keys.encrypt_key.reveal(), body),
        }
    return "POST", {}, headers, body

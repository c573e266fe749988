"""DingTalk Stream mode frames: parse what the gateway sends, build the acks, turn EVENTs into ApprovalEvents.

Why it exists: the Stream client (`bridge.sources.stream`) does the I/O; everything it decides about a frame is
here and pure, so it is unit-tested without sockets (reference: approval-callbacks.md §1.9). An EVENT's `data` is
the HTTP push plaintext minus `EventType` / `EventTime` / `CorpId` / `BizId` / `eventId`, which travel in the
headers; `payload` puts them back so the very same normaliser as HTTP push (`native_dingtalk.normalise`) runs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bridge.errors import MalformedPayload
from bridge.events import ApprovalEvent
from bridge.sources.native import dingtalk as native_dingtalk
from bridge.sources.native.common import NativeConfig

OPEN_PATH = "/v1.0/gateway/connections/open"
SUBSCRIPTIONS = ({"type": "EVENT", "topic": "*"},)  # DingTalk only offers topic "*" for events


class FrameType(StrEnum):
    SYSTEM = "SYSTEM"
    EVENT = "EVENT"
    CALLBACK = "CALLBACK"


class AckStatus(StrEnum):
    SUCCESS = "SUCCESS"
    LATER = "LATER"  # "I could not take it; redeliver"


class SystemTopic(StrEnum):
    PING = "ping"
    DISCONNECT = "disconnect"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded server frame. `data` is still the JSON string the gateway sent."""

    type: str
    headers: dict[str, str]
    data: str

    @property
    def message_id(self) -> str:
        return self.headers.get("messageId", "")

    @property
    def topic(self) -> str:
        return self.headers.get("topic", "")


def parse_frame(text: str) -> Frame:
    """A server frame from the WebSocket's text; MalformedPayload if it is not one."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise MalformedPayload(f"stream frame is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise MalformedPayload("stream frame is not an object with a 'type'")
    headers = obj.get("headers", {})
    if not isinstance(headers, dict):
        raise MalformedPayload("stream frame headers are not an object")
    data = obj.get("data", "")
    if not isinstance(data, str):
        data = json.dumps(data)
    return Frame(type=obj["type"], headers={str(k): str(v) for k, v in headers.items()}, data=data)


def ack(message_id: str, *, status: AckStatus = AckStatus.SUCCESS, data: str | None = None) -> dict[str, Any]:
    """The answer to one message (§1.9 item 4); `data` overrides the status body (a ping echoes its data)."""
    body = data if data is not None else json.dumps({"status": str(status), "message": str(status).lower()})
    return {"code": 200, "headers": {"messageId": message_id, "contentType": "application/json"},
            "message": "OK", "data": body}


def payload(frame: Frame) -> dict[str, Any]:
    """The HTTP-push-shaped plaintext of an EVENT: `data` plus the fields that travel in the headers."""
    try:
        data = json.loads(frame.data or "{}")
    except ValueError as exc:
        raise MalformedPayload(f"stream EVENT data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedPayload("stream EVENT data is not a JSON object")
    h = frame.headers
    for key, header in (("EventType", "eventType"), ("eventId", "eventId"), ("CorpId", "eventCorpId"),
                        ("EventTime", "eventBornTime")):
        if h.get(header) and key not in data:
            data[key] = h[header]
    return data


def to_event(cfg: NativeConfig, source: str, frame: Frame, now: datetime) -> ApprovalEvent:
    """The ApprovalEvent for an EVENT frame, through the HTTP push normaliser (event id = the eventId header)."""
    plain = payload(frame)
    raw = json.dumps(plain, ensure_ascii=False, sort_keys=True).encode()
    return native_dingtalk.normalise(cfg, source, plain, raw, now)


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [base/2, min(max, base × 2^attempt)]."""
    ceiling = min(max_s, base_s * (2 ** min(attempt, 30)))
    return rng.uniform(min(base_s / 2, ceiling), ceiling)

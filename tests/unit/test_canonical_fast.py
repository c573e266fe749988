"""The canonical fast lane against the thorough path: on every field's edge cases, the fast lane either steps
aside (None) or builds exactly the event `parse_canonical` + `check_event` build; it never accepts what they
refuse. And it does take the ordinary events, or it would be no fast lane."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge import canonical_fast, event_checks, events
from bridge.errors import EventInvalid

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
WINDOW = event_checks.TimeWindow(max_future_s=3600, max_age_days=30)
BASE: dict[str, Any] = {
    "event_id": "PO-1-pending-0", "approval_id": "PO-1", "status": "pending",
    "occurred_at": "2026-11-29T10:00:00+08:00", "title": "采购申请 PO-1", "recipients": ["u1", "manager2"],
    "applicant": "张三", "url": "https://erp.example.com/po/1", "pc_url": "dingtalk://dingtalkclient/page/link?url=x",
    "content": "金额 1,200 元",
}
STRINGS: list[Any] = [
    "", " ", "x", " x", "x ", "a b", "a\tb", "a\nb", "a\rb", "a\u202eb", "a\u200bb", "a\x00b", "a\u2028b", "\u3000x",
    "x\u00a0", "a,b", "a:b", "mobile:13800138000", "mobile:abc", "unionid:abc", "采购", "\ud800", "x" * 64, "x" * 65,
    "x" * 128, "x" * 129, "x" * 200, "x" * 201, "x" * 2000, "x" * 2001, "x" * 2049,
]
OTHER: list[Any] = [None, 0, 1, 1.5, True, [], {}, ["u1"], {"num": "1"}]
STATUSES = ["pending", "approved", "rejected", "revoked", "deleted", " pending", "PENDING", "pending ", "done"]
TIMES = ["2026-11-29T10:00:00Z", "2026-11-29T10:00:00.123456+08:00", "2026-11-29T10:00:00", "2026-11-29 10:00:00Z",
         "2026-11-29t10:00:00z", "2026-11-29T04:00:00Z", "2026-11-29T04:00:01Z", "2026-10-30T03:00:00Z",
         "2026-10-30T02:59:59Z", "9999-12-31T23:59:59Z", "2026-13-01T00:00:00Z", 1796205600, "1796205600"]
LINKS = ["https://x", "http://x.example/a?b#c", "HTTPS://x", "Https://x", "http:///x", "https://", "https://?q",
         "https://#f", "ftp://x", "dingtalk://x", "eapp://x?y", "javascript:alert(1)", "https://a b",
         "https://a\tb", "https://" + "x" * 2040, "https://" + "x" * 2041, " https://x", "https://x "]
RECIPIENTS: list[Any] = [["u1"], ["u1", "u1"], ["u1", " u2"], ["u1", "u 2"], [""], [1], ["u1", None], [],
                         ["a,b"], ["mobile:13800138000"], ["x:y"], ["x" * 64], ["x" * 65], ["u\u200b1"],
                         [f"u{i}" for i in range(5000)], [f"u{i}" for i in range(5001)], "u1", {"u1": 1}]


def thorough(obj: object, webhook_id: str | None) -> events.ApprovalEvent | None:
    try:
        event = events.parse_canonical("erp", obj, webhook_id=webhook_id)
    except EventInvalid:
        return None
    return None if event_checks.check_event(event, NOW, WINDOW) else event


def variants() -> list[tuple[object, str | None]]:
    out: list[tuple[object, str | None]] = [(body, None) for body in (None, [], "x", 1, [BASE])]
    values = {"status": STATUSES, "occurred_at": TIMES, "url": LINKS, "pc_url": LINKS, "recipients": RECIPIENTS}
    for field in (*events.CANONICAL_FIELDS, "titel"):
        for value in (*values.get(field, ()), *STRINGS, *OTHER):
            out.append(({**BASE, field: value}, None))
        out.append(({k: v for k, v in BASE.items() if k != field}, None))
    for webhook_id in (None, "msg_1", "", "a b", "x" * 128, "x" * 129, "msg\u202e"):
        out.append(({k: v for k, v in BASE.items() if k != "event_id"}, webhook_id))
        out.append(({**BASE, "event_id": None}, webhook_id))
        out.append((BASE, webhook_id))
    for a, b in itertools.combinations(["title", "applicant", "content", "url", "pc_url", "recipients"], 2):
        out.append(({k: v for k, v in BASE.items() if k not in (a, b)}, None))
    return out


@pytest.mark.parametrize(("obj", "webhook_id"), variants())
def test_the_fast_lane_builds_what_the_thorough_path_builds_or_steps_aside(obj: object,
                                                                          webhook_id: str | None) -> None:
    fast = canonical_fast.event("erp", obj, NOW, WINDOW, webhook_id=webhook_id)
    if fast is not None:
        assert fast == thorough(obj, webhook_id)


def test_the_fast_lane_takes_the_ordinary_events() -> None:
    taken = [canonical_fast.event("erp", obj, NOW, WINDOW, webhook_id=w) for obj, w in variants()]
    accepted = [thorough(obj, w) for obj, w in variants()]
    assert canonical_fast.event("erp", BASE, NOW, WINDOW) == thorough(BASE, None) is not None
    no_event_id = {k: v for k, v in BASE.items() if k != "event_id"}
    assert canonical_fast.event("erp", no_event_id, NOW, WINDOW, webhook_id="msg_1") is not None
    later = {"event_id": "e2", "approval_id": "PO-1", "status": "approved", "occurred_at": "2026-11-29T02:00:00Z"}
    assert canonical_fast.event("erp", later, NOW, WINDOW) == thorough(later, None) is not None
    # most events the thorough path accepts here are plain enough for the fast lane
    assert sum(t is not None for t in taken) > 0.6 * sum(a is not None for a in accepted)

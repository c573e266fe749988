"""The approval event: what every source format is normalised into.

A webhook (canonical JSON, a mapped format, or a native DingTalk / Feishu / WeCom callback) becomes one
frozen `ApprovalEvent`. Everything after the receiver (storage, the state machine, rendering) sees only
this type, so adding a source format never touches the worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """An approval status as a source reports it."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class FormField:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Amount:
    num: str
    unit: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """One normalised approval event.

    `status` is None for events that are accepted and recorded but change nothing (a mapped source's
    "no status change" values, task-level native events, WeCom reminders and comments); `note` then says
    why. `recipients` may be empty on later events: the first event's card data is stored and reused.
    `unresolved` is set when a native source could not work out who receives the card; the event is
    recorded with that reason and changes nothing.
    """

    source: str
    event_id: str
    approval_id: str
    status: Status | None
    occurred_at: datetime
    title: str | None = None
    recipients: tuple[str, ...] = ()
    applicant: str | None = None
    url: str | None = None
    pc_url: str | None = None
    form: tuple[FormField, ...] = ()
    amount: Amount | None = None
    content: str | None = None
    raw_status: str | None = None
    note: str | None = None
    unresolved: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_card_data(self) -> bool:
        """True when this event alone is enough to create a card (title, recipients and url)."""
        return bool(self.title and self.recipients and self.url)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "event_id": self.event_id,
            "approval_id": self.approval_id,
            "status": self.status.value if self.status else None,
            "occurred_at": self.occurred_at.isoformat(),
        }
        optional: dict[str, Any] = {
            "title": self.title,
            "recipients": list(self.recipients) or None,
            "applicant": self.applicant,
            "url": self.url,
            "pc_url": self.pc_url,
            "form": [{"key": f.key, "value": f.value} for f in self.form] or None,
            "amount": {"num": self.amount.num, "unit": self.amount.unit} if self.amount else None,
            "content": self.content,
            "raw_status": self.raw_status,
            "note": self.note,
            "unresolved": self.unresolved,
            "extra": dict(self.extra) or None,
        }
        d.update({k: v for k, v in optional.items() if v is not None})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApprovalEvent:
        """Rebuild an event stored with `to_dict` (trusted input: no validation)."""
        amount = d.get("amount")
        return cls(
            source=d["source"],
            event_id=d["event_id"],
            approval_id=d["approval_id"],
            status=Status(d["status"]) if d.get("status") else None,
            occurred_at=datetime.fromisoformat(d["occurred_at"]),
            title=d.get("title"),
            recipients=tuple(d.get("recipients") or ()),
            applicant=d.get("applicant"),
            url=d.get("url"),
            pc_url=d.get("pc_url"),
            form=tuple(FormField(f["key"], f["value"]) for f in d.get("form") or ()),
            amount=Amount(amount["num"], amount.get("unit", "")) if amount else None,
            content=d.get("content"),
            raw_status=d.get("raw_status"),
            note=d.get("note"),
            unresolved=d.get("unresolved"),
            extra=dict(d.get("extra") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> ApprovalEvent:
        return cls.from_dict(json.loads(text))

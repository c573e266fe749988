"""The approval event: what every source format is normalised into, and the canonical format's parser.

A webhook (canonical JSON, a mapped format, or a native DingTalk / Feishu / WeCom callback) becomes one
frozen `ApprovalEvent`. Everything after the receiver (storage, the state machine, rendering) sees only
this type, so adding a source format never touches the worker. Below the dataclasses: `parse_canonical` and
`validate_values`, the one set of field rules every format obeys. Strict body and time decoding (`parse_json`,
`parse_time`) live in bridge.decoding and are re-exported here for the callers that know them by this name.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeGuard

import orjson

from bridge import recipients as recipient_refs
from bridge.decoding import MAX_DEPTH as MAX_DEPTH
from bridge.decoding import TIME_FORMATS as TIME_FORMATS
from bridge.decoding import kind_of as kind_of
from bridge.decoding import parse_json as parse_json
from bridge.decoding import parse_time as parse_time
from bridge.decoding import show_value
from bridge.errors import EventInvalid, Problem


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
        # the optional fields only when set, in this order (one test per field: the stored form is written for
        # every event received, so no dict of all of them is built and filtered)
        if self.title is not None:
            d["title"] = self.title
        if self.recipients:
            d["recipients"] = list(self.recipients)
        if self.applicant is not None:
            d["applicant"] = self.applicant
        if self.url is not None:
            d["url"] = self.url
        if self.pc_url is not None:
            d["pc_url"] = self.pc_url
        if self.form:
            d["form"] = [{"key": f.key, "value": f.value} for f in self.form]
        if self.amount is not None:
            d["amount"] = {"num": self.amount.num, "unit": self.amount.unit}
        for key, value in (("content", self.content), ("raw_status", self.raw_status), ("note", self.note),
                           ("unresolved", self.unresolved)):
            if value is not None:
                d[key] = value
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        """The stored form: compact JSON, UTF-8 as it is. orjson writes it (a fifth of json's time per event);
        json only for text orjson refuses (a lone surrogate, which json writes as an escape)."""
        d = self.to_dict()
        try:
            return orjson.dumps(d).decode()
        except orjson.JSONEncodeError:
            return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

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


# --- parsing: JSON bodies and the canonical format -------------------------------------------------------
# Every check appends a Problem instead of raising, so one 400 names every bad field at once. The mapped
# formats (bridge.mapping) feed their values through `validate_values` too: one set of rules for all.

MAX_ID_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS, MAX_CONTENT_CHARS, MAX_APPLICANT_CHARS = 128, 200, 2048, 2000, 64
MAX_RECIPIENTS, MAX_USERID_CHARS = 5000, 64
MAX_FORM_ROWS, MAX_FORM_KEY_CHARS, MAX_FORM_VALUE_CHARS = 20, 50, 500
MAX_AMOUNT_NUM_CHARS, MAX_AMOUNT_UNIT_CHARS = 32, 10
URL_SCHEMES = ("http", "https", "dingtalk", "eapp")
CARD_FIELDS = ("title", "recipients", "url")
VALUE_FIELDS = ("event_id", "approval_id", "occurred_at", "title", "recipients", "applicant", "url", "pc_url",
                "form", "amount", "content")
CANONICAL_FIELDS = (*VALUE_FIELDS[:2], "status", *VALUE_FIELDS[2:])



class _Check:
    """Collects problems; `name` turns a canonical field into what the sender called it (mapped sources)."""

    def __init__(self, problems: list[Problem], name: Callable[[str], str]) -> None:
        self.problems, self.name = problems, name

    def bad(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.name(field), message))

    def text(self, field: str, value: object, max_chars: int, *, numbers: bool = False) -> str | None:
        """The stripped string ("" when blank), or None after naming the problem. Numbers allowed on request."""
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.bad(field, f"expected a string{' or number' if numbers else ''}, got {kind_of(value)}")
            return None
        if len(value := value.strip()) > max_chars:
            self.bad(field, f"must be at most {max_chars} characters, got {len(value)}")
            return None
        return value

    def ident(self, field: str, value: object, max_chars: int = MAX_ID_CHARS, what: str = "id") -> str | None:
        text = self.text(field, value, max_chars)
        if text == "":
            self.bad(field, f"{what} must not be empty")
        elif text is not None and (not text.isprintable() or " " in text or (what == "userid" and "," in text)):
            extra = ", commas" if what == "userid" else ""
            self.bad(field, f"{what} must not contain whitespace{extra} or control characters: {show_value(text)}")
        else:
            return text
        return None

    def url(self, field: str, value: object) -> str | None:
        text = self.text(field, value, MAX_URL_CHARS)
        scheme, sep, rest = (text or "").partition("://")
        if not text:
            return text
        if not sep or scheme.lower() not in URL_SCHEMES or not rest or rest[0] in "/?#":
            self.bad(field, f"must be an http(s)://, dingtalk:// or eapp:// URL, got {show_value(text)}")
        elif not text.isprintable() or " " in text:  # every whitespace but " " is unprintable
            self.bad(field, "must not contain whitespace or control characters (percent-encode them)")
        else:
            return text
        return None

    def time(self, field: str, value: object, time_format: str) -> datetime | None:
        try:
            return parse_time(value, time_format, "")
        except ValueError as exc:
            self.bad(field, str(exc))
            return None

    def recipients(self, field: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_RECIPIENTS:
            got = f"{len(value)} entries" if isinstance(value, list) else kind_of(value)
            self.bad(field, f"expected an array of 1 to {MAX_RECIPIENTS} DingTalk userids, got {got}")
            return ()
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            userid = self.ident(f"recipients[{i}]", item, MAX_USERID_CHARS, "userid")
            why = recipient_refs.problem(userid) if userid is not None else None
            if why is not None:
                self.bad(f"recipients[{i}]", why)
            elif userid in seen:
                self.bad(f"recipients[{i}]", f"duplicate of recipients[{seen[userid]}] {userid!r}")
            elif userid is not None:
                seen[userid] = i
        return tuple(seen)

    def form(self, field: str, value: object) -> tuple[FormField, ...]:
        if not isinstance(value, list) or len(value) > MAX_FORM_ROWS:
            got = f"{len(value)} entries" if isinstance(value, list) else kind_of(value)
            self.bad(field, f"expected an array of at most {MAX_FORM_ROWS} {{key, value}} objects, got {got}")
            return ()
        rows: list[FormField] = []
        for i, row in enumerate(value):
            if self.keys(f"form[{i}]", row, ("key", "value")):
                key = self.text(f"form[{i}].key", row.get("key", ""), MAX_FORM_KEY_CHARS)
                if key == "":
                    self.bad(f"form[{i}].key", "required, a non-empty string")
                raw = row.get("value")
                text = self.text(f"form[{i}].value", "" if raw is None else raw, MAX_FORM_VALUE_CHARS, numbers=True)
                if key and text is not None:
                    rows.append(FormField(key, text))
        return tuple(rows)

    def amount(self, field: str, value: object) -> Amount | None:
        if not self.keys(field, value, ("num", "unit")) or not isinstance(value, dict):
            return None
        num = self.text(f"{field}.num", value.get("num", ""), MAX_AMOUNT_NUM_CHARS, numbers=True)
        if num == "":
            self.bad(f"{field}.num", "required, a number or numeric string")
        unit = self.text(f"{field}.unit", value.get("unit") or "", MAX_AMOUNT_UNIT_CHARS)
        return Amount(num, unit) if num and unit is not None else None

    def keys(self, field: str, value: object, allowed: tuple[str, ...]) -> TypeGuard[dict[str, Any]]:
        """True for an object; names each unknown key in it."""
        if not isinstance(value, dict):
            self.bad(field, f"expected an object with {' and '.join(allowed)}, got {kind_of(value)}")
            return False
        for key in value:
            if key not in allowed:
                self.bad(f"{field}.{key}", f"unknown field {key!r} (expected {', '.join(allowed)})")
        return True


def validate_values(
    data: Mapping[str, object],
    problems: list[Problem],
    *,
    time_format: str = "rfc3339",
    name: Callable[[str], str] = str,
) -> dict[str, Any]:
    """Check and normalise the value fields (VALUE_FIELDS) present in `data` with a non-None value.

    Problems are appended to `problems`, named through `name`. Returns ApprovalEvent keyword arguments
    for the fields that passed; required-field presence and `status` are the caller's business.
    """
    c = _Check(problems, name)
    values: dict[str, Any] = {}
    for key, value in data.items():
        check = _VALUE_CHECKS.get(key)
        if check is not None and value is not None:
            result = check(c, key, value, time_format)
            if result not in (None, "", ()):
                values[key] = result
    return values


# field -> its check, built once (not per event): (checker, field, value, time format) -> the value or None
_VALUE_CHECKS: dict[str, Callable[[_Check, str, Any, str], Any]] = {
    "event_id": lambda c, f, v, _t: c.ident(f, v),
    "approval_id": lambda c, f, v, _t: c.ident(f, v),
    "occurred_at": lambda c, f, v, t: c.time(f, v, t),
    "title": lambda c, f, v, _t: c.text(f, v, MAX_TITLE_CHARS),
    "recipients": lambda c, f, v, _t: c.recipients(f, v),
    "applicant": lambda c, f, v, _t: c.text(f, v, MAX_APPLICANT_CHARS),
    "url": lambda c, f, v, _t: c.url(f, v),
    "pc_url": lambda c, f, v, _t: c.url(f, v),
    "form": lambda c, f, v, _t: c.form(f, v),
    "amount": lambda c, f, v, _t: c.amount(f, v),
    "content": lambda c, f, v, _t: c.text(f, v, MAX_CONTENT_CHARS),
}


def invalid(problems: Sequence[Problem]) -> EventInvalid:
    """The 400 for a list of problems: one named in the message, or their count."""
    one = f"{problems[0].field}: {problems[0].message}" if len(problems) == 1 else ""
    return EventInvalid(f"invalid event: {one or f'{len(problems)} problems'}", problems)


def require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid([Problem("body", f"the body must be a JSON object, got {kind_of(body)}")])
    return body


def parse_canonical(source: str, body: object, *, webhook_id: str | None = None) -> ApprovalEvent:
    """The canonical event format (see module docs / README) → ApprovalEvent, or EventInvalid naming every
    problem. `webhook_id` (the Standard Webhooks header) is the event id when the body has none."""
    obj = require_object(body)
    problems: list[Problem] = []
    for key in obj:
        if key not in CANONICAL_FIELDS:
            close = difflib.get_close_matches(key, CANONICAL_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(key, f"unknown field {key!r}{hint}"))
    for key in ("approval_id", "status", "occurred_at"):
        if obj.get(key) is None:
            problems.append(Problem(key, "required"))
    data = dict(obj)
    use_header = obj.get("event_id") is None and webhook_id is not None
    if use_header:
        data["event_id"] = webhook_id
    elif obj.get("event_id") is None:
        problems.append(Problem("event_id", "required (or send a webhook-id or svix-id header)"))
    status = parse_status(obj.get("status"), problems)
    values = validate_values(data, problems, name=lambda f: "webhook-id" if use_header and f == "event_id" else f)
    if problems:
        raise invalid(problems)
    return ApprovalEvent(source=source, status=status, **values)


def parse_status(value: object, problems: list[Problem], field: str = "status") -> Status | None:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text in Status.__members__.values():
        return Status(text)
    allowed = ", ".join(s.value for s in Status)
    problems.append(Problem(field, f"must be one of {allowed}, got {show_value(value)}"))
    return None


def missing_card_fields(event: ApprovalEvent) -> list[Problem]:
    """The card fields (title, recipients, url) this event lacks; the first event of an approval needs all
    three unless they are stored from an earlier one, which only the receiver can tell. A mapped source
    records in `extra` which of the sender's paths gave nothing (`from.recipients`, `why.recipients`), and
    the problem names that path, so the sender sees its own field."""
    required = "required on the first event for an approval (no card data is stored for it yet)"
    return [
        Problem(event.extra[f"from.{f}"], f"{event.extra[f'why.{f}']}: {f} is {required}")
        if f"from.{f}" in event.extra and f"why.{f}" in event.extra else Problem(f, required)
        for f in CARD_FIELDS
        if not getattr(event, f)
    ]  # fmt: skip

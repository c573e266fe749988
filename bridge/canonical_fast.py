"""The canonical format's common case in a handful of C-level string calls: a fast lane in front of the parser.

Why it exists: nearly every webhook is a well-formed canonical event (known fields, string ids, an RFC 3339
time, a title, userids, a link), and the thorough path (`events.parse_canonical`, then
`event_checks.check_event`) names every problem of every field, which costs a function call, a problem list
and a dataclass per field: ~30 us of the receiver's CPU per request under load, its largest single step.
`event` accepts only what it can see at a glance is clean (plain strings, printable, inside the limits, no
form or amount, no prefixed recipient) and otherwise answers None, and the caller runs the thorough path,
which then either builds the same event or names the problems. So the fast lane never decides a refusal
and never accepts anything the thorough path would refuse: tests/unit/test_canonical_fast.py checks that
on every field's edge cases, comparing the two paths' answers. Pure: `now` is passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.decoding import parse_time
from bridge.event_checks import TimeWindow
from bridge.events import (
    CANONICAL_FIELDS,
    MAX_APPLICANT_CHARS,
    MAX_CONTENT_CHARS,
    MAX_ID_CHARS,
    MAX_RECIPIENTS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    MAX_USERID_CHARS,
    URL_SCHEMES,
    ApprovalEvent,
    Status,
)

__all__ = ["event"]

_FIELDS = frozenset(CANONICAL_FIELDS)
_SLOW_FIELDS = frozenset({"form", "amount"})  # rows of their own: the thorough path takes them
_STATUSES = {s.value: s for s in Status}
_LINKS = tuple(f"{scheme}://" for scheme in URL_SCHEMES)  # lower case only: other spellings go the long way


def _clean_text(value: object, max_chars: int) -> bool:
    """A non-empty string without surrounding whitespace, within `max_chars`, every character printable."""
    return (type(value) is str and 0 < len(value) <= max_chars and value.isprintable()
            and value[0] != " " and value[-1] != " ")


def _clean_link(value: object) -> bool:
    return (type(value) is str and len(value) <= MAX_URL_CHARS and value.startswith(_LINKS)
            and value.isprintable() and " " not in value and value.partition("://")[2][:1] not in ("", "/", "?", "#"))


def event(source: str, obj: object, now: datetime, window: TimeWindow, *,
          webhook_id: str | None = None) -> ApprovalEvent | None:
    """The event `obj` (a decoded canonical body) describes, when it is plainly clean; None means "not at a
    glance": ask `events.parse_canonical` and `event_checks.check_event`, which decide."""
    if type(obj) is not dict or not _FIELDS.issuperset(obj) or not _SLOW_FIELDS.isdisjoint(obj):
        return None
    event_id = obj.get("event_id")
    if event_id is None:
        event_id = webhook_id
    approval_id, status_text = obj.get("approval_id"), obj.get("status")
    status = _STATUSES.get(status_text) if type(status_text) is str else None
    if status is None or type(event_id) is not str or type(approval_id) is not str:
        return None
    ids = (event_id, approval_id)
    if not (0 < len(event_id) <= MAX_ID_CHARS and 0 < len(approval_id) <= MAX_ID_CHARS):
        return None
    recipients = obj.get("recipients")
    users: tuple[str, ...] = ()
    if recipients is not None:
        if type(recipients) is not list or not 0 < len(recipients) <= MAX_RECIPIENTS:
            return None
        users = tuple(recipients)
        if not all(type(u) is str and 0 < len(u) <= MAX_USERID_CHARS for u in users) or len(set(users)) != len(users):
            return None
    joined = "".join((*ids, *users))  # printable iff every part is; no space, and no comma or prefix in userids
    if not joined.isprintable() or " " in joined or (users and any(c in "".join(users) for c in ",:")):
        return None
    title, applicant, content = obj.get("title"), obj.get("applicant"), obj.get("content")
    texts = ((title, MAX_TITLE_CHARS), (applicant, MAX_APPLICANT_CHARS), (content, MAX_CONTENT_CHARS))
    if not all(text is None or _clean_text(text, limit) for text, limit in texts):
        return None
    url, pc_url = obj.get("url"), obj.get("pc_url")
    if (url is not None and not _clean_link(url)) or (pc_url is not None and not _clean_link(pc_url)):
        return None
    try:
        occurred_at = parse_time(obj.get("occurred_at"), "rfc3339", "")
    except ValueError:
        return None
    if not now - timedelta(days=window.max_age_days) <= occurred_at <= now + timedelta(seconds=window.max_future_s):
        return None
    return ApprovalEvent(source=source, event_id=event_id, approval_id=approval_id,
                         status=status, occurred_at=occurred_at, title=title, recipients=users, applicant=applicant,
                         url=url, pc_url=pc_url, content=content)

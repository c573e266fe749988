"""The one validation pass every event goes through before it is stored, whatever its source.

Why it exists: the canonical parser checks its fields, but mapped and native events are built from other
systems' payloads (a correctly encrypted DingTalk callback delivered a `javascript:` url, a 40,000-character
process id, NUL and RTL characters in ids, a zero-width space in a userid, a 5,000-character title, a staffId
of "victim1,victim2"), and the canonical title took CR, LF, NUL and U+202E. Here the finished `ApprovalEvent`
is checked once, by the same rules for every format: link schemes, length limits, no control, format (bidi,
zero-width) or line-separator characters in ids, titles and userids, no commas in userids, and an
`occurred_at` inside a sane window around now (a `pending` dated 9999 would make every real later event
stale). Pure: `now` and the window are passed in. Problems name the canonical field.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.errors import Problem
from bridge.events import (
    MAX_APPLICANT_CHARS,
    MAX_CONTENT_CHARS,
    MAX_FORM_KEY_CHARS,
    MAX_FORM_ROWS,
    MAX_FORM_VALUE_CHARS,
    MAX_ID_CHARS,
    MAX_RECIPIENTS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    MAX_USERID_CHARS,
    URL_SCHEMES,
    ApprovalEvent,
)

__all__ = ["DEFAULT_WINDOW", "TimeWindow", "check_event"]

# Cc: C0/C1 controls (NUL, CR, LF, ESC); Cf: format characters (U+202E RLO and the other bidi controls,
# U+200B zero-width space, ZWJ, BOM); Zl / Zp: line and paragraph separators. Cs / Co / Cn: surrogates,
# private use and unassigned code points, which no id or title needs.
_REFUSED_IN_LINES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_MULTILINE_OK = frozenset({"\n", "\t"})  # content and form values may have line breaks and tabs
_NO_BREAKS = str.maketrans("", "", "\n\t")


def has_space(text: str) -> bool:
    """Any whitespace (str.isspace) in `text`. Every whitespace character but the ASCII space is unprintable,
    so for a printable string (the usual case, checked in C) that is one substring test."""
    return " " in text if text.isprintable() else any(c.isspace() for c in text)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far `occurred_at` may be from bridge's clock: `[server] max_future_s` and `max_age_days`."""

    max_future_s: int = 24 * 3600
    max_age_days: int = 5 * 366


DEFAULT_WINDOW = TimeWindow()


def _bad_char(text: str, *, multiline: bool = False) -> str | None:
    # Fast path, in C: a printable string has no character of category C* or Z* (ASCII space aside), so none
    # of the refused ones; only a string that is not printable is walked character by character.
    if text.isprintable() or (multiline and text.translate(_NO_BREAKS).isprintable()):
        return None
    for c in text:
        if multiline and c in _MULTILINE_OK:
            continue
        if unicodedata.category(c) in _REFUSED_IN_LINES:
            return f"U+{ord(c):04X} {unicodedata.name(c, 'control character')}"
    return None


def _line(problems: list[Problem], field: str, value: str | None, max_chars: int, what: str = "",
          *, spaces: bool = True, multiline: bool = False) -> None:
    if value is None:
        return
    if len(value) > max_chars:
        problems.append(Problem(field, f"must be at most {max_chars} characters, got {len(value)}"))
        return
    bad = _bad_char(value, multiline=multiline)
    if bad is not None:
        problems.append(Problem(field, f"must not contain control, bidi or zero-width characters: {bad}"))
    elif not spaces and has_space(value):
        problems.append(Problem(field, f"{what or 'an id'} must not contain whitespace"))


def _url(problems: list[Problem], field: str, value: str | None) -> None:
    if value is None:
        return
    scheme, sep, rest = value.partition("://")
    if len(value) > MAX_URL_CHARS:
        problems.append(Problem(field, f"must be at most {MAX_URL_CHARS} characters, got {len(value)}"))
    elif not sep or scheme.lower() not in URL_SCHEMES or not rest or rest[0] in "/?#":
        shown = value if len(value) <= 40 else value[:40] + "…"
        problems.append(Problem(field, f"must be an http(s)://, dingtalk:// or eapp:// URL, got {shown!r}"))
    elif _bad_char(value) or has_space(value):
        problems.append(Problem(field, "must not contain whitespace or control characters (percent-encode them)"))


def _ids_clean(event: ApprovalEvent) -> bool:
    """True when the ids and userids certainly pass their checks (each non-empty, short enough, printable, no
    space, no comma in a userid): what nearly every event is, found with a few C calls over all of them at
    once instead of a pass per field. False means only "look at each one"."""
    ids, users = (event.event_id, event.approval_id), event.recipients
    if not (all(ids) and all(users) and max(map(len, ids)) <= MAX_ID_CHARS and len(users) <= MAX_RECIPIENTS):
        return False
    if users and max(map(len, users)) > MAX_USERID_CHARS:
        return False
    joined = "".join((*ids, *users))  # printable iff every part is (a per-character property)
    return joined.isprintable() and " " not in joined and "," not in "".join(users)


def check_event(event: ApprovalEvent, now: datetime, window: TimeWindow = DEFAULT_WINDOW) -> list[Problem]:
    """Every problem with `event` ([] when it may be stored)."""
    problems: list[Problem] = []
    ids_clean = _ids_clean(event)
    for field in ("event_id", "approval_id") if not ids_clean else ():
        value = getattr(event, field)
        _line(problems, field, value, MAX_ID_CHARS, spaces=False)
        if not value:
            problems.append(Problem(field, "must not be empty"))
    _line(problems, "title", event.title, MAX_TITLE_CHARS)
    _line(problems, "applicant", event.applicant, MAX_APPLICANT_CHARS)
    _line(problems, "content", event.content, MAX_CONTENT_CHARS, multiline=True)
    _url(problems, "url", event.url)
    _url(problems, "pc_url", event.pc_url)
    if len(event.recipients) > MAX_RECIPIENTS:
        problems.append(Problem("recipients", f"at most {MAX_RECIPIENTS} userids, got {len(event.recipients)}"))
    for i, userid in enumerate(event.recipients[:MAX_RECIPIENTS] if not ids_clean else ()):
        _line(problems, f"recipients[{i}]", userid, MAX_USERID_CHARS, "a userid", spaces=False)
        if "," in userid:
            problems.append(Problem(f"recipients[{i}]", f"a userid must not contain commas: {userid[:40]!r}"))
        if not userid:
            problems.append(Problem(f"recipients[{i}]", "a userid must not be empty"))
    if len(event.form) > MAX_FORM_ROWS:
        problems.append(Problem("form", f"at most {MAX_FORM_ROWS} rows, got {len(event.form)}"))
    for i, row in enumerate(event.form[:MAX_FORM_ROWS]):
        _line(problems, f"form[{i}].key", row.key, MAX_FORM_KEY_CHARS)
        _line(problems, f"form[{i}].value", row.value, MAX_FORM_VALUE_CHARS, multiline=True)
    earliest = now - timedelta(days=window.max_age_days)
    latest = now + timedelta(seconds=window.max_future_s)
    if event.occurred_at > latest:
        problems.append(Problem("occurred_at", f"{event.occurred_at.isoformat()} is more than "
                                               f"{window.max_future_s} s ahead of bridge's clock ({now.isoformat()})"))
    elif event.occurred_at < earliest:
        problems.append(Problem("occurred_at", f"{event.occurred_at.isoformat()} is more than "
                                               f"{window.max_age_days} days in the past"))
    return problems

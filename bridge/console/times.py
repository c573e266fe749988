"""Times on console pages: shown in the operator's time zone, typed in filter boxes (pure: no I/O, no clock).

The server does not know where the operator sits, so every time leaves it as `<time datetime="ISO">` with a
readable UTC text (what a page without scripts shows) and the UTC value in its title; the shipped
`console.js` rewrites the text in the browser's own time zone. The "since" filter boxes take what
`parse_since` accepts, the same rule as the admin API's `since`: an ISO 8601 / RFC 3339 time or date, UTC
when it carries no offset.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.console.html import esc

__all__ = ["SINCE_FORMATS", "BadTime", "parse_since", "time_tag"]

# Shown to an operator whose "since" value was refused (examples of every accepted form).
SINCE_FORMATS = (
    "2026-11-29",
    "2026-11-29T08:00",
    "2026-11-29 08:00:00",
    "2026-11-29T08:00+08:00",
    "2026-11-29T00:00:00Z",
)


class BadTime(ValueError):
    """A filter box held something that is not a time (the page answers 400 and names the field)."""


def parse_since(raw: str | None) -> datetime | None:
    """An aware datetime for a filter box's text; None when empty; `BadTime` when it is not a time."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadTime(text) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _utc(value: datetime | str) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_tag(value: datetime | str | None) -> str:
    """`<time>` for a moment: UTC text and title on the server, the browser's zone once console.js ran."""
    if value is None or value == "":
        return ""
    moment = _utc(value)
    if moment is None:  # not a time after all: show what was stored, as text
        return f"<span>{esc(value)}</span>"
    utc = moment.astimezone(UTC)
    text = f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    return f'<time datetime="{esc(utc.isoformat())}" title="{esc(text)}">{esc(text)}</time>'

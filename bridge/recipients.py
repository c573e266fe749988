"""Recipients given by mobile number or unionid: the `mobile:` / `unionid:` prefixes. Pure.

ERP and OA systems rarely know DingTalk userids; they know mobile numbers and, after a DingTalk login,
unionids. A recipient written `mobile:13800138000` or `unionid:xxxx` is accepted as it is when the event
arrives (the request path makes no DingTalk call) and turned into a userid by the worker just before the
send (bridge.resolve), through the DingTalk client and a cache in the store. Anything without one of these
prefixes is a userid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["RecipientKind", "Reference", "parse", "problem"]


class RecipientKind(StrEnum):
    """What a prefixed recipient names; the value is the prefix (without the colon)."""

    MOBILE = "mobile"
    UNIONID = "unionid"


# digits, optionally a leading + and country code, dashes allowed between groups: "+86-13800138000"
_MOBILE = re.compile(r"^\+?[0-9][0-9-]{4,23}$")
_UNIONID = re.compile(r"^[A-Za-z0-9_\-+=/.]{1,64}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A recipient to look up: `key` is the recipient as given (the cache key), `value` what DingTalk is asked."""

    key: str
    kind: RecipientKind
    value: str


def parse(recipient: str) -> Reference | None:
    """The lookup a recipient needs, or None when it is a userid already."""
    prefix, sep, value = recipient.partition(":")
    if not sep:
        return None
    try:
        kind = RecipientKind(prefix)
    except ValueError:
        return None
    return Reference(key=recipient, kind=kind, value=value)


def problem(recipient: str) -> str | None:
    """Why a prefixed recipient can never be looked up (checked when the event arrives), or None."""
    ref = parse(recipient)
    if ref is None:
        return None
    if ref.kind is RecipientKind.MOBILE and not _MOBILE.match(ref.value):
        return f"mobile: must be followed by a phone number (digits, optional + and dashes), got {ref.value!r}"
    if ref.kind is RecipientKind.UNIONID and not _UNIONID.match(ref.value):
        return f"unionid: must be followed by a DingTalk unionid (letters, digits, -_+=/.), got {ref.value!r}"
    return None

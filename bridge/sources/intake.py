"""The one intake: a source's bytes (and the request's headers) → an `ApprovalEvent`, for every format.

Why it exists: the webhook receiver (bridge.web) and `bridge ingest` (bridge.cli.ingest) both turn raw
bytes into an event, and used to choose between the canonical format, a mapped format and the native
platforms each in their own words. Here that choice is made once: `decode` picks the native platform's
handler (which verifies, decrypts and may answer a handshake itself), the mapping, or the canonical
parser, from the source's configuration. Signatures of bridge's own formats are the caller's business
(the receiver verifies them before decoding; ingest trusts whoever can write its file).

`first_event_problems` is the other half both callers share: the first event of an approval that makes
a card must carry title, recipients and url, unless an earlier event already stored them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge import canonical_fast, event_checks, events
from bridge.config import ServerConfig, SourceConfig
from bridge.errors import Problem
from bridge.secret import Secret
from bridge.sources import mapping, native

__all__ = ["CardDataLookup", "Intake", "decode", "first_event_problems", "redact", "source_secrets", "window_of"]


@dataclass(frozen=True, slots=True)
class Intake:
    """What one request or line brought: the event to store (None for a platform handshake) and, for native
    sources, the answer the platform expects (None: the caller answers in bridge's own JSON)."""

    event: events.ApprovalEvent | None
    reply: native.Reply | None = None
    checked: bool = False  # the event already passed event_checks' rules (the canonical fast lane's)


def decode(
    source: SourceConfig,
    body: bytes,
    now: datetime,
    *,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    webhook_id: str | None = None,
    window: event_checks.TimeWindow = event_checks.DEFAULT_WINDOW,
) -> Intake:
    """Decode `body` by the source's format. Raises the `InputError` that names what is wrong (400 malformed
    or invalid, 401 for a native platform's bad signature); `webhook_id` is the verified delivery id used
    as the event id when the body carries none. Every decoded event, whatever its format, then passes
    `event_checks.check_event` (links, lengths, characters, `occurred_at` inside `window` around `now`)."""
    intake = _decode(source, body, now, method=method, query=query, headers=headers, webhook_id=webhook_id,
                     window=window)
    if intake.event is not None and not intake.checked and (
            problems := event_checks.check_event(intake.event, now, window)):
        raise events.invalid(problems)
    return intake


def _decode(source: SourceConfig, body: bytes, now: datetime, *, method: str, query: Mapping[str, str] | None,
            headers: Mapping[str, str] | None, webhook_id: str | None, window: event_checks.TimeWindow) -> Intake:
    if source.native is not None:
        result = native.handle(source.native, source.name, method, dict(query or {}), headers or {}, body, now,
                               tolerance_s=source.timestamp_tolerance_s)
        return Intake(result.event, result.reply)
    payload = events.parse_json(body)
    if source.mapping is not None:  # the loader sets it exactly when format = "mapping"
        return Intake(mapping.normalise(source.mapping, source.name, payload, webhook_id=webhook_id, headers=headers))
    fast = canonical_fast.event(source.name, payload, now, window, webhook_id=webhook_id)  # the plainly clean case
    if fast is not None:
        return Intake(fast, checked=True)
    return Intake(events.parse_canonical(source.name, payload, webhook_id=webhook_id))


REDACTED = "****"


def source_secrets(source: SourceConfig) -> list[str]:
    """Every secret a source is configured with: webhook secrets, native tokens and keys."""
    values = [s.reveal() for s in source.secrets]
    if source.native is not None:
        keys = source.native.keys
        found: list[Secret | None]
        if isinstance(keys, native.WxKeys):
            found = [keys.token, keys.aes_key]
        elif isinstance(keys, native.StreamKeys):
            found = [keys.client_secret]
        else:
            found = [keys.verification_token, keys.encrypt_key]
        values += [k.reveal() for k in found if k is not None]
    return [v for v in values if v]


def redact(source: SourceConfig, raw: bytes) -> bytes:
    """`raw` as it may be stored: every configured secret of the source that appears in the body (a Feishu
    plain-mode body carries its Verification Token, the only thing that authenticates it) replaced by ****,
    as written and in its JSON-escaped form. The stored raw body is for audit; secrets never reach the database."""
    for form in _secret_forms(source):
        if form in raw:
            raw = raw.replace(form, REDACTED.encode())
    return raw


_FORMS: dict[int, tuple[SourceConfig, tuple[bytes, ...]]] = {}  # id(source) -> (source, its secret forms)


def _secret_forms(source: SourceConfig) -> tuple[bytes, ...]:
    """Each secret of the source as written and JSON-escaped, longest first: worked out once per source (a
    source's configuration is frozen), not on every request. Keyed by identity: a native source's settings
    hold dicts, so a SourceConfig is not always hashable."""
    cached = _FORMS.get(id(source))
    if cached is not None and cached[0] is source:
        return cached[1]
    if len(_FORMS) >= 256:
        _FORMS.clear()
    forms = _build_forms(source)
    _FORMS[id(source)] = (source, forms)
    return forms


def _build_forms(source: SourceConfig) -> tuple[bytes, ...]:
    forms: list[bytes] = []
    for secret in sorted(source_secrets(source), key=len, reverse=True):
        escaped = (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
        for form in (secret.encode(), *(text.encode() for text in escaped)):
            if form not in forms:
                forms.append(form)
    return tuple(forms)


def window_of(server: ServerConfig) -> event_checks.TimeWindow:
    """The `occurred_at` window `[server]` configures."""
    return event_checks.TimeWindow(max_future_s=server.max_future_s, max_age_days=server.max_age_days)


class CardDataLookup(Protocol):
    """The one store read the first-event check needs (every `bridge.store.Store` has it)."""

    async def has_card_data(self, source: str, approval_id: str) -> bool: ...


async def first_event_problems(st: CardDataLookup, event: events.ApprovalEvent) -> list[Problem]:
    """The card fields this event lacks although no earlier event of its approval stored them; [] when it may
    be stored. Events that make no card (no status, or a deletion) need none."""
    if event.has_card_data or event.status in (None, events.Status.DELETED):
        return []
    problems = events.missing_card_fields(event)
    if problems and not await st.has_card_data(event.source, event.approval_id):
        return list(problems)
    return []

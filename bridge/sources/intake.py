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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge import events
from bridge.config import SourceConfig
from bridge.errors import Problem
from bridge.sources import mapping, native

__all__ = ["CardDataLookup", "Intake", "decode", "first_event_problems"]


@dataclass(frozen=True, slots=True)
class Intake:
    """What one request or line brought: the event to store (None for a platform handshake) and, for native
    sources, the answer the platform expects (None: the caller answers in bridge's own JSON)."""

    event: events.ApprovalEvent | None
    reply: native.Reply | None = None


def decode(
    source: SourceConfig,
    body: bytes,
    now: datetime,
    *,
    method: str = "POST",
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    webhook_id: str | None = None,
) -> Intake:
    """Decode `body` by the source's format. Raises the `InputError` that names what is wrong (400 malformed
    or invalid, 401 for a native platform's bad signature); `webhook_id` is the verified delivery id used
    as the event id when the body carries none."""
    if source.native is not None:
        result = native.handle(source.native, source.name, method, dict(query or {}), headers or {}, body, now,
                               tolerance_s=source.timestamp_tolerance_s)
        return Intake(result.event, result.reply)
    payload = events.parse_json(body)
    if source.mapping is not None:  # the loader sets it exactly when format = "mapping"
        return Intake(mapping.normalise(source.mapping, source.name, payload, webhook_id=webhook_id, headers=headers))
    return Intake(events.parse_canonical(source.name, payload, webhook_id=webhook_id))


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

"""Rejected webhooks in the journal, aggregated: "source erp: 37 signature failures in the last minute".

Why it exists: the runbook sends on-call to `bridge tail` first, yet refused webhooks (bad signature, unknown
source, bad JSON) were only in stderr and /metrics. One journal line per rejection would let an attacker fill
the disk, so rejections are counted in memory per (source, error code) and written once a minute as one line
each: at most (configured sources + 1) × (error codes) lines a minute, whatever the flood. No body, header or
secret is kept; an unknown source name is counted as `_unknown`, never stored as sent. The clock is injected,
so tests move time instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from bridge.clock import Clock
from bridge.errors import StorageUnavailable
from bridge.records import NewJournal
from bridge.store import Store

__all__ = ["KIND", "WINDOW_S", "RejectionLog"]

KIND = "webhook.rejected"
WINDOW_S = 60.0
_WHAT = {
    "signature_invalid": "signature failures",
    "unknown_source": "requests for an unknown source",
    "malformed_payload": "malformed bodies",
    "invalid_event": "invalid events",
    "payload_too_large": "bodies over max_body_bytes",
    "unsupported_media_type": "bodies that are not JSON",
    "request_timeout": "bodies sent too slowly",
}


class RejectionLog:
    """Counts rejections and flushes them to the store's journal once per window."""

    def __init__(self, store: Store, clock: Clock, window_s: float = WINDOW_S) -> None:
        self.store, self.clock, self.window_s = store, clock, window_s
        self.counts: Counter[tuple[str, str]] = Counter()
        self._since = clock.monotonic()

    def note(self, source: str, code: str) -> None:
        """One rejection; `source` must already be a configured name or "_unknown" (it is stored)."""
        self.counts[(source, code)] += 1

    def due(self) -> bool:
        return self.clock.monotonic() - self._since >= self.window_s

    async def flush(self) -> int:
        """Write one journal line per (source, code) counted since the last flush; the number written."""
        self._since = self.clock.monotonic()
        if not self.counts:
            return 0
        counts, self.counts = self.counts, Counter()
        entries = [
            NewJournal(kind=KIND, message=f"source {source}: {n} {_WHAT.get(code, code)} in the last minute",
                       source=source, data={"error": code, "count": n})
            for (source, code), n in sorted(counts.items())
        ]
        await self.store.append_journal(entries, self.clock.now())
        return len(entries)

    async def run(self, poll_s: float = 5.0) -> None:
        """Flush whenever a window has passed on the injected clock, until cancelled (the app runs this beside
        the worker). It polls in real seconds, so a FakeClock never makes it spin."""
        while True:
            await asyncio.sleep(poll_s)
            if self.due():
                try:
                    await self.flush()
                except StorageUnavailable:
                    pass  # the counts of that minute are lost; the next minute is counted afresh

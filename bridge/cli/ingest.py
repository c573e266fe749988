"""`bridge ingest`: events from a JSON-lines file (or stdin) instead of webhooks.

For systems that write approval events to a log. Each line goes through the same parsing, validation,
de-duplication and durable storage as a webhook (signatures aside: whoever can write the file is
trusted). Bad lines are reported with their line number and skipped, never silently lost. With
`follow`, the file is read like `tail -f`: new lines are picked up as they are appended, and a line is
only taken once it is complete (ends with a newline).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from bridge import errors, events
from bridge.clock import Clock
from bridge.config import SourceConfig
from bridge.sources import intake
from bridge.store import Store


@dataclass
class IngestStats:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0
    blank: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.lines} lines: {self.accepted} accepted, {self.duplicates} duplicates, "
                f"{self.bad} bad, {self.blank} blank")


def normalise_line(source: SourceConfig, raw: bytes, now: datetime) -> events.ApprovalEvent:
    """One line → its event, decoded the way a webhook body of the same source is (bridge.sources.intake)."""
    event = intake.decode(source, raw, now).event
    if event is None:  # a native platform's handshake: ingest refuses native sources before it gets here
        raise errors.MalformedPayload("the line is a handshake, not an approval event")
    return event


async def read_lines(stream: IO[bytes], *, follow: bool, poll_s: float = 0.2,
                     stop: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """Complete lines from a binary stream; with follow, keep waiting for more at EOF."""
    pending = b""
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(None, stream.readline)
        if chunk:
            pending += chunk
            if pending.endswith(b"\n"):
                yield pending
                pending = b""
            continue
        if not follow or (stop is not None and stop.is_set()):
            break
        await asyncio.sleep(poll_s)
    if pending:
        yield pending


async def ingest(
    st: Store,
    source: SourceConfig,
    lines: AsyncIterator[bytes],
    clock: Clock,
    *,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    progress: Callable[[IngestStats], None] | None = None,
    progress_every: int = 1000,
) -> IngestStats:
    stats = IngestStats()
    async for raw in lines:
        stats.lines += 1
        if not raw.strip():
            stats.blank += 1
            continue
        try:
            event = normalise_line(source, raw.rstrip(b"\r\n"), clock.now())
            problems = await intake.first_event_problems(st, event)
            if problems:
                raise errors.EventInvalid(
                    f"first event for approval {event.approval_id!r} must carry "
                    + ", ".join(p.field for p in problems), problems=problems)
        except errors.InputError as exc:
            stats.bad += 1
            detail = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
            message = f"line {stats.lines}: {exc.message}" + (f" ({detail})" if detail else "")
            stats.problems.append(message)
            report(message)
            continue
        result = await st.add_event(event, intake.redact(source, raw.rstrip(b"\r\n")), clock.now())
        if result.inserted:
            stats.accepted += 1
        else:
            stats.duplicates += 1
        if progress is not None and stats.lines % progress_every == 0:
            progress(stats)
    return stats

"""`bridge ingest`: events from a JSON-lines file (or stdin) instead of webhooks.

For systems that write approval events to a log. Each line goes through the same parsing, validation,
de-duplication and durable storage as a webhook (signatures aside: whoever can write the file is
trusted). Bad lines are reported with their line number and skipped, never silently lost. With
`follow`, the file is read like `tail -f`: new lines are picked up as they are appended, and a line is
only taken once it is complete (ends with a newline).
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from bridge import errors, events
from bridge import records as store
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


def size_of(stream: IO[bytes]) -> int | None:
    """The size of a regular file (for the progress bar's fraction); None for a pipe or a terminal."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


class LineReader:
    """Complete lines from a binary stream, a chunk at a time (one trip to a thread per 256 KiB, not per line);
    `bytes_read` is how far into the stream it is, for the progress bar's fraction. With `follow` it keeps
    waiting for more at EOF; a line is only yielded once it ends with a newline (the rest, at the very end
    of a stream that is not followed)."""

    CHUNK = 256 * 1024

    def __init__(self, stream: IO[bytes], *, follow: bool, poll_s: float = 0.2, stop: asyncio.Event | None = None):
        self.stream, self.follow, self.poll_s, self.stop = stream, follow, poll_s, stop
        self.bytes_read = 0

    def _read(self) -> bytes:
        read1 = getattr(self.stream, "read1", None)  # a pipe: what is there, without waiting for a full chunk
        return read1(self.CHUNK) if read1 is not None else self.stream.read(self.CHUNK)

    async def batches(self) -> AsyncIterator[list[bytes]]:
        loop = asyncio.get_running_loop()
        pending = b""
        while True:
            chunk = await loop.run_in_executor(None, self._read)
            if chunk:
                self.bytes_read += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                if lines:
                    yield [line + b"\n" for line in lines]
                continue
            if not self.follow or (self.stop is not None and self.stop.is_set()):
                break
            await asyncio.sleep(self.poll_s)
        if pending:
            yield [pending]


async def read_lines(stream: IO[bytes], *, follow: bool, poll_s: float = 0.2,
                     stop: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """Complete lines from a binary stream, one by one (see LineReader)."""
    async for batch in LineReader(stream, follow=follow, poll_s=poll_s, stop=stop).batches():
        for line in batch:
            yield line


@dataclass
class _Pending:
    """Lines decoded and waiting for their batch's commit."""

    adds: list[tuple[events.ApprovalEvent, bytes]] = field(default_factory=list)


async def ingest(
    st: Store,
    source: SourceConfig,
    batches: AsyncIterator[list[bytes]],
    clock: Clock,
    *,
    report: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    progress: Callable[[IngestStats], None] | None = None,
    progress_every: int | None = None,
    batch_max: int = 512,
) -> IngestStats:
    """Decode, check and store every line of `batches`. Lines are decoded one by one (bad ones reported with
    their number as they are met) and stored `batch_max` at a time: all of a batch's `add_event` calls are in
    the store's queue together, so the store commits them in a few transactions instead of one per line (each
    line is still de-duplicated as a webhook would be). A batch also ends at every multiple of
    `progress_every`, so `progress` sees exact totals there; otherwise `progress` is called after each batch.
    The first-event check knows the approvals this run has already seen with card data, since a batch's
    earlier lines are not in the store yet when its later ones are checked."""
    stats = IngestStats()
    pending = _Pending()
    with_card: set[str] = set()  # approval ids of this run's lines that carried card data, not yet committed
    inflight: list[asyncio.Future[list[store.AddResult]]] = []  # the batch being committed while more decode

    async def settle() -> None:
        if inflight:
            for result in await inflight.pop():
                if result.inserted:
                    stats.accepted += 1
                else:
                    stats.duplicates += 1
            if progress is not None:
                progress(stats)

    async def flush(*, wait: bool) -> None:
        """Hand the decoded lines to the store as one batch. The previous batch must be committed first (its
        approvals are then in the store for the first-event check), but this one is not waited for unless
        `wait`: SQLite commits it on its thread while the next lines decode here."""
        await settle()
        with_card.clear()
        if pending.adds:
            now = clock.now()
            adds, pending.adds = pending.adds, []
            inflight.append(asyncio.gather(*(st.add_event(ev, raw, now) for ev, raw in adds)))
            for ev, _raw in adds:
                if ev.has_card_data:
                    with_card.add(ev.approval_id)
        if wait:
            await settle()
        elif progress is not None and not inflight:
            progress(stats)

    async for batch in batches:
        for raw in batch:
            stats.lines += 1
            if not raw.strip():
                stats.blank += 1
            elif (taken := await _take(st, source, raw.rstrip(b"\r\n"), clock, stats, report, with_card)) is not None:
                pending.adds.append(taken)
            if progress_every and stats.lines % progress_every == 0:
                await flush(wait=True)  # exact totals for the progress line
            elif len(pending.adds) >= batch_max:
                await flush(wait=False)
        await flush(wait=False)
    await flush(wait=True)
    return stats


async def _take(st: Store, source: SourceConfig, line: bytes, clock: Clock, stats: IngestStats,
                report: Callable[[str], None], with_card: set[str]) -> tuple[events.ApprovalEvent, bytes] | None:
    """One non-blank line → (event, raw body to store), or None after counting and reporting it as bad."""
    try:
        event = normalise_line(source, line, clock.now())
        if event.approval_id not in with_card:
            await _check_first_event(st, event)
    except errors.InputError as exc:
        stats.bad += 1
        detail = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
        message = f"line {stats.lines}: {exc.message}" + (f" ({detail})" if detail else "")
        stats.problems.append(message)
        report(message)
        return None
    if event.has_card_data:
        with_card.add(event.approval_id)
    return event, intake.redact(source, line)


async def _check_first_event(st: Store, event: events.ApprovalEvent) -> None:
    problems = await intake.first_event_problems(st, event)
    if problems:
        raise errors.EventInvalid(
            f"first event for approval {event.approval_id!r} must carry "
            + ", ".join(p.field for p in problems), problems=problems)

"""`bridge ingest`'s progress: a bar redrawn in place on a terminal, nothing but a summary line elsewhere.

Why two forms: a person watching a terminal wants to see the count grow, the rate and, when the input's size
is known (a regular file), how far through it is and how long is left: the fraction is bytes read over the
file's size, so it is right however long the lines are. A log file or a pipe wants no carriage returns, only
the one summary line at the end (and, with `--progress-every N`, a line every N lines). The clock is a
callable returning monotonic seconds and the stream any text stream, so tests drive both forms exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["Counts", "Progress", "format_duration"]

BAR_WIDTH = 20
REDRAW_S = 0.1  # a terminal line redrawn at most ten times a second


class Counts(Protocol):
    """What the bar shows of ingest's running totals (IngestStats)."""

    @property
    def lines(self) -> int: ...

    def summary(self) -> str: ...


def format_duration(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Shows ingest's progress on `stream`. `tty` chooses the form; `total_bytes` (None when unknown: a pipe,
    or a file being followed) enables the percentage and the ETA; `every` prints a plain line each N lines."""

    def __init__(self, stream: TextIO, clock: Callable[[], float], *, tty: bool, total_bytes: int | None = None,
                 every: int | None = None) -> None:
        self.stream, self.clock, self.tty = stream, clock, tty
        self.total_bytes = total_bytes if total_bytes else None
        self.every = every
        self.started = clock()
        self._drawn_at: float | None = None
        self._shown = False  # a bar is on the current terminal line
        self._next_line = every or 0

    def rate(self, lines: int) -> float:
        elapsed = self.clock() - self.started
        return lines / elapsed if elapsed > 0 else 0.0

    def bar(self, counts: Counts, bytes_read: int) -> str:
        """The terminal line: count, rate and, with a known size, a bar, the percentage and the ETA."""
        rate = self.rate(counts.lines)
        text = f"ingest {counts.lines:,} lines  {rate:,.0f} lines/s"
        if self.total_bytes:
            fraction = min(1.0, bytes_read / self.total_bytes)
            filled = round(fraction * BAR_WIDTH)
            elapsed = self.clock() - self.started
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            text += (f"  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}"
                     f"  ETA {format_duration(eta) if eta is not None else '?'}")
        return text

    def update(self, counts: Counts, bytes_read: int) -> None:
        """Called after each batch of lines: redraws the bar (tty, at most every REDRAW_S) and prints the
        `every` lines that are due."""
        if self.every and counts.lines >= self._next_line:
            self.note(f"… {counts.summary()}")
            self._next_line = (counts.lines // self.every + 1) * self.every
        if not self.tty:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < REDRAW_S:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.bar(counts, bytes_read) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def note(self, message: str) -> None:
        """A line of its own (a bad line's report, a periodic count) that the bar must not overwrite."""
        self._clear()
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self, counts: Counts) -> str:
        """Clears the bar; returns the one summary line, with the overall rate."""
        self._clear()
        elapsed = self.clock() - self.started
        return f"{counts.summary()} in {elapsed:.1f} s ({self.rate(counts.lines):,.0f} lines/s)"

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False
            self._drawn_at = None

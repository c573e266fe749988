"""`bridge ingest`'s progress: a bar redrawn in place on a terminal, only the summary line elsewhere.

The clock and the stream are injected, so the bar's rate, percentage and ETA are exact numbers here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from bridge.cli.ingest import IngestStats
from bridge.cli.progress import Progress, format_duration


@dataclass
class Ticker:
    t: float = 100.0

    def __call__(self) -> float:
        return self.t


def stats(lines: int, accepted: int | None = None) -> IngestStats:
    return IngestStats(lines=lines, accepted=lines if accepted is None else accepted)


def test_on_a_terminal_the_bar_shows_count_rate_percentage_and_eta_in_place() -> None:
    out, clock = io.StringIO(), Ticker()
    p = Progress(out, clock, tty=True, total_bytes=1000)
    clock.t += 2.0
    p.update(stats(10_000), bytes_read=250)
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\x1b[K") and "\n" not in text
    assert "ingest 10,000 lines  5,000 lines/s" in text
    assert "[#####...............]  25%" in text and "ETA 0:06" in text  # 2 s for a quarter: 6 s to go
    p.update(stats(10_001), bytes_read=251)  # no time has passed: not redrawn
    assert out.getvalue() == text


def test_the_bar_is_redrawn_at_most_ten_times_a_second_and_cleared_at_the_end() -> None:
    out, clock = io.StringIO(), Ticker()
    p = Progress(out, clock, tty=True, total_bytes=None)
    for i in range(1, 11):
        clock.t += 0.01
        p.update(stats(i * 100), bytes_read=i)
    assert out.getvalue().count("\r") == 1  # the first draw only: 0.09 s later is too soon
    clock.t += 0.1
    p.update(stats(2000), bytes_read=20)
    assert out.getvalue().count("\r") == 2 and "ETA" not in out.getvalue()  # size unknown: no ETA
    line = p.finish(stats(2000))
    assert out.getvalue().endswith("\r\x1b[K")
    assert line == "2000 lines: 2000 accepted, 0 duplicates, 0 bad, 0 blank in 0.2 s (10,000 lines/s)"


def test_a_bad_line_report_clears_the_bar_and_gets_a_line_of_its_own() -> None:
    out, clock = io.StringIO(), Ticker()
    p = Progress(out, clock, tty=True, total_bytes=100)
    clock.t += 1
    p.update(stats(5), bytes_read=10)
    p.note("line 6: invalid JSON")
    assert out.getvalue().endswith("\r\x1b[Kline 6: invalid JSON\n")
    p.update(stats(7), bytes_read=20)  # redrawn at once after a note
    assert out.getvalue().endswith("\x1b[K") and "ingest 7 lines" in out.getvalue().splitlines()[-1]


def test_not_on_a_terminal_nothing_is_drawn_only_the_summary_line() -> None:
    out, clock = io.StringIO(), Ticker()
    p = Progress(out, clock, tty=False, total_bytes=1000)
    for i in range(1, 50):
        clock.t += 0.5
        p.update(stats(i * 1000), bytes_read=i * 10)
    assert out.getvalue() == ""
    p.note("line 3: bad")
    assert out.getvalue() == "line 3: bad\n"  # no control characters in a log file
    assert p.finish(stats(49_000)).endswith("in 24.5 s (2,000 lines/s)")
    assert out.getvalue() == "line 3: bad\n"


def test_progress_every_prints_a_plain_line_each_n_lines() -> None:
    out, clock = io.StringIO(), Ticker()
    p = Progress(out, clock, tty=False, every=1000)
    for lines in (500, 1000, 1500, 2600, 2700):
        p.update(stats(lines), bytes_read=0)
    assert out.getvalue().splitlines() == ["… 1000 lines: 1000 accepted, 0 duplicates, 0 bad, 0 blank",
                                           "… 2600 lines: 2600 accepted, 0 duplicates, 0 bad, 0 blank"]


def test_durations() -> None:
    assert [format_duration(s) for s in (0, 6.4, 65, 3723)] == ["0:00", "0:06", "1:05", "1:02:03"]

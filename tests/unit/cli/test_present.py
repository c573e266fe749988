"""Terminal output: widths measured on screen (CJK two cells, colour codes none), times with their offset,
NO_COLOR."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from bridge.cli import common, present


def test_cells_counts_wide_characters_twice_and_colour_codes_not_at_all() -> None:
    assert present.cells("abc") == 3
    assert present.cells("待审批") == 6
    assert present.cells("\033[33mpending\033[0m") == 7
    assert present.cells("\033[32m已同意\033[0m") == 6


def test_padded_columns_line_up_whatever_the_text() -> None:
    rows = ["done", "\033[31mdead\033[0m", "已撤销", "\033[33m待审批\033[0m"]
    padded = [present.pad(r, 9) + "|" for r in rows]
    assert {present.cells(p) for p in padded} == {10}
    assert present.pad("too long for it", 3) == "too long for it"


def test_job_lines_align_with_and_without_colour() -> None:
    job = {"id": 7, "kind": "update", "state": "dead", "source": "erp", "approval_id": "PO-1", "attempts": 1,
           "run_at": "2026-12-01T06:00:00+00:00", "last_error": None}
    plain = present.job_line(job, present.Style(colour=False, utc=True))
    coloured = present.job_line(job, present.Style(colour=True, utc=True))
    assert "\033[31m" in coloured
    assert present.cells(coloured) == present.cells(plain)
    assert plain.endswith("run_at=2026-12-01 06:00:00+00:00")


def test_times_in_the_local_zone_with_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        at = datetime(2026, 12, 1, 6, 0, 0, 123456, tzinfo=UTC)
        assert present.Style(False).when(at) == "2026-12-01 14:00:00+08:00"
        assert present.Style(False).when("2026-12-01T06:00:00+00:00") == "2026-12-01 14:00:00+08:00"
        assert present.Style(False, utc=True).when(at) == "2026-12-01 06:00:00+00:00"
        assert present.Style(False).when(None) == "-"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert common.colour_wanted(_Tty()) is True
    assert common.colour_wanted(io.StringIO()) is False
    assert common.colour_wanted(_Tty(), json_output=True) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert common.colour_wanted(_Tty()) is False
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: only a non-empty value counts
    assert common.colour_wanted(_Tty()) is True

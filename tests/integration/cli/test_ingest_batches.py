"""`bridge ingest` stores lines in batches: what that must not change (counts, order, the first-event rule).

Lines are decoded one by one and handed to the store a batch at a time, the next batch decoding while the
previous one commits. An approval's first event may be in the same batch as its later ones (not yet in the
store when they are checked), duplicates still count as duplicates, and progress sees exact totals.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.cli import ingest
from bridge.clock import FakeClock
from bridge.config import SourceConfig
from bridge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

AT = "2026-11-29T10:00:00+08:00"


def line(approval: str, status: str, *, card: bool) -> bytes:
    ev: dict[str, object] = {"event_id": f"{approval}-{status}", "approval_id": approval, "status": status,
                             "occurred_at": AT}
    if card:
        ev |= {"title": "采购申请", "recipients": ["u1"], "url": "https://erp.example.com/po/1"}
    return json.dumps(ev, ensure_ascii=False).encode() + b"\n"


async def test_batches_keep_counts_order_and_the_first_event_rule(tmp_path: Path) -> None:
    lines = [line("A", "pending", card=True), line("A", "approved", card=False),  # same batch: A is known
             line("B", "approved", card=False),  # B never carried its card: bad
             line("C", "pending", card=True), b"\n", line("A", "approved", card=False),  # a duplicate
             line("C", "rejected", card=False)]  # C's first event is in the batch before, committed by now
    stream = io.BytesIO(b"".join(lines))
    st = SQLiteStore(tmp_path / "b.db")
    await st.open()
    seen: list[tuple[int, int]] = []
    reports: list[str] = []
    try:
        reader = ingest.LineReader(stream, follow=False)
        reader.CHUNK = 100  # several reads, lines split across them
        stats = await ingest.ingest(st, SourceConfig(name="erp"), reader.batches(),
                                    FakeClock(datetime(2026, 11, 29, 3, tzinfo=UTC)), report=reports.append,
                                    progress=lambda s: seen.append((s.lines, s.accepted)), batch_max=2)
        ids = [r.event.event_id for r in sorted(await st.pending_events(), key=lambda r: r.id)]
    finally:
        await st.close()
    assert (stats.lines, stats.accepted, stats.duplicates, stats.bad, stats.blank) == (7, 4, 1, 1, 1)
    assert len(reports) == 1 and reports[0].startswith("line 3: first event for approval 'B'")
    assert reader.bytes_read == len(b"".join(lines))
    assert ids == ["A-pending", "A-approved", "C-pending", "C-rejected"]
    assert seen[-1] == (7, 4) and [a for _, a in seen] == sorted(a for _, a in seen)

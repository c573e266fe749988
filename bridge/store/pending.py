"""`Store.pending_batch` for the memory store: `pending_events`, then each approval's row and notices read one
after the other, which costs nothing there (no I/O). SQLite reads the approvals and notices of the whole batch in
one query each (bridge.store.sqlite_reads); PostgreSQL in the same statement as its take_pending (bridge_pending,
bridge.store.postgres_decide.pending_body)."""

from __future__ import annotations

from typing import Protocol

from bridge.records import Approval, InboxEvent, Notice, Pending

__all__ = ["read_pending"]


class _Reads(Protocol):
    async def pending_events(self, limit: int = 100) -> list[InboxEvent]: ...

    async def get_approval(self, source: str, approval_id: str) -> Approval | None: ...

    async def notices_for(self, source: str, approval_id: str) -> list[Notice]: ...


async def read_pending(st: _Reads, limit: int) -> Pending:
    events = await st.pending_events(limit)
    approvals: dict[tuple[str, str], Approval] = {}
    notices: dict[tuple[str, str], tuple[Notice, ...]] = {}
    for key in dict.fromkeys((ie.event.source, ie.event.approval_id) for ie in events):
        if (found := await st.get_approval(*key)) is not None:
            approvals[key] = found
            notices[key] = tuple(await st.notices_for(*key))
    return Pending(events=tuple(events), approvals=approvals, notices=notices)

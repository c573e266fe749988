"""The MemoryStore's shared DingTalk tokens (the Store protocol's token lease), kept apart to keep memory.py small.

Same semantics as the SQL stores (bridge.store.shared_sql): one row per app key hash with a version, the sealed
token, its expiry and at most one unexpired refresh lease.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bridge.records import SharedToken
from bridge.store.memory_recipients import MemoryResolutions
from bridge.store.memory_values import utc

__all__ = ["MemoryTokens"]


class MemoryTokens(MemoryResolutions):
    """Token rows in a dict, plus the resolutions; `_reset_side_tables` empties both."""

    tokens: dict[str, SharedToken]

    def _reset_side_tables(self) -> None:
        self.resolutions = {}
        self.tokens = {}

    async def get_token(self, key: str) -> SharedToken | None:
        return self.tokens.get(key)

    async def claim_token_refresh(self, key: str, owner: str, seen_version: int, now: datetime,
                                  lease_s: float) -> bool:
        now = utc(now)
        self._writable()
        row = self.tokens.get(key) or SharedToken(key=key, version=0)
        held = row.lease_owner not in (None, owner) and row.lease_until is not None and row.lease_until > now
        if row.version > seen_version or held:
            self.tokens.setdefault(key, row)
            return False
        self.tokens[key] = replace(row, lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
        return True

    async def save_token(self, key: str, owner: str, sealed: bytes, expires_at: datetime) -> int:
        expires_at = utc(expires_at)
        self._writable()
        row = self.tokens.get(key) or SharedToken(key=key, version=0)
        mine = row.lease_owner == owner
        self.tokens[key] = replace(row, version=row.version + 1, sealed=bytes(sealed), expires_at=expires_at,
                                   lease_owner=None if mine else row.lease_owner,
                                   lease_until=None if mine else row.lease_until)
        return row.version + 1

    async def release_token_refresh(self, key: str, owner: str) -> None:
        self._writable()
        row = self.tokens.get(key)
        if row is not None and row.lease_owner == owner:
            self.tokens[key] = replace(row, lease_owner=None, lease_until=None)

"""The MemoryStore's recipient resolutions (mobile:/unionid: → userid), kept apart to keep memory.py small."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bridge.records import Resolution
from bridge.store.memory_values import utc

__all__ = ["MemoryResolutions"]


class MemoryResolutions:
    """`get_resolutions` / `save_resolutions` over a dict; the store provides `_writable` (fail_writes)."""

    resolutions: dict[str, Resolution]

    def _writable(self) -> None:
        raise NotImplementedError

    async def get_resolutions(self, keys: Sequence[str]) -> dict[str, Resolution]:
        return {k: self.resolutions[k] for k in keys if k in self.resolutions}

    async def save_resolutions(self, resolutions: Sequence[Resolution]) -> None:
        self._writable()
        checked = [replace(r, resolved_at=utc(r.resolved_at), expires_at=utc(r.expires_at)) for r in resolutions]
        self.resolutions.update((r.key, r) for r in checked)

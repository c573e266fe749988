"""Turning `mobile:` / `unionid:` recipients into DingTalk userids, in the worker, just before a send.

Why here and not when the event arrives: the receiver answers within DingTalk-free milliseconds and makes no
outbound call, so a slow or throttled directory lookup can never cost a webhook its 202. The send job asks the
`Resolver`, which reads the store's shared cache first (one lookup per number per TTL across every process), asks
DingTalk for the rest through the same client as every other call (token, rate limit, error classification),
and stores what it learnt. Userids are per org, so each DingTalk app has its own resolver and its cache keys
carry the app's name ("hr/mobile:138…"). A number DingTalk does not know (an errcode in `[dingtalk]
unknown_user_codes`) is recorded against that recipient and cached for the shorter `unknown_recipient_ttl_s`;
the other recipients are sent to. Any other error (throttling, a network fault, a missing permission) fails
the send job, which retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from bridge import errors, logs, recipients
from bridge.clock import Clock
from bridge.config import DEFAULT_APP, DingTalkConfig
from bridge.recipients import RecipientKind, Reference
from bridge.records import Resolution

__all__ = ["Directory", "ResolutionStore", "Resolved", "Resolver"]

log = logs.get_logger("bridge.resolve")


class Directory(Protocol):
    """The two lookups of `bridge.dingtalk.Client` (the fake client has them too)."""

    async def userid_by_mobile(self, mobile: str) -> str: ...
    async def userid_by_unionid(self, unionid: str) -> str: ...


class ResolutionStore(Protocol):
    """The part of the Store the resolver uses."""

    async def get_resolutions(self, keys: Sequence[str]) -> dict[str, Resolution]: ...
    async def save_resolutions(self, resolutions: Sequence[Resolution]) -> None: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """The userids to send to (given order, each once), what each prefixed recipient became, and which failed."""

    userids: tuple[str, ...]
    resolved: dict[str, str] = field(default_factory=dict)  # "mobile:138…" -> userid
    unknown: dict[str, str] = field(default_factory=dict)  # "mobile:138…" -> why not
    looked_up: int = 0  # how many DingTalk calls this took (the rest came from the cache)


class Resolver:
    """Resolves a notice's recipients through the store's cache and DingTalk's directory."""

    def __init__(self, st: ResolutionStore, directory: Directory, clock: Clock, cfg: DingTalkConfig, *,
                 app: str = DEFAULT_APP) -> None:
        self.store = st
        self.directory = directory
        self.clock = clock
        self.cfg = cfg
        self.app = app  # userids are per org: the same number is another userid in another app's org

    def key(self, ref: Reference) -> str:
        """The cache key of a recipient in this resolver's app: "APP/mobile:138…"."""
        return f"{self.app}/{ref.key}"

    @staticmethod
    def needed(given: Sequence[str]) -> bool:
        return any(recipients.parse(r) is not None for r in given)

    async def resolve(self, given: Sequence[str]) -> Resolved:
        refs = [ref for r in given if (ref := recipients.parse(r)) is not None]
        now = self.clock.now()
        cached = await self.store.get_resolutions([self.key(ref) for ref in refs])
        fresh = {k: r for k, r in cached.items() if r.expires_at > now}
        learnt: list[Resolution] = []
        try:
            for ref in refs:
                if self.key(ref) not in fresh and all(x.key != self.key(ref) for x in learnt):
                    learnt.append(await self._look_up(ref))
        finally:  # what was learnt before a failed lookup is kept: the retry does not ask again
            if learnt:
                await self.store.save_resolutions(learnt)
        known = {**fresh, **{r.key: r for r in learnt}}
        userids: list[str] = []
        resolved: dict[str, str] = {}
        unknown: dict[str, str] = {}
        for r in given:
            ref = recipients.parse(r)
            entry = known.get(self.key(ref)) if ref is not None else None
            if entry is None:  # a plain userid
                userids.append(r)
            elif entry.userid is None:
                unknown[r] = entry.error or "unknown to DingTalk"
            else:
                resolved[r] = entry.userid
                userids.append(entry.userid)
        return Resolved(userids=tuple(dict.fromkeys(userids)), resolved=resolved, unknown=unknown,
                        looked_up=len(learnt))

    async def _look_up(self, ref: Reference) -> Resolution:
        now = self.clock.now()
        try:
            if ref.kind is RecipientKind.MOBILE:
                userid = await self.directory.userid_by_mobile(ref.value)
            else:
                userid = await self.directory.userid_by_unionid(ref.value)
        except errors.PermanentDingTalkError as exc:
            if exc.errcode not in self.cfg.unknown_user_codes:
                raise
            why = f"unknown to DingTalk ({exc.errcode}: {exc.errmsg or 'no such user'})"
            log.warning("dingtalk.recipient_unknown", recipient=_masked(ref), errcode=exc.errcode)
            return Resolution(key=self.key(ref), userid=None, error=why, resolved_at=now,
                              expires_at=now + timedelta(seconds=self.cfg.unknown_recipient_ttl_s))
        log.info("dingtalk.recipient_resolved", recipient=_masked(ref), userid=userid)
        return Resolution(key=self.key(ref), userid=userid, resolved_at=now,
                          expires_at=now + timedelta(seconds=self.cfg.recipient_ttl_s))


def _masked(ref: Reference) -> str:
    """A mobile number with its middle digits hidden (138****8000) for logs; unionids are not personal data."""
    if ref.kind is RecipientKind.MOBILE and len(ref.value) >= 7:
        return f"mobile:{ref.value[:3]}****{ref.value[-4:]}"
    return ref.key

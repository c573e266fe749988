"""DingTalk access tokens: one per app per expiry, for every Client of the app in this process and, through the
store, for every process of the fleet.

DingTalk issues one token per app (7200 s, the same token while valid) and counts gettoken calls; N processes
each fetching their own would multiply them and, on a token error, stampede. So:

- In a process, `TokenRegistry.entry(base_url, app_key, ...)` is the one `AppToken` of that app: callers share
  one in-flight fetch (waiters wait for it), and the token is reused until 10 minutes before it expires
  (`TOKEN_REFRESH_MARGIN_S`; half the lifetime for short-lived tokens).
- With a store (the Store protocol's token methods), a process due for a token first reads the app's shared row.
  If it holds a token that is still fresh and is not the one DingTalk just refused, it is used: no gettoken.
  Otherwise the process claims the refresh lease (an atomic upsert, granted only if nobody saved a newer token
  since it looked and no other live process holds the lease), calls gettoken, saves the token with its expiry
  and drops the lease. A process that loses the claim polls the row until the new token is there, or until the
  lease runs out (`TOKEN_LEASE_S`: a refresher killed mid-call blocks nobody for long) and it may claim itself;
  a refresher whose gettoken fails releases the lease at once.
- A token error (40014 and friends) invalidates the refused token fleet-wide: the process that saw it refreshes
  only if the stored token is still the refused one; every other process that then sees the error finds the
  newer token in the row. Each process still retries a refused call once, as before.
- The row never holds the token in clear: `TokenSeal` encrypts it with AES-GCM under a key HKDF derives from the
  app secret (only processes that know the secret can read it), bound to the row's key, which is itself a hash
  of base URL and app key (`app_key_hash`), so the database does not name the app key either.
- When the store is unavailable the process fetches on its own (logged): delivering cards matters more than
  the count of gettoken calls while the database is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge import logs
from bridge.clock import Clock
from bridge.dingtalk.wire import TOKEN_REFRESH_MARGIN_S
from bridge.errors import StorageUnavailable
from bridge.records import SharedToken
from bridge.secret import Secret

__all__ = ["AppToken", "Fetch", "TokenRegistry", "TokenSeal", "TokenStore", "app_key_hash"]

log = logs.get_logger(__name__)

TOKEN_LEASE_S = 15.0  # longer than one gettoken (the client's timeout_s, 10 s by default), short enough to wait out
POLL_FIRST_S = 0.05  # a process waiting for another's refresh reads the row again after this, doubling …
POLL_MAX_S = 0.5  # … up to this
_HKDF_INFO = b"bridge dingtalk access token v1"
_NONCE_BYTES = 12

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # one gettoken call: (access_token, expires_in seconds)


class TokenStore(Protocol):
    """The Store protocol's token methods (bridge.store.Store), all this module needs of a store."""

    async def get_token(self, key: str) -> SharedToken | None: ...

    async def claim_token_refresh(self, key: str, owner: str, seen_version: int, now: datetime,
                                  lease_s: float) -> bool: ...

    async def save_token(self, key: str, owner: str, sealed: bytes, expires_at: datetime) -> int: ...

    async def release_token_refresh(self, key: str, owner: str) -> None: ...


def app_key_hash(base_url: str, app_key: str) -> str:
    """The shared row's key for an app: SHA-256 of base URL and app key, hex (the app key never in clear)."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{app_key}".encode()).hexdigest()


def refresh_margin(lifetime_s: float) -> float:
    """How long before expiry a token is refreshed: 10 minutes, or half the lifetime of a short-lived one."""
    return min(TOKEN_REFRESH_MARGIN_S, lifetime_s / 2)


class TokenSeal:
    """AES-256-GCM under a key HKDF-SHA256 derives from the app secret, with the row key as associated data.

    The sealed text holds the token and its lifetime (so every process refreshes at the same point);
    `open` answers None for anything it cannot authenticate: another app secret, another row, tampering."""

    def __init__(self, app_secret: Secret, key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=key.encode(), info=_HKDF_INFO)
        self._aead = AESGCM(derived.derive(app_secret.reveal().encode()))
        self._aad = key.encode()

    def __repr__(self) -> str:
        return "TokenSeal(****)"

    def seal(self, token: str, lifetime_s: float) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps({"token": token, "lifetime_s": lifetime_s}).encode()
        return nonce + self._aead.encrypt(nonce, plain, self._aad)

    def open(self, sealed: bytes) -> tuple[str, float] | None:
        try:
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._aad)
            data = json.loads(plain)
            return str(data["token"]), float(data["lifetime_s"])
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None


class AppToken:
    """One app's access token in this process (see the module docstring). `obtained_at` / `failed_at`:
    `clock.monotonic()` of this process's last good / failed attempt, for /readyz."""

    def __init__(self, key: str, seal: TokenSeal, clock: Clock, store: TokenStore | None, owner: str,
                 lease_s: float) -> None:
        self.key = key
        self._seal = seal
        self._clock = clock
        self._store = store
        self._owner = owner
        self._lease_s = lease_s
        self.token: str | None = None
        self.refresh_at = 0.0
        self.obtained_at: float | None = None
        self.failed_at: float | None = None
        self.fetched = 0  # gettoken calls this process made for the app (tests and logs)
        self._inflight: asyncio.Task[str] | None = None

    def __repr__(self) -> str:
        return f"AppToken(token={'****' if self.token else None}, refresh_at={self.refresh_at})"

    async def get(self, fetch: Fetch, *, force: bool = False, stale: str | None = None) -> str:
        """A valid token. `stale`: the token DingTalk just refused (never handed out again); `force`: a new one
        whatever this process holds. Concurrent callers share one attempt."""
        fresh = self.token is not None and self._clock.monotonic() < self.refresh_at
        if fresh and not force and (stale is None or self.token != stale):
            assert self.token is not None
            return self.token
        if force and stale is None:
            stale = self.token
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not loop:
            if stale is not None and self.token == stale:
                self.token = None  # invalidate, so nobody here picks the refused token up
            task = loop.create_task(self._obtain(fetch, stale, force))
            self._inflight = task
            task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[str]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned refresh does not log "never retrieved"

    async def _obtain(self, fetch: Fetch, stale: str | None, force: bool) -> str:
        if self._store is not None:
            try:
                return await self._shared(self._store, fetch, stale, force)
            except StorageUnavailable as exc:
                log.warning("dingtalk.token_store_unavailable", error=str(exc))
        token, lifetime = await self._fetch(fetch)
        return self._adopt(token, lifetime, self._clock.now() + timedelta(seconds=lifetime))

    async def _fetch(self, fetch: Fetch) -> tuple[str, float]:
        try:
            token, lifetime = await fetch()
        except Exception:
            self.failed_at = self._clock.monotonic()
            raise
        self.fetched += 1
        return token, lifetime

    def _adopt(self, token: str, lifetime: float, expires_at: datetime) -> str:
        refresh_in = (expires_at - self._clock.now()).total_seconds() - refresh_margin(lifetime)
        self.token = token
        self.obtained_at = self._clock.monotonic()
        self.refresh_at = self.obtained_at + refresh_in
        return token

    async def _shared(self, store: TokenStore, fetch: Fetch, stale: str | None, force: bool) -> str:
        pause = POLL_FIRST_S
        skip_version = -1  # with `force`, the version found first is not good enough
        while True:
            now = self._clock.now()
            row = await store.get_token(self.key)
            seen = row.version if row is not None else 0
            if force and skip_version < 0:
                skip_version = seen
            usable = self._usable(row, now, stale, skip_version)
            if usable is not None:
                return self._adopt(*usable)
            if await store.claim_token_refresh(self.key, self._owner, seen, now, self._lease_s):
                return await self._refresh(store, fetch)
            await self._clock.sleep(pause)  # another process is fetching it: read again soon
            pause = min(pause * 2, POLL_MAX_S)

    def _usable(self, row: SharedToken | None, now: datetime, stale: str | None,
                skip_version: int) -> tuple[str, float, datetime] | None:
        if row is None or row.sealed is None or row.expires_at is None or row.version <= skip_version:
            return None
        opened = self._seal.open(row.sealed)
        if opened is None:
            return None  # sealed under another secret (rotated): fetch and overwrite
        token, lifetime = opened
        if token == stale or now >= row.expires_at - timedelta(seconds=refresh_margin(lifetime)):
            return None
        return token, lifetime, row.expires_at

    async def _refresh(self, store: TokenStore, fetch: Fetch) -> str:
        try:
            token, lifetime = await self._fetch(fetch)
        except BaseException:
            with contextlib.suppress(StorageUnavailable):
                await store.release_token_refresh(self.key, self._owner)
            raise
        expires_at = self._clock.now() + timedelta(seconds=lifetime)
        await store.save_token(self.key, self._owner, self._seal.seal(token, lifetime), expires_at)
        return self._adopt(token, lifetime, expires_at)


class TokenRegistry:
    """The `AppToken` of every app in this process, keyed by base URL and app key; with `store`, shared with
    every process on that store. `owner` names this process in refresh leases (host:pid:random)."""

    def __init__(self, store: TokenStore | None = None, *, owner: str | None = None,
                 lease_s: float = TOKEN_LEASE_S) -> None:
        self.store = store
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = lease_s
        self._entries: dict[str, AppToken] = {}

    def __repr__(self) -> str:
        return f"TokenRegistry(apps={len(self._entries)}, shared={self.store is not None})"

    def entry(self, base_url: str, app_key: str, app_secret: Secret, clock: Clock) -> AppToken:
        key = app_key_hash(base_url, app_key)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = AppToken(key, TokenSeal(app_secret, key), clock, self.store, self.owner,
                                                  self.lease_s)
        return found

    def clear(self) -> None:
        self._entries.clear()

"""Native approval callbacks from DingTalk, Feishu and WeCom: config parsing and request handling, in one façade.

Why it exists: besides ERPs that post bridge's own webhook format, approvals may live in DingTalk, Feishu or
WeCom themselves. Each platform calls back with its own encryption, signature, handshake and payload; a source
with `format = "dingtalk" | "feishu" | "wecom"` is handled here. The config loader calls `parse_config`; the
aiohttp handler calls `handle` with the raw request, stores the returned event (if any), then sends the returned
reply. `encode_request` builds the exact request a platform would send, for `bridge send` rehearsals and tests.

Everything here is pure: the time and the randomness (reply nonces, IVs) are passed in. Each platform lives in
its own module (`dingtalk`, `feishu`, `wecom` beside this one; their docstrings say which payload fields
templates and `recipients_path` can use) and is reached through `REGISTRY`, one `Platform` object per format
name, so adding a platform is one module and one registry line instead of a branch in every function here.

Config keys (besides name / format / timestamp_tolerance_s):
- dingtalk: `token`, `aes_key` (43 chars), `app_key` = the receive id: the app's Client ID / appKey for a
  developer-console event subscription, the corpId for the legacy register_call_back API, or the suiteKey for
  a third-party suite. With `transport = "stream"` (Stream mode, no public URL) instead: `client_id`,
  `client_secret`, optional `gateway_url`, `reconnect_base_s`, `reconnect_max_s`, `keepalive_s`.
- feishu: `verification_token` (required), `encrypt_key` (optional; without it bodies are plain JSON and
  authenticated by the token they carry).
- wecom: `token`, `encoding_aes_key` (43 chars), `corp_id` = the receive id (corpid; suiteid for a third-party
  suite; "" for a personal-subject third-party app).
- all: `notify` = "applicant" | "fixed" | "path" (required), `recipients` (DingTalk userids, for fixed),
  `recipients_path` (for path), `id_map` (table: platform id → DingTalk userid), `id_map_passthrough`
  (default false: an id missing from id_map is unresolved), `title_template`, `url_template` (required for
  feishu and wecom, whose callbacks carry no link), `pc_url_template`. Secrets may be inline or "env:NAME".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bridge.errors import ConfigError, UnknownSource
from bridge.secret import Secret, resolve_secret
from bridge.sources.native import dingtalk as native_dingtalk
from bridge.sources.native import feishu as native_feishu
from bridge.sources.native import wecom as native_wecom
from bridge.sources.native.common import (
    FeishuKeys,
    NativeConfig,
    NativeResult,
    Reply,
    Routing,
    WxKeys,
    parse_routing,
    required_str,
    take_str,
)
from bridge.sources.native.crypto import AES_KEY_PATTERN
from bridge.sources.native.stream_keys import StreamKeys

__all__ = [
    "PLATFORMS",
    "REGISTRY",
    "CallbackRequest",
    "FeishuKeys",
    "NativeConfig",
    "NativeResult",
    "Platform",
    "Reply",
    "Routing",
    "StreamKeys",
    "WxKeys",
    "encode_request",
    "handle",
    "native_keys",
    "parse_config",
]

def native_keys(native: NativeConfig) -> tuple[Secret, ...]:
    """A native source's secrets, whatever its platform (for the log scrubber)."""
    keys = native.keys
    if isinstance(keys, WxKeys):
        return (keys.token, keys.aes_key)
    if isinstance(keys, FeishuKeys):
        return (keys.verification_token,) + ((keys.encrypt_key,) if keys.encrypt_key is not None else ())
    return (keys.client_secret,)


Rng = Callable[[int], bytes]
Encoded = tuple[str, dict[str, str], dict[str, str], bytes]


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """One callback as it arrived; each platform reads the parts it signs (query or headers) and the body."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


class KeyTable:
    """Pops a source table's secret keys one by one, with errors that name the key but never its value."""

    def __init__(self, table: dict[str, Any], where: str, env: Mapping[str, str]) -> None:
        self.rest = table
        self.where = where
        self.env = env

    def optional_secret(self, key: str) -> Secret | None:
        value = self.rest.pop(key, None)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}: {key} must be a string (inline, or 'env:NAME')")
        resolved: Secret = resolve_secret(value, f"{self.where}.{key}", self.env)
        if not resolved.reveal():
            raise ConfigError(f"{self.where}: {key} is empty")
        return resolved

    def secret(self, key: str) -> Secret:
        value = self.optional_secret(key)
        if value is None:
            raise ConfigError(f"{self.where}: {key} is required")
        return value

    def aes(self, key: str) -> Secret:
        value = self.secret(key)
        if not AES_KEY_PATTERN.fullmatch(value.reveal()):
            raise ConfigError(f"{self.where}: {key} must be exactly 43 characters of [A-Za-z0-9]")
        return value

    def text(self, key: str) -> str:
        return required_str(self.rest, key, self.where)


class Platform(Protocol):
    """One native platform: the keys its source table holds, how its callbacks are handled, and how to build
    the request it would send (for rehearsals and tests)."""

    def keys(self, table: KeyTable) -> WxKeys | FeishuKeys: ...
    def handle(self, cfg: NativeConfig, source: str, request: CallbackRequest, now: datetime, *,
               tolerance_s: int, rng: Rng) -> NativeResult: ...
    def encode_request(self, cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Rng) -> Encoded: ...


class _DingTalk:
    """DingTalk HTTP push: WX-style AES + signature over the query; the receive id is the app_key."""

    def keys(self, table: KeyTable) -> WxKeys:
        keys = WxKeys(token=table.secret("token"), aes_key=table.aes("aes_key"), receive_id=table.text("app_key"))
        if not keys.receive_id:
            raise ConfigError(f"{table.where}: app_key (the receive id: Client ID / appKey, corpId or suiteKey) "
                              "is empty")
        return keys

    def handle(self, cfg: NativeConfig, source: str, request: CallbackRequest, now: datetime, *,
               tolerance_s: int, rng: Rng) -> NativeResult:
        return native_dingtalk.handle(cfg, source, request.method, request.query, request.body, now,
                                      tolerance_s=tolerance_s, rng=rng)

    def encode_request(self, cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Rng) -> Encoded:
        return native_dingtalk.encode_request(cfg, plaintext, now, nonce, rng)


class _Feishu:
    """Feishu event subscriptions: a verification token, optionally an encrypt_key (signature in headers)."""

    def keys(self, table: KeyTable) -> FeishuKeys:
        return FeishuKeys(verification_token=table.secret("verification_token"),
                          encrypt_key=table.optional_secret("encrypt_key"))

    def handle(self, cfg: NativeConfig, source: str, request: CallbackRequest, now: datetime, *,
               tolerance_s: int, rng: Rng) -> NativeResult:
        return native_feishu.handle(cfg, source, request.method, request.headers, request.body, now,
                                    tolerance_s=tolerance_s)

    def encode_request(self, cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Rng) -> Encoded:
        return native_feishu.encode_request(cfg, plaintext, now, nonce, rng(16))


class _WeCom:
    """WeCom callbacks: WX-style AES + signature over the query, XML bodies; the receive id is the corp_id."""

    def keys(self, table: KeyTable) -> WxKeys:
        return WxKeys(token=table.secret("token"), aes_key=table.aes("encoding_aes_key"),
                      receive_id=table.text("corp_id"))

    def handle(self, cfg: NativeConfig, source: str, request: CallbackRequest, now: datetime, *,
               tolerance_s: int, rng: Rng) -> NativeResult:
        return native_wecom.handle(cfg, source, request.method, request.query, request.body, now,
                                   tolerance_s=tolerance_s)

    def encode_request(self, cfg: NativeConfig, plaintext: bytes, now: datetime, nonce: str, rng: Rng) -> Encoded:
        return native_wecom.encode_request(cfg, plaintext, now, nonce, rng)


REGISTRY: Mapping[str, Platform] = {"dingtalk": _DingTalk(), "feishu": _Feishu(), "wecom": _WeCom()}
PLATFORMS = tuple(REGISTRY)
TRANSPORTS = ("http", "stream")
DEFAULT_GATEWAY_URL = "https://api.dingtalk.com"


def parse_config(fmt: str, table: dict[str, Any], where: str, env: Mapping[str, str]) -> NativeConfig:
    """Validate one native [[sources]] table (without name / format / timestamp_tolerance_s).

    Raises ConfigError naming `where` and the key for a missing, mistyped or unknown key. Secrets never appear in
    the message.
    """
    platform = REGISTRY.get(fmt)
    if platform is None:
        raise ConfigError(f"{where}: format {fmt!r} is not a native format ({', '.join(PLATFORMS)})")
    rest = dict(table)
    keys: WxKeys | FeishuKeys | StreamKeys
    transport = rest.pop("transport", "http")
    if transport not in TRANSPORTS or (transport == "stream" and fmt != "dingtalk"):
        raise ConfigError(f"{where}: transport must be 'http' (any platform) or 'stream' (dingtalk only), "
                          f"not {transport!r}")
    keytable = KeyTable(rest, where, env)
    keys = _stream_keys(rest, where, keytable.secret) if transport == "stream" else platform.keys(keytable)
    routing = parse_routing(rest, where, fmt)
    if rest:
        raise ConfigError(f"{where}: unknown key(s) for a {fmt} source: {', '.join(sorted(rest))}")
    return NativeConfig(platform=fmt, keys=keys, routing=routing)


def _stream_keys(rest: dict[str, Any], where: str, secret: Callable[[str], Secret]) -> StreamKeys:
    client_id = required_str(rest, "client_id", where)
    if not client_id:
        raise ConfigError(f"{where}: client_id (the app's Client ID / AppKey) is empty")
    gateway = take_str(rest, "gateway_url", where) or DEFAULT_GATEWAY_URL
    if not gateway.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: gateway_url must be an http(s) URL, such as https://api.dingtalk.com")
    tuning: dict[str, float] = {}
    for key in ("reconnect_base_s", "reconnect_max_s", "keepalive_s"):
        value = rest.pop(key, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: {key} must be a positive number of seconds")
        tuning[key] = float(value)
    keys = StreamKeys(client_id=client_id, client_secret=secret("client_secret"), gateway_url=gateway.rstrip("/"),
                      **tuning)
    if keys.reconnect_max_s < keys.reconnect_base_s:
        raise ConfigError(f"{where}: reconnect_max_s must not be less than reconnect_base_s")
    return keys


def handle(
    cfg: NativeConfig,
    source: str,
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    tolerance_s: int = 300,
    rng: Callable[[int], bytes] = os.urandom,
) -> NativeResult:
    """Verify, decrypt and normalise one callback request; return the reply and the event (None for handshakes).

    `query` is URL-decoded once (aiohttp's `request.query`), `body` the raw bytes. Raises SignatureInvalid (401:
    bad or missing signature or token, timestamp outside `tolerance_s`) or MalformedPayload (400: not
    JSON/XML, undecryptable, bad padding, truncated ciphertext, wrong receive id, refused XML declarations).
    An event whose recipients cannot be resolved is still returned, with `unresolved` saying why.
    """
    if cfg.stream is not None:
        raise UnknownSource(f"source {source!r} receives DingTalk events over Stream mode (transport = 'stream'), "
                            "not by HTTP push")
    request = CallbackRequest(method=method, query=query, headers=headers, body=body)
    return REGISTRY[cfg.platform].handle(cfg, source, request, now, tolerance_s=tolerance_s, rng=rng)


def encode_request(
    cfg: NativeConfig,
    plaintext: bytes,
    now: datetime,
    *,
    nonce: str | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> Encoded:
    """(method, query, headers, body) exactly as the platform would send `plaintext` at `now`.

    DingTalk: the encrypted POST (ms timestamp). Feishu: encrypted and signed with an encrypt_key (a
    url_verification plaintext is encrypted but unsigned, as Feishu does), else the plaintext itself. WeCom: an
    XML plaintext becomes the encrypted POST, anything else the GET echostr handshake. Query values are
    decoded: percent-encode them when putting them in a URL.
    """
    nonce = nonce if nonce is not None else rng(8).hex()
    return REGISTRY[cfg.platform].encode_request(cfg, plaintext, now, nonce, rng)

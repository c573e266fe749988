"""Native approval callbacks from DingTalk, Feishu and WeCom: config parsing and request handling, in one façade.

Why it exists: besides ERPs that post bridge's own webhook format, approvals may live in DingTalk, Feishu or
WeCom themselves. Each platform calls back with its own encryption, signature, handshake and payload; a source
with `format = "dingtalk" | "feishu" | "wecom"` is handled here. The config loader calls `parse_config`; the
aiohttp handler calls `handle` with the raw request, stores the returned event (if any), then sends the returned
reply. `encode_request` builds the exact request a platform would send, for `bridge send` rehearsals and tests.

Everything here is pure: the time and the randomness (reply nonces, IVs) are passed in. Each platform lives in
`native_dingtalk`, `native_feishu` and `native_wecom`; their docstrings say which payload fields templates and
`recipients_path` can use.

Config keys (besides name / format / timestamp_tolerance_s):
- dingtalk: `token`, `aes_key` (43 chars), `app_key` = the receive id: the app's Client ID / appKey for a
  developer-console event subscription, the corpId for the legacy register_call_back API, or the suiteKey for
  a third-party suite.
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
from datetime import datetime
from typing import Any

from bridge.errors import ConfigError
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
)
from bridge.sources.native.crypto import AES_KEY_PATTERN

__all__ = [
    "PLATFORMS",
    "FeishuKeys",
    "NativeConfig",
    "NativeResult",
    "Reply",
    "Routing",
    "WxKeys",
    "encode_request",
    "handle",
    "parse_config",
]

PLATFORMS = ("dingtalk", "feishu", "wecom")


def parse_config(fmt: str, table: dict[str, Any], where: str, env: Mapping[str, str]) -> NativeConfig:
    """Validate one native [[sources]] table (without name / format / timestamp_tolerance_s).

    Raises ConfigError naming `where` and the key for a missing, mistyped or unknown key. Secrets never appear in
    the message.
    """
    if fmt not in PLATFORMS:
        raise ConfigError(f"{where}: format {fmt!r} is not a native format ({', '.join(PLATFORMS)})")
    rest = dict(table)

    def optional_secret(key: str) -> Secret | None:
        value = rest.pop(key, None)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string (inline, or 'env:NAME')")
        resolved: Secret = resolve_secret(value, f"{where}.{key}", env)
        if not resolved.reveal():
            raise ConfigError(f"{where}: {key} is empty")
        return resolved

    def secret(key: str) -> Secret:
        value = optional_secret(key)
        if value is None:
            raise ConfigError(f"{where}: {key} is required")
        return value

    def aes(key: str) -> Secret:
        value = secret(key)
        if not AES_KEY_PATTERN.fullmatch(value.reveal()):
            raise ConfigError(f"{where}: {key} must be exactly 43 characters of [A-Za-z0-9]")
        return value

    keys: WxKeys | FeishuKeys
    if fmt == "dingtalk":
        keys = WxKeys(token=secret("token"), aes_key=aes("aes_key"), receive_id=required_str(rest, "app_key", where))
        if not keys.receive_id:
            raise ConfigError(f"{where}: app_key (the receive id: Client ID / appKey, corpId or suiteKey) is empty")
    elif fmt == "feishu":
        keys = FeishuKeys(verification_token=secret("verification_token"), encrypt_key=optional_secret("encrypt_key"))
    else:
        keys = WxKeys(token=secret("token"), aes_key=aes("encoding_aes_key"),
                      receive_id=required_str(rest, "corp_id", where))
    routing = parse_routing(rest, where, fmt)
    if rest:
        raise ConfigError(f"{where}: unknown key(s) for a {fmt} source: {', '.join(sorted(rest))}")
    return NativeConfig(platform=fmt, keys=keys, routing=routing)


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
    if cfg.platform == "dingtalk":
        return native_dingtalk.handle(cfg, source, method, query, body, now, tolerance_s=tolerance_s, rng=rng)
    if cfg.platform == "feishu":
        return native_feishu.handle(cfg, source, method, headers, body, now, tolerance_s=tolerance_s)
    return native_wecom.handle(cfg, source, method, query, body, now, tolerance_s=tolerance_s)


def encode_request(
    cfg: NativeConfig,
    plaintext: bytes,
    now: datetime,
    *,
    nonce: str | None = None,
    rng: Callable[[int], bytes] = os.urandom,
) -> tuple[str, dict[str, str], dict[str, str], bytes]:
    """(method, query, headers, body) exactly as the platform would send `plaintext` at `now`.

    DingTalk: the encrypted POST (ms timestamp). Feishu: encrypted and signed with an encrypt_key (a
    url_verification plaintext is encrypted but unsigned, as Feishu does), else the plaintext itself. WeCom: an
    XML plaintext becomes the encrypted POST, anything else the GET echostr handshake. Query values are
    decoded: percent-encode them when putting them in a URL.
    """
    nonce = nonce if nonce is not None else rng(8).hex()
    if cfg.platform == "dingtalk":
        return native_dingtalk.encode_request(cfg, plaintext, now, nonce, rng)
    if cfg.platform == "feishu":
        return native_feishu.encode_request(cfg, plaintext, now, nonce, rng(16))
    return native_wecom.encode_request(cfg, plaintext, now, nonce, rng)

"""Webhook signatures: pure sign / verify functions over the raw request bytes.

A webhook is only trusted once its signature over the exact bytes received checks out, before any JSON
parsing. Three schemes are supported, each accepting several secrets at once so a sender can rotate:

- ``standard-webhooks`` (https://www.standardwebhooks.com): headers ``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``; HMAC-SHA256 over ``{id}.{timestamp}.{body}`` keyed by the base64 part of a
  ``whsec_...`` secret; the header may carry several space-separated ``v1,<base64>`` signatures; the timestamp
  must be within the tolerance in either direction (replay protection). Svix's ``svix-id`` /
  ``svix-timestamp`` / ``svix-signature`` are accepted as aliases (the scheme is the same), and a secret
  whose base64 lost its ``=`` padding is re-padded, as the reference library does.
- ``hmac-sha256``: ``X-Hub-Signature-256: sha256=<hex>``, HMAC-SHA256 of the body (GitHub style).
- ``token``: ``X-Bridge-Token`` equal to one of the secrets (for senders that cannot compute an HMAC).

``none`` accepts everything; the configuration allows it only on a loopback host. Native DingTalk / Feishu /
WeCom callbacks are verified by `bridge.native`, not here. Comparisons are constant-time, and failure
messages say what was wrong without ever echoing a secret or an expected signature.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from bridge.errors import SignatureInvalid
from bridge.secret import Secret

__all__ = [
    "HMAC_HEADER",
    "SCHEMES",
    "TOKEN_HEADER",
    "WHSEC_PREFIX",
    "SignedSource",
    "decode_whsec",
    "delivery_id",
    "sign_headers",
    "sign_hmac_sha256",
    "sign_standard_webhooks",
    "verify",
    "verify_hmac_sha256",
    "verify_standard_webhooks",
    "verify_token",
]

SCHEMES = ("standard-webhooks", "hmac-sha256", "token", "none")
WHSEC_PREFIX = "whsec_"
MIN_WHSEC_KEY_BYTES = 16
HMAC_HEADER = "X-Hub-Signature-256"
TOKEN_HEADER = "X-Bridge-Token"
STANDARD_PREFIX = "webhook-"
SVIX_PREFIX = "svix-"  # svix-id / svix-timestamp / svix-signature: aliases of the webhook-* headers
DELIVERY_ID_HEADERS = ("webhook-id", "svix-id")  # the sender's delivery id, in the order read


@functools.lru_cache(maxsize=64)  # a webhook's secrets repeat: decode each once, not on every request
def decode_whsec(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret. ValueError (without the secret) if it is not one."""
    if not secret.startswith(WHSEC_PREFIX):
        raise ValueError("a standard-webhooks secret must look like whsec_<base64>")
    encoded = secret[len(WHSEC_PREFIX) :]
    encoded += "=" * (-len(encoded) % 4)  # padding left off is put back, as the reference library does
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if len(key) < MIN_WHSEC_KEY_BYTES:
        raise ValueError(f"the key after whsec_ decodes to {len(key)} bytes; at least {MIN_WHSEC_KEY_BYTES} needed")
    return key


def _lower(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers to look up by lower-case name: aiohttp's case-insensitive CIMultiDict as it is (no copy per
    request), any other mapping with its names folded to lower case."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return {k.lower(): v for k, v in headers.items()}


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The delivery id a sender put in ``webhook-id`` (or Svix's alias ``svix-id``), stripped; None when
    neither is present and non-blank. Unverified: for standard-webhooks use the id `verify` returns."""
    h = _lower(headers)
    for name in DELIVERY_ID_HEADERS:
        if value := h.get(name, "").strip():
            return value
    return None


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower(), "").strip()
    if not value and name.startswith(STANDARD_PREFIX):  # Svix sends the same scheme under svix-* names
        value = headers.get(SVIX_PREFIX + name.removeprefix(STANDARD_PREFIX), "").strip()
    if not value:
        raise SignatureInvalid(f"missing {name} header")
    return value


def _same(a: str, b: str) -> bool:
    """Constant-time string comparison that never raises on non-ASCII input."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


# --- standard webhooks -------------------------------------------------------------------------------------


def _standard_digest(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign_standard_webhooks(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    return "v1," + _standard_digest(decode_whsec(secret), msg_id, timestamp, body)


def verify_standard_webhooks(
    secrets: Sequence[str], headers: Mapping[str, str], body: bytes, now: datetime, tolerance_s: int
) -> str:
    """Check a Standard Webhooks signature; return the ``webhook-id``. Raises SignatureInvalid."""
    h = _lower(headers)
    msg_id = _required(h, "webhook-id")
    raw_timestamp = _required(h, "webhook-timestamp")
    header = _required(h, "webhook-signature")
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit():
        raise SignatureInvalid("webhook-timestamp header must be whole seconds since 1970")
    skew = int(now.timestamp()) - int(raw_timestamp)
    if abs(skew) > tolerance_s:
        side = "too old" if skew > 0 else "in the future"
        raise SignatureInvalid(f"timestamp outside tolerance ({abs(skew)} s > {tolerance_s} s): {side}")
    offered = [part[3:] for part in header.split() if part.startswith("v1,")]
    if not offered:
        raise SignatureInvalid("no v1 signature in the webhook-signature header")
    matched = False
    for secret in secrets:
        try:
            key = decode_whsec(secret)
        except ValueError:
            continue  # the configuration refuses such secrets; never let one crash a request
        expected = _standard_digest(key, msg_id, raw_timestamp, body)
        for candidate in offered:
            matched |= _same(expected, candidate)  # no early exit: the work done does not depend on the match
    if not matched:
        raise SignatureInvalid("no signature matched")
    return msg_id


# --- hmac-sha256 and token ---------------------------------------------------------------------------------


def sign_hmac_sha256(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value (``sha256=<hex>``) for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_hmac_sha256(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> None:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` against each secret. Raises SignatureInvalid."""
    value = _required(_lower(headers), HMAC_HEADER)
    scheme, sep, digest = value.partition("=")
    if not sep or scheme.strip().lower() != "sha256" or not digest:
        raise SignatureInvalid(f"malformed {HMAC_HEADER} header (expected sha256=<hex>)")
    offered = digest.strip().lower()
    matched = False
    for secret in secrets:
        matched |= _same(sign_hmac_sha256(secret, body)[len("sha256=") :], offered)
    if not matched:
        raise SignatureInvalid("no signature matched")


def verify_token(secrets: Sequence[str], headers: Mapping[str, str]) -> None:
    """Check ``X-Bridge-Token`` equals one of the secrets. Raises SignatureInvalid."""
    offered = _required(_lower(headers), TOKEN_HEADER)
    matched = False
    for secret in secrets:
        matched |= _same(secret, offered)
    if not matched:
        raise SignatureInvalid("token did not match")


# --- per source ---------------------------------------------------------------------------------------------


class SignedSource(Protocol):
    """What verifying or signing for one source needs: its name (for messages), scheme, secrets and tolerance.

    `bridge.config.SourceConfig` satisfies it; taking only these four keeps this module free of the loader.
    """

    @property
    def name(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def secrets(self) -> Sequence[Secret]: ...
    @property
    def timestamp_tolerance_s(self) -> int: ...


def verify(source: SignedSource, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
    """Verify a request for `source`: the ``webhook-id`` for standard-webhooks, else None. Raises
    SignatureInvalid; ValueError for a scheme this module does not handle (native sources, a bug)."""
    secrets = [s.reveal() for s in source.secrets]
    if source.signature == "standard-webhooks":
        return verify_standard_webhooks(secrets, headers, body, now, source.timestamp_tolerance_s)
    if source.signature == "hmac-sha256":
        verify_hmac_sha256(secrets, headers, body)
        return None
    if source.signature == "token":
        verify_token(secrets, headers)
        return None
    if source.signature == "none":
        return None
    raise ValueError(f"source {source.name!r}: signature scheme {source.signature!r} is not verified here")


def sign_headers(source: SignedSource, body: bytes, now: datetime, msg_id: str | None = None) -> dict[str, str]:
    """The headers a sender adds for `source` (used by `bridge send` and tests). Signs with the FIRST secret;
    standard-webhooks makes up a ``msg_<hex>`` id when `msg_id` is None."""
    if source.signature == "none":
        return {}
    if source.signature not in SCHEMES:
        raise ValueError(f"source {source.name!r}: signature scheme {source.signature!r} is not signed here")
    if not source.secrets:
        raise ValueError(f"source {source.name!r} has no secret to sign with")
    secret = source.secrets[0].reveal()
    if source.signature == "standard-webhooks":
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        timestamp = int(now.timestamp())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_standard_webhooks(secret, msg_id, timestamp, body),
        }
    if source.signature == "hmac-sha256":
        return {HMAC_HEADER: sign_hmac_sha256(secret, body)}
    return {TOKEN_HEADER: secret}

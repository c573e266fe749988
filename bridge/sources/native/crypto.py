"""The cipher and signature schemes of native approval callbacks (DingTalk, Feishu, WeCom), and nothing else.

Why a module of its own: the three platforms encrypt and sign their callbacks in two schemes that are easy to
get subtly wrong (32-byte PKCS#7, a static IV, a length prefix counted in bytes, a receive id appended to the
plaintext, a signature over the raw body). Keeping them pure and small lets the verified vectors in
`approval-callbacks.md` pin every byte, while `bridge.native*` handles requests and payloads.

- **WX family** (DingTalk HTTP push and WeCom, both descended from WeChat's WXBizMsgCrypt): AES-256-CBC with
  key = base64(EncodingAESKey + "="), IV = key[:16], PKCS#7 to a 32-byte multiple, plaintext =
  random(16) ‖ len(msg) (4 bytes big-endian) ‖ msg ‖ receive_id; signature =
  sha1("".join(sorted([token, timestamp, nonce, encrypt]))).
- **Feishu**: key = sha256(encrypt_key), base64(IV(16) ‖ AES-256-CBC(PKCS#7 16)); signature =
  sha256_hex(timestamp + nonce + encrypt_key + raw body).

AES comes from `cryptography`; nothing here is a hand-written cipher. Decryption failures raise
`MalformedPayload` naming the cause and never a key or token; signature checks return a bool and compare in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bridge.errors import MalformedPayload

__all__ = [
    "AES_KEY_PATTERN",
    "feishu_decrypt",
    "feishu_encrypt",
    "feishu_key",
    "feishu_signature",
    "signatures_match",
    "wx_decrypt",
    "wx_encrypt",
    "wx_key",
    "wx_signature",
]

AES_KEY_PATTERN = re.compile(r"[A-Za-z0-9]{43}")
"""An EncodingAESKey / DingTalk aes_key: exactly 43 letters and digits (decodes to 32 bytes)."""

_WX_BLOCK = 32  # the WX family pads to 32 bytes, not to the AES block of 16


def wx_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key behind a 43-character EncodingAESKey / aes_key. ValueError if malformed."""
    if not AES_KEY_PATTERN.fullmatch(encoding_aes_key):
        raise ValueError("an aes key must be exactly 43 characters of [A-Za-z0-9]")
    return base64.b64decode(encoding_aes_key + "=")


def wx_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 over the four values sorted and joined, lowercase hex (DingTalk msg_signature, WeCom msg_signature)."""
    joined = "".join(sorted([token, timestamp, nonce, encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def signatures_match(expected: str, received: str) -> bool:
    """Constant-time comparison of two hex signatures (case-insensitive on `received`)."""
    return hmac.compare_digest(expected.encode("ascii"), received.strip().lower().encode("ascii", "replace"))


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedPayload("undecryptable: the ciphertext is not valid base64") from None


def _check_blocks(raw: bytes, minimum: int) -> None:
    if len(raw) < minimum or len(raw) % 16:
        raise MalformedPayload(
            f"undecryptable: truncated ciphertext ({len(raw)} bytes, not a whole number of AES blocks)"
        )


def wx_decrypt(key: bytes, encrypt: str, receive_id: str) -> bytes:
    """Decrypt a WX-family `encrypt` string and return the message bytes.

    Raises MalformedPayload for: not base64, truncated ciphertext, bad padding (also what a wrong aes key looks
    like), a length prefix pointing past the end, or a receive id other than `receive_id`.
    """
    raw = _b64decode(encrypt)
    _check_blocks(raw, _WX_BLOCK)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    buf = decryptor.update(raw) + decryptor.finalize()
    pad = buf[-1]
    if not 1 <= pad <= _WX_BLOCK or buf[-pad:] != bytes([pad]) * pad or len(buf) - pad < 20:
        raise MalformedPayload("undecryptable: bad padding (wrong aes key, or a corrupted ciphertext)")
    buf = buf[:-pad]
    (length,) = struct.unpack(">I", buf[16:20])
    if 20 + length > len(buf):
        raise MalformedPayload("undecryptable: the message length prefix points past the end of the plaintext")
    got_id = buf[20 + length :]
    if not hmac.compare_digest(got_id, receive_id.encode("utf-8")):
        shown = got_id.decode("utf-8", "replace")[:64]
        raise MalformedPayload(f"wrong receive id: the message is for {shown!r}, not this source's receive id")
    return buf[20 : 20 + length]


def wx_encrypt(key: bytes, msg: bytes, receive_id: str, random16: bytes) -> str:
    """Encrypt `msg` for `receive_id` exactly as the platform does; `random16` is os.urandom(16) in production."""
    if len(random16) != 16:
        raise ValueError("random16 must be 16 bytes")
    body = random16 + struct.pack(">I", len(msg)) + msg + receive_id.encode("utf-8")
    pad = _WX_BLOCK - len(body) % _WX_BLOCK
    body += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode("ascii")


def feishu_key(encrypt_key: str) -> bytes:
    """The AES-256 key behind a Feishu Encrypt Key: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def feishu_decrypt(key: bytes, encrypt: str) -> bytes:
    """Decrypt a Feishu `encrypt` string (IV ‖ AES-256-CBC ‖ PKCS#7 16). MalformedPayload naming the cause."""
    raw = _b64decode(encrypt)
    _check_blocks(raw, 32)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise MalformedPayload("undecryptable: bad padding (wrong encrypt_key, or a corrupted ciphertext)") from None


def feishu_encrypt(key: bytes, plaintext: bytes, iv: bytes) -> str:
    """Encrypt as Feishu does; `iv` is os.urandom(16) in production."""
    if len(iv) != 16:
        raise ValueError("iv must be 16 bytes")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, raw_body: bytes) -> str:
    """X-Lark-Signature: sha256 hex of timestamp + nonce + encrypt_key + the raw body bytes (no HMAC)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + raw_body).hexdigest()

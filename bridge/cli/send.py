"""`bridge send`: sign a file with a source's scheme and post it, as the source system would.

For rehearsing an integration locally: canonical and mapped sources get the source's signature headers
(Standard Webhooks, hmac-sha256 or token) over the exact bytes of the file; native sources (DingTalk,
Feishu, WeCom) get the file encrypted and signed the way the platform sends callbacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from bridge.config import Config, SourceConfig
from bridge.sources import signatures


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def pretty(self) -> str:
        try:
            return json.dumps(json.loads(self.body), ensure_ascii=False, indent=2)
        except ValueError:
            return self.body


def default_url(cfg: Config, source: SourceConfig) -> str:
    host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{cfg.server.port}/webhooks/{source.name}"


def build_request(
    source: SourceConfig, body: bytes, now: datetime, msg_id: str | None = None
) -> tuple[str, dict[str, str], dict[str, str], bytes]:
    """(method, query, headers, body) for one delivery of `body` from `source`."""
    if source.native is not None:
        from bridge.sources import native

        return native.encode_request(source.native, body, now)
    headers = {"Content-Type": "application/json"}
    headers.update(signatures.sign_headers(source, body, now, msg_id=msg_id))
    return "POST", {}, headers, body


async def send(
    url: str, source: SourceConfig, body: bytes, now: datetime, *, session: aiohttp.ClientSession | None = None,
    msg_id: str | None = None,
) -> Answer:
    method, query, headers, payload = build_request(source, body, now, msg_id=msg_id)
    own = session is None
    s = session or aiohttp.ClientSession()
    try:
        async with s.request(method, url, params=query or None, headers=headers, data=payload) as resp:
            return Answer(resp.status, await resp.text())
    finally:
        if own:
            await s.close()

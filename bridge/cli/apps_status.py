"""`bridge status` without an approval: each DingTalk app of the running bridge and its figures.

Why it asks the running process: a token's last success or failure and the calls made through each app live in
the serving process (its clients), not in the store. So this reads the admin API's GET /apps of the bridge this
configuration describes ([admin] port if set, else the webhook listener; the [server] admin_token), and prints
one block per app: agent, sources, token state, calls, errors, throttled; then one line per DingTalk Stream
connection the process holds (the connection lives in that process too: state, since when, counts).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bridge.config import Config

__all__ = ["admin_url", "fetch", "render"]


def admin_url(cfg: Config) -> str:
    """The base URL of the admin API this configuration serves."""
    host, port = (cfg.admin.host, cfg.admin.port) if cfg.admin.port is not None else (cfg.server.host,
                                                                                        cfg.server.port)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


async def _get(url: str, token: str) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json(content_type=None)


def fetch(cfg: Config, url: str | None = None) -> dict[str, Any]:
    """GET /apps of the running bridge; raises RuntimeError saying why it could not."""
    if cfg.server.admin_token is None:
        raise RuntimeError("[server] admin_token is not set: the admin API (and so per-app figures) is off")
    where = f"{url or admin_url(cfg)}/apps"
    try:
        status, body = asyncio.run(_get(where, cfg.server.admin_token.reveal()))
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        raise RuntimeError(f"cannot reach the running bridge at {where}: {type(exc).__name__}: {exc}") from None
    if status != 200 or not isinstance(body, dict):
        message = body.get("message") if isinstance(body, dict) else None
        raise RuntimeError(f"{where} answered HTTP {status}" + (f": {message}" if message else ""))
    return body


def render(body: dict[str, Any]) -> str:
    """One block per app, as `bridge status` prints it."""
    lines = []
    for a in body.get("apps", []):
        token = a["token"]
        state = "ok" if token["ok"] else "FAILING"
        lines += [
            f"app {a['name']}{'  (default)' if a['default'] else ''}  agent {a['agent_id']}  app_key {a['app_key']}"
            f"  qps {a['qps']:g}  {a['base_url']}",
            f"  sources   {', '.join(a['sources']) or '-'}",
            f"  token     {state}  last ok {token['last_ok_at'] or '-'}  last error {token['last_error_at'] or '-'}",
            f"  calls     {a['calls']}  errors {a['errors']}  throttled {a['throttled']}  tokens fetched "
            f"{a['tokens']}  (this process, role {body.get('role', 'all')}, since it started)",
        ]
    for st in body.get("streams", []):
        state = "connected" if st["connected"] else str(st["state"]).upper()
        since = f" since {st['connected_at']}" if st.get("connected_at") else ""
        error = f"  last error {st['last_error']}" if st.get("last_error") and not st["connected"] else ""
        lines.append(f"stream {st['source']}  {state}{since}  connections {st['connections']}  events "
                     f"{st['events']}  duplicates {st['duplicates']}  later {st['later']}  {st['gateway_url']}{error}")
    return "\n".join(lines) if lines else "no DingTalk apps"

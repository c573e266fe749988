"""The ingest floor: an aiohttp handler doing only the work a durable webhook receiver cannot skip, done as
cheaply as Python allows. bench/ingest.py measures it beside the bare handler and bridge, in the same run.

Why: "bridge's receiver reaches 0.3x of a bare handler" says nothing about how close to the possible it is.
This server verifies the Standard Webhooks HMAC (hmac, one secret), parses the body (orjson), stores it in
a table shaped like bridge's inbox (same columns and indexes, WAL, synchronous = NORMAL) by a group commit on
the event loop, writes one JSON log line to a file, and answers 202 only after the commit: every answer is
durable as bridge's is. No field checks, no metrics, no connection guard, no error handling worth the name.
With `--checks` it also runs bridge's own canonical decoding and event checks (`intake.decode`), to show
what validation costs inside a server. Run: `python bench/floor.py --port P --db PATH [--checks]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common
import orjson
from aiohttp import web

from bridge import config
from bridge.sources import intake

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, event_id TEXT NOT NULL, approval_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL, received_at INTEGER NOT NULL, event TEXT NOT NULL, raw BLOB NOT NULL,
    card_data INTEGER NOT NULL DEFAULT 0, processed INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, event_id));
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (source, approval_id, occurred_at, id) WHERE processed = 0;
CREATE INDEX IF NOT EXISTS inbox_approval ON inbox (source, approval_id, occurred_at, id);
CREATE INDEX IF NOT EXISTS inbox_card_data ON inbox (source, approval_id) WHERE card_data = 1;
"""
INSERT = ("INSERT INTO inbox (source, event_id, approval_id, occurred_at, received_at, event, raw, card_data) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, event_id) DO NOTHING")


class Floor:
    def __init__(self, db: Path, checks: bool) -> None:
        self.key = base64.b64decode(common.SECRET.removeprefix("whsec_"))
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(SCHEMA)
        self.log = db.with_suffix(".log").open("a", buffering=1)
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self.source = self._source(db.parent) if checks else None

    @staticmethod
    def _source(workdir: Path) -> config.SourceConfig:
        setup = common.BridgeSetup(workdir, "http://127.0.0.1:1")
        (workdir / "floor.toml").write_text(setup.toml())
        found = config.load(workdir / "floor.toml").source(common.SOURCE)
        assert found is not None
        return found

    def commit(self) -> None:
        batch, self.pending = self.pending, []
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(INSERT, [row for row, _ in batch])
        self.conn.execute("COMMIT")
        for _, future in batch:
            future.set_result(None)

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        mac = hmac.new(self.key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        expected = base64.b64encode(mac).decode()
        if not any(hmac.compare_digest(expected, sig.partition(",")[2])
                   for sig in headers.get("webhook-signature", "").split()):
            return web.Response(status=401)
        payload = orjson.loads(body)
        if self.source is not None:
            intake.decode(self.source, body, datetime.now(UTC), headers=headers, webhook_id=msg_id)
        future = asyncio.get_running_loop().create_future()
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.commit)
        self.pending.append(((request.match_info["source"], payload["event_id"], payload["approval_id"], 0,
                              time.time_ns() // 1000, orjson.dumps(payload), body, 1), future))
        await future
        self.log.write(orjson.dumps({"event": "webhook.accepted", "source": request.match_info["source"],
                                     "event_id": payload["event_id"], "approval_id": payload["approval_id"],
                                     "level": "info", "timestamp": time.time()}).decode() + "\n")
        return web.Response(body=orjson.dumps({"status": "accepted", "event_id": payload["event_id"]}), status=202,
                            content_type="application/json")


async def root(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--checks", action="store_true", help="also run bridge's canonical decoding and event checks")
    a = ap.parse_args()
    floor = Floor(a.db, a.checks)
    app = web.Application()
    app.router.add_post("/webhooks/{source}", floor.webhook)
    app.router.add_get("/", root)
    web.run_app(app, host="127.0.0.1", port=a.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

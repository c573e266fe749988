"""wrk as bench/ingest.py's load generator: pre-signed requests, each a new event, replayed by a small Lua script.

Why pre-signed: every Standard Webhooks request needs its own webhook-id and an HMAC over id, timestamp and
body, and wrk's Lua has no HMAC. So Python signs N distinct requests into one file (raw HTTP/1.1 requests
separated by NUL bytes), and the Lua script hands wrk the next one for every request (`-t1`, so one Lua state
walks the list in order). The script counts answers by status and collects the event id of every 202, so the
caller can check each accepted event is durable. If the run outlives the list it starts again from the top
(`wrapped` says so; for bridge those repeats would be duplicates, so the caller sizes the list generously).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WRK = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)

LUA = r"""
local reqs = {}
local n, i = 0, 0
codes, ids, wrapped = {}, {}, 0  -- globals: done() reads them with thread:get

function init(args)
  local f = assert(io.open(os.getenv("BENCH_WRK_REQUESTS"), "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while true do
    local stop = string.find(data, "\0", pos, true)
    if not stop then break end
    n = n + 1
    reqs[n] = string.sub(data, pos, stop - 1)
    pos = stop + 1
  end
end

function request()
  i = i + 1
  if i > n then i = 1; wrapped = 1 end
  return reqs[i]
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 202 then
    local id = string.match(body, '"event_id":%s*"([^"]+)"')
    if id then ids[#ids + 1] = id end
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("BENCH_WRK_OUT"), "w"))
  local parts = {}
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("codes")) do parts[#parts + 1] = string.format('"%d": %d', code, count) end
    for _, id in ipairs(t:get("ids")) do out:write(id, "\n") end
    if t:get("wrapped") == 1 then wrapped = 1 end
  end
  out:close()
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "wrapped": %d, '
    .. '"errors": %d, "codes": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), wrapped,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class WrkResult:
    """What one wrk run printed, in the shape of common.LoadResult.summary(), plus the accepted event ids."""

    summary: dict[str, Any]
    accepted_ids: set[str] = field(default_factory=set)
    wrapped: bool = False


def write_requests(path: Path, url: str, route: str, requests: Sequence[tuple[dict[str, str], bytes]]) -> None:
    host = urlsplit(url).netloc
    with path.open("wb") as out:
        for headers, body in requests:
            head = [f"POST {route} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            out.write(("\r\n".join(head) + "\r\n\r\n").encode() + body + b"\0")


def run(url: str, requests: Sequence[tuple[dict[str, str], bytes]], *, connections: int, duration_s: float,
        workdir: Path, route: str, name: str) -> WrkResult:
    """Replay `requests` against `url` for `duration_s` with `connections` connections on one wrk thread."""
    assert WRK is not None
    reqs, out, script = workdir / f"{name}.requests", workdir / f"{name}.ids", workdir / "ingest.lua"
    write_requests(reqs, url, route, requests)
    script.write_text(LUA)
    env = dict(os.environ, BENCH_WRK_REQUESTS=str(reqs), BENCH_WRK_OUT=str(out))
    proc = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script),
                           url + route], capture_output=True, text=True, env=env, timeout=duration_s + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    reqs.unlink()
    elapsed = data["duration_us"] / 1e6
    summary = {"requests": data["requests"], "codes": dict(sorted(data["codes"].items())),
               "errors": data["errors"], "elapsed_s": round(elapsed, 3),
               "rps": round(data["requests"] / elapsed, 1) if elapsed else 0.0,
               "p50_ms": round(data["p50_us"] / 1000, 2), "p99_ms": round(data["p99_us"] / 1000, 2),
               "client": "wrk"}
    ids = set(out.read_text().split()) if out.exists() else set()
    return WrkResult(summary, ids, bool(data["wrapped"]))

"""Shared helpers for the bench/ scripts: processes, configs, signed webhooks, load generation and results.

Every benchmark and drill measures `bridge serve` as a real subprocess (the same binary a user runs) against a
simulator subprocess, so figures include the HTTP stack, signature checks and SQLite commits. This module
starts those processes (and a bare aiohttp baseline), writes their TOML config, signs canonical events with
bridge.signatures, drives load from an asyncio client, computes latency percentiles and writes JSON results
to bench/results/<name>.json. Run as `python bench/common.py sim|bare ...` it is itself one of the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bridge.config import SANDBOX_WEBHOOK_SECRET
from bridge.sources.signatures import sign_standard_webhooks

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECRET = SANDBOX_WEBHOOK_SECRET
SOURCE = "bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages, to print beside a figure (this machine is shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def py_spy(pid: int, out: Path, duration_s: float) -> subprocess.Popen[bytes] | None:
    """Sample `pid` with py-spy (if installed) for `duration_s` into a flame graph; None without py-spy."""
    exe = BIN / "py-spy"
    if not exe.exists():
        print("  (py-spy is not installed: pip install py-spy)")
        return None
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-d", str(int(duration_s)), "-o", str(out),
                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"bench": name, "at": datetime.now(UTC).isoformat(), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {path}")
    return path


def http_json(url: str, data: Any = None, method: str | None = None, timeout: float = 10.0) -> Any:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def wait_until(check: Any, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


# --- processes ----------------------------------------------------------------------------------------------
@dataclass
class Proc:
    """A child process we started and must stop (by its own pid only)."""

    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def _spawn(argv: list[str], log: Path, ready_url: str, timeout: float = 120.0, wrap: Sequence[str] = ()
           ) -> subprocess.Popen[bytes]:
    """Start `argv` (behind `wrap`, e.g. valgrind's command line) and wait until `ready_url` answers."""
    argv = [*wrap, *argv]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("BRIDGE_CONFIG", None)
    with log.open("ab") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(log.parent))

    def ready() -> bool:
        if p.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {p.returncode}; see {log}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1.0) as r:
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500
        except OSError:
            return False

    wait_until(ready, timeout, what=ready_url)
    return p


def start_simulator(workdir: Path, *, qps: int = 0, port: int | None = None) -> Proc:
    """A simulator subprocess with the given per-endpoint QPS limit (0 = unlimited)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"sim-{port}.log"
    p = _spawn([sys.executable, str(Path(__file__).resolve()), "sim", "--port", str(port), "--qps", str(qps)],
               log, url + "/_sim/stats")
    return Proc(p, url, log)


def start_bare(workdir: Path, *, wrap: Sequence[str] = (), timeout: float = 120.0) -> Proc:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"bare-{port}.log"
    p = _spawn([sys.executable, str(Path(__file__).resolve()), "bare", "--port", str(port)], log, url + "/",
               timeout, wrap)
    return Proc(p, url, log)


def start_floor(workdir: Path, *, checks: bool = False, wrap: Sequence[str] = (), timeout: float = 120.0) -> Proc:
    """bench/floor.py: the work a durable receiver cannot skip, done as cheaply as Python allows."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = "floor-checks" if checks else "floor"
    (workdir / name).mkdir(exist_ok=True)
    argv = [sys.executable, str(Path(__file__).with_name("floor.py")), "--port", str(port),
            "--db", str(workdir / name / "floor.db"), *(["--checks"] if checks else [])]
    log = workdir / f"{name}-{port}.log"
    return Proc(_spawn(argv, log, url + "/", timeout, wrap), url, log)


@dataclass
class BridgeSetup:
    workdir: Path
    sim_url: str
    port: int = 0
    qps: float = 1000.0
    concurrency: int = 8
    timeout_s: float = 10.0
    db: str = "bridge.db"
    max_body_bytes: int = 65536
    retry_base_s: float = 0.05
    retry_cap_s: float = 0.5
    max_attempts: int = 30
    lease_s: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    admin_token: str | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return Path(self.db) if Path(self.db).is_absolute() else self.workdir / self.db

    def toml(self) -> str:
        return f"""
[server]
host = "127.0.0.1"
port = {self.port}
max_body_bytes = {self.max_body_bytes}
shutdown_timeout_s = 2.0
{f'admin_token = "{self.admin_token}"' if self.admin_token else ""}

[storage]
path = "{self.db_path}"

[dingtalk]
base_url = "{self.sim_url}"
app_key = "dingdemoappkey"
app_secret = "demo-app-secret"
agent_id = 1000001
qps = {self.qps}
timeout_s = {self.timeout_s}

[worker]
concurrency = {self.concurrency}
retry_base_s = {self.retry_base_s}
retry_cap_s = {self.retry_cap_s}
max_attempts = {self.max_attempts}
lease_s = {self.lease_s}
poll_interval_s = 0.5
check_delay_s = 0.2

[[sources]]
name = "{SOURCE}"
signature = "standard-webhooks"
secret = "{SECRET}"
format = "canonical"
"""


def start_bridge(setup: BridgeSetup, timeout: float = 120.0, role: str = "all", log_level: str = "warning",
                 wrap: Sequence[str] = ()) -> Proc:
    cfg = setup.workdir / f"bridge-{setup.port}.toml"
    cfg.write_text(setup.toml())
    log = setup.workdir / f"bridge-{setup.port}.log"
    argv = [sys.executable, "-m", "bridge"] if wrap else [str(BIN / "bridge")]  # a wrapper runs the interpreter
    if switch := os.environ.get("BENCH_SWITCHINTERVAL"):  # experiment: the GIL switch interval of bridge
        argv = [sys.executable, "-c", f"import sys; sys.setswitchinterval({float(switch)}); "
                "from bridge.cli.main import main; sys.argv[0] = 'bridge'; sys.exit(main())"]
    if os.environ.get("BENCH_UVLOOP"):  # experiment: bridge on uvloop's event loop
        argv = [sys.executable, "-c", "import sys, uvloop; uvloop.install(); "
                "from bridge.cli.main import main; sys.argv[0] = 'bridge'; sys.exit(main())"]
    p = _spawn([*argv, "serve", "--config", str(cfg), "--role", role, "--log-format", "json",
                "--log-level", log_level],
               log, setup.url + "/readyz", timeout, wrap)
    return Proc(p, setup.url, log)


def rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


# --- events and load ----------------------------------------------------------------------------------------
def event(approval: str, status: str, n: int, recipients: Sequence[str] = ("u1", "u2", "u3"),
          occurred: datetime | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"{approval}-{status}-{n}",
        "approval_id": approval,
        "status": status,
        "occurred_at": (occurred or datetime.now(UTC)).isoformat(),
    }
    if status == "pending":
        ev.update(title=f"采购申请 {approval}", recipients=list(recipients), applicant="张三",
                  url=f"https://erp.example.com/po/{approval}", content="bench")
    return ev


def signed(ev: dict[str, Any] | bytes, msg_id: str | None = None, ts: int | None = None
           ) -> tuple[dict[str, str], bytes]:
    body = ev if isinstance(ev, bytes) else json.dumps(ev, ensure_ascii=False).encode()
    msg_id = msg_id or (f"msg_{ev['event_id']}" if isinstance(ev, dict) else f"msg_{time.time_ns()}")
    ts = ts if ts is not None else int(time.time())
    return ({"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
             "webhook-signature": sign_standard_webhooks(SECRET, msg_id, ts, body)}, body)


@dataclass
class LoadResult:
    sent: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0
    accepted: list[int] = field(default_factory=list)  # indexes of requests answered 202
    answered_at: dict[int, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"requests": self.sent, "codes": {str(k): v for k, v in sorted(self.codes.items())},
                "errors": self.errors, "elapsed_s": round(self.elapsed_s, 3),
                "rps": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "p50_ms": round(percentile(self.latencies_ms, 50), 2),
                "p99_ms": round(percentile(self.latencies_ms, 99), 2)}


async def load(url: str, requests: Sequence[tuple[dict[str, str], bytes]], connections: int,
               path: str = f"/webhooks/{SOURCE}", keep_times: bool = False) -> LoadResult:
    """POST every request once over `connections` keep-alive connections; latency per request."""
    res = LoadResult()
    it = iter(enumerate(requests))
    conn = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        async def worker() -> None:
            for i, (headers, body) in it:
                t0 = time.perf_counter()
                try:
                    async with session.post(url + path, data=body, headers=headers) as resp:
                        await resp.read()
                        code = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    res.errors += 1
                    continue
                t1 = time.perf_counter()
                res.latencies_ms.append((t1 - t0) * 1000)
                res.codes[code] = res.codes.get(code, 0) + 1
                if code == 202:
                    res.accepted.append(i)
                    if keep_times:
                        res.answered_at[i] = time.time()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        res.elapsed_s = time.perf_counter() - start
    res.sent = len(requests)
    return res


def stored_event_ids(db: Path, source: str = SOURCE) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0] for r in con.execute("SELECT event_id FROM inbox WHERE source = ?", (source,))}
    finally:
        con.close()


def job_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {f"{k}:{s}": n for k, s, n in con.execute("SELECT kind, state, count(*) FROM jobs GROUP BY 1, 2")}
    finally:
        con.close()


def open_work(db: Path) -> int:
    """Jobs not yet done plus events not yet processed: 0 when bridge has nothing left to do."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        jobs = con.execute("SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')").fetchone()[0]
        inbox = con.execute("SELECT count(*) FROM inbox WHERE processed = 0").fetchone()[0]
        return int(jobs) + int(inbox)
    finally:
        con.close()


def report(targets: dict[str, bool], quick: bool, functional: dict[str, bool] | None = None) -> int:
    """Print target verdicts; the exit code (targets count only in full mode, functional checks always)."""
    failed = [k for k, ok in (functional or {}).items() if not ok]
    for name, ok in targets.items():
        print(f"  target {name}: {'met' if ok else 'MISSED'}")
    for name in failed:
        print(f"  FUNCTIONAL FAILURE: {name}")
    if failed:
        return 1
    if not quick and not all(targets.values()):
        return 1
    return 0


# --- the servers this module runs as a script ----------------------------------------------------------------
def _serve_sim(port: int, qps: int) -> None:
    from bridge.simulator.model import SimSettings
    from bridge.simulator.server import running
    from bridge.simulator.state import SimState

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        state = SimState(SimSettings(qps=qps, daily_cap=10**9, max_calls_logged=2_000_000,
                                     progress_done_after_s=0.0))
        async with running("127.0.0.1", port, state):
            await stop.wait()

    asyncio.run(main())


def _serve_bare(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"accepted": True}, status=202)

    async def root(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/{source}", handler)
    app.router.add_get("/", root)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("role", choices=["sim", "bare"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--qps", type=int, default=0)
    a = ap.parse_args()
    if a.role == "sim":
        _serve_sim(a.port, a.qps)
    else:
        _serve_bare(a.port)

"""Helpers for acceptance tests: the installed `bridge` command run as a subprocess, free ports, bounded polls.

Every wait is a bounded poll with a short interval; a process that outlives its test is killed by id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

BRIDGE = str(Path(sys.executable).parent / "bridge")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    e.pop("BRIDGE_CONFIG", None)
    return e


def poll(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Call `check` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last: {last!r}")


def http_json(url: str, data: Any = None, method: str | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(*args: str | int, cwd: Path, timeout: float = 30.0, stdin: bytes | None = None,
        extra_env: dict[str, str] | None = None, command: Sequence[str] = (BRIDGE,)) -> Result:
    """Run `bridge ARGS...` (or `command ARGS...`) to completion, with `extra_env` added to the environment."""
    proc = subprocess.run([*command, *map(str, args)], cwd=cwd, env={**env(), **(extra_env or {})}, input=stdin,
                          capture_output=True, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@dataclass
class Proc:
    """A long-running `bridge` subprocess whose output lines are collected by reader threads."""

    popen: subprocess.Popen[bytes]
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *args: str | int, cwd: Path, extra_env: dict[str, str] | None = None) -> Proc:
        popen = subprocess.Popen([BRIDGE, *map(str, args)], cwd=cwd, env={**env(), **(extra_env or {})},
                                 stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p = cls(popen)
        for stream, sink in ((popen.stdout, p.out), (popen.stderr, p.err)):
            threading.Thread(target=cls._pump, args=(stream, sink), daemon=True).start()
        return p

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    def mark(self, stream: str = "out") -> int:
        """The number of lines read so far: `wait_line(..., since=mark)` only looks at lines after it."""
        return len(self.out if stream == "out" else self.err)

    def wait_line(self, *needles: str, stream: str = "out", since: int = 0, timeout: float = 10.0) -> str:
        """The first line (from index `since`) containing every needle."""
        lines = self.out if stream == "out" else self.err
        return poll(lambda: next((line for line in lines[since:] if all(n in line for n in needles)), None),
                    timeout, what=f"{needles!r} on {stream}; got {lines[since:][-5:]}")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout=5)


@dataclass
class Server:
    """`bridge serve --sandbox` with its embedded simulator, in its own directory."""

    proc: Proc
    cwd: Path
    port: int
    sim_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def db(self) -> Path:
        return self.cwd / "bridge-sandbox.db"

    def cli(self, *args: str | int, timeout: float = 30.0, stdin: bytes | None = None,
            extra_env: dict[str, str] | None = None) -> Result:
        """A bridge command against this server's sandbox configuration and database."""
        command, *rest = args
        return run(command, "--sandbox", "--sim-port", self.sim_port, *rest, cwd=self.cwd, timeout=timeout,
                   stdin=stdin, extra_env=extra_env)

    def inbox(self, userid: str) -> list[dict[str, Any]]:
        status, answer = http_json(f"{self.sim_url}/_sim/inbox/{userid}")
        assert status == 200
        return list(answer["cards"])

    def bars(self, userid: str) -> list[tuple[str | None, str | None, bool]]:
        return [((c.get("status_bar") or {}).get("value"), (c.get("status_bar") or {}).get("colour"), c["recalled"])
                for c in self.inbox(userid)]


def start_server(cwd: Path, *extra: str) -> Server:
    cwd.mkdir(parents=True, exist_ok=True)
    port, sim_port = free_port(), free_port()
    proc = Proc.start("serve", "--sandbox", "--port", port, "--sim-port", sim_port, "--db", "bridge-sandbox.db",
                      "--log-format", "json", *extra, cwd=cwd)
    server = Server(proc, cwd, port, sim_port)

    def healthy() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"bridge serve exited {proc.popen.returncode}: {proc.err[-20:]}")
        return http_json(f"{server.url}/healthz", timeout=1.0)[0] == 200

    poll(healthy, timeout=20.0, what="bridge serve /healthz")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.proc.stop()

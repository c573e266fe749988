"""`bridge … | head`: a reader that closes stdout early ends the command quietly with 141 (bridge.cli.pipes),
run as a real process on a real pipe.

Deterministic without sleeps: `tail` writes far more than any pipe holds (2 MB; Linux pipes hold 64 KiB, at
most /proc/sys/fs/pipe-max-size, 1 MiB by default), so after one line is read it is still writing when the
pipe closes; for `--help` the reading end is closed before the process starts, so its first write fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.cli import main as cli
from bridge.cli import pipes
from bridge.records import NewJournal
from bridge.store.sqlite import SQLiteStore

pytestmark = pytest.mark.integration

LINES, MESSAGE_CHARS = 2000, 1000  # 2 MB of output
CONFIG = """
[storage]
path = "bridge.db"
[dingtalk]
app_key = "dingabc"
app_secret = "inline-app-secret-77"
agent_id = 42
[[sources]]
name = "erp"
signature = "hmac-sha256"
secret = "erp-webhook-secret-77"
"""


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipes")
    (folder / "bridge.toml").write_text(CONFIG, encoding="utf-8")

    async def fill() -> None:
        st = SQLiteStore(folder / "bridge.db")
        await st.open()
        try:
            lines = [NewJournal(kind="test.line", source="erp", message=f"{i:05d} " + "x" * MESSAGE_CHARS)
                     for i in range(LINES)]
            await st.append_journal(lines, datetime(2026, 11, 29, 2, 0, tzinfo=UTC))
        finally:
            await st.close()

    asyncio.run(fill())
    return folder / "bridge.toml"


def bridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


@pytest.fixture(params=["buffered", "unbuffered"])
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Both ways stdout can be written (PYTHONUNBUFFERED): the closed pipe shows at a print or at a flush."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return base | {"PYTHONUNBUFFERED": "1"} if request.param == "unbuffered" else base


def test_tail_into_a_pipe_closed_after_one_line_ends_quietly_with_141(cfg_path: Path, env: dict[str, str]) -> None:
    with subprocess.Popen(bridge("tail", "-n", str(LINES), "--config", str(cfg_path)), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # `head -1` has what it wanted
        err = proc.stderr.read()
        assert proc.wait() == pipes.EXIT_PIPE_CLOSED == 141, err
    assert b"00000 xxx" in first
    assert err == b""  # no traceback, no "error: BrokenPipeError", no "Exception ignored"


@pytest.mark.parametrize("args", [("--help",), ("tail", "--help"), ("--version",)])
def test_output_into_a_pipe_nobody_reads_ends_quietly_with_141(args: tuple[str, ...], env: dict[str, str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the process starts: its very first write meets no reader
    try:
        done = subprocess.run(bridge(*args), stdout=write_end, stderr=subprocess.PIPE, env=env, check=False)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, b"")


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A BrokenPipeError from a socket or a child process, with stdout intact, is a failure like any other."""

    def broken(_args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("bridge.cli.commands.cmd_tail", broken)
    assert cli.main(["tail", "--config", "unused.toml"]) == 1
    assert capsys.readouterr().err.startswith("error: BrokenPipeError: [Errno 32] Broken pipe")

"""A second `bridge serve` on the same database is refused with one line; read commands still work beside it."""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Server, free_port, run

pytestmark = pytest.mark.acceptance


def test_a_second_serve_on_the_same_database_is_refused_with_one_line(server: Server) -> None:
    second = run("serve", "--sandbox", "--port", free_port(), "--sim-port", free_port(), "--db", "bridge-sandbox.db",
                 cwd=server.cwd, timeout=30)
    assert second.code == 2
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is in use by another bridge serve" in lines[0], second.stderr
    assert f"pid {server.proc.popen.pid}" in lines[0]
    assert server.cli("tail", "-n", "1").code == 0  # the CLI's read commands take no lock
    assert server.proc.popen.poll() is None

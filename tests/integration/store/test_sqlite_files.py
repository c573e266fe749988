"""The SQLite store's files: one server per database, a deleted or replaced file noticed, immutable files survived.

The immutable-file test needs chattr (root, a filesystem with inode flags); it runs its store in a child
process, so if the guard ever failed the SIGBUS would kill the child, not the test runner.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bridge import app as bridge_app
from bridge.clock import FakeClock
from bridge.dingtalk.fake import FakeDingTalk
from bridge.errors import StorageInUse, StorageUnavailable
from bridge.store.sqlite import SQLiteStore
from bridge.store.sqlite_files import SUFFIXES
from tests.integration.store.test_contract import T0, ev
from tests.integration.test_web import NOW, body, config, post

pytestmark = pytest.mark.integration


def remove_all(db: Path) -> None:
    for suffix in SUFFIXES:
        db.with_name(db.name + suffix).unlink(missing_ok=True)


async def test_a_second_exclusive_store_is_refused_and_readers_still_work(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    serving = SQLiteStore(db, exclusive=True)
    await serving.open()
    try:
        await serving.add_event(ev(), b"{}", T0)
        with pytest.raises(StorageInUse, match=rf"{db.name} is in use by another bridge serve \(pid {os.getpid()}\)"):
            await SQLiteStore(db, exclusive=True).open()
        reader = SQLiteStore(db)  # what `bridge status` / `bridge tail` open: no lock
        await reader.open()
        try:
            assert await reader.get_event("erp", ev().event_id) is not None
        finally:
            await reader.close()
    finally:
        await serving.close()
    again = SQLiteStore(db, exclusive=True)  # the lock goes with the first server
    await again.open()
    await again.close()


async def test_a_deleted_database_refuses_writes_and_reads_and_is_never_recreated(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    st = SQLiteStore(db)
    await st.open()
    try:
        await st.add_event(ev(event_id="before"), b"{}", T0)
        remove_all(db)
        for _ in range(2):
            with pytest.raises(StorageUnavailable, match="was deleted while bridge ran"):
                await st.add_event(ev(event_id="after"), b"{}", T0)
        with pytest.raises(StorageUnavailable, match="deleted"):
            await st.check_writable()
        with pytest.raises(StorageUnavailable, match="deleted"):
            await st.get_event("erp", "before")
        assert not db.exists()
    finally:
        await st.close()
    assert not db.exists()


async def test_a_replaced_database_is_noticed(tmp_path: Path) -> None:
    db, other = tmp_path / "bridge.db", tmp_path / "other.db"
    st = SQLiteStore(db)
    await st.open()
    try:
        await st.add_event(ev(event_id="first"), b"{}", T0)
        shutil.copy(db, other)
        os.replace(other, db)
        with pytest.raises(StorageUnavailable, match="replaced by another file"):
            await st.add_event(ev(event_id="second"), b"{}", T0)
    finally:
        await st.close()


async def test_a_new_database_is_announced_and_an_existing_one_is_not(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    for expected in (1, 0):
        with capture_logs() as logs:
            st = SQLiteStore(db)
            await st.open()
            await st.close()
        assert sum(e["event"] == "storage.created" for e in logs) == expected


async def test_webhooks_and_readyz_answer_503_once_the_database_is_deleted(tmp_path: Path) -> None:
    cfg, db = config(), tmp_path / "bridge.db"
    application = bridge_app.create_app(cfg, store=SQLiteStore(db), clock=FakeClock(NOW),
                                        client=FakeDingTalk(), run_worker=False)
    async with TestClient(TestServer(application)) as client:
        assert (await post(client, cfg, body(event_id="e1")))[0] == 202
        assert (await (await client.get("/readyz")).json())["checks"]["storage"] == {"ok": True}
        remove_all(db)
        status, answer = await post(client, cfg, body(event_id="e2"))
        assert status == 503 and answer["error"] == "storage_unavailable" and "deleted" in answer["message"]
        ready = await client.get("/readyz")
        storage = (await ready.json())["checks"]["storage"]
        assert ready.status == 503 and not storage["ok"] and "deleted" in storage["error"]
    assert not db.exists()


CHILD = textwrap.dedent("""
    import asyncio, subprocess, sys
    from pathlib import Path
    from bridge.errors import StorageUnavailable
    from bridge.store.sqlite import SQLiteStore
    from tests.integration.store.test_contract import T0, ev

    db = Path(sys.argv[1])
    files = [str(db) + s for s in ("", "-wal", "-shm")]

    async def main() -> None:
        st = SQLiteStore(db)
        await st.open()
        await st.add_event(ev(event_id="before"), b"{}", T0)
        subprocess.run(["chattr", "+i", *files], check=True)
        try:
            for call in (lambda: st.add_event(ev(event_id="during"), b"{}", T0), st.check_writable,
                         lambda: st.get_event("erp", "before")):
                try:
                    await call()
                    print("accepted")
                except StorageUnavailable as exc:
                    print("refused", "immutable" in str(exc))
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        await st.add_event(ev(event_id="after"), b"{}", T0)  # recovered
        print("recovered", await st.get_event("erp", "after") is not None)
        await st.close()

    asyncio.run(main())
""")


def test_immutable_files_are_refused_with_503_not_sigbus_and_recovered_from(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.touch()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode:
        pytest.skip("chattr +i does not work here (needs root and a filesystem with inode flags)")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    db = tmp_path / "bridge.db"
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(db)], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).parents[3])
    finally:
        subprocess.run(["chattr", "-i", *(str(db) + s for s in SUFFIXES)], capture_output=True)
    assert done.returncode == 0, f"child died with {done.returncode}: {done.stderr[-2000:]}"
    said = [line for line in done.stdout.splitlines() if line.split(" ")[0] in ("refused", "accepted", "recovered")]
    assert said == ["refused True"] * 3 + ["recovered True"]


async def test_the_guard_keeps_sqlites_locks_so_another_process_closing_leaves_the_wal_alone(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops the process's POSIX locks on it; a guard that opened and closed
    the files on each check let a CLI process, closing the last connection it believed existed, delete the
    live -wal (and the server then refused everything)."""
    db = tmp_path / "bridge.db"
    st = SQLiteStore(db, exclusive=True)
    await st.open()
    try:
        await st.add_event(ev(event_id="one"), b"{}", T0)
        writer = textwrap.dedent("""
            import asyncio, sys
            from pathlib import Path
            from bridge.store.sqlite import SQLiteStore
            from tests.integration.store.test_contract import T0, ev

            async def main() -> None:
                st = SQLiteStore(Path(sys.argv[1]))
                await st.open()
                await st.add_event(ev(event_id="two"), b"{}", T0)
                await st.close()

            asyncio.run(main())
        """)
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", writer, str(db),
                                                     cwd=Path(__file__).parents[3], stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0, err.decode()[-2000:]
        assert db.with_name("bridge.db-wal").exists()
        await st.add_event(ev(event_id="three"), b"{}", T0)
        assert await st.get_event("erp", "two") is not None
    finally:
        await st.close()

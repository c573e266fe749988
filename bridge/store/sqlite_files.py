"""The SQLite store's files as the operating system sees them: who owns them, and are they still ours.

Three hazards live outside SQLite's own error handling, and each is cheaper to check than to suffer:

- A second `bridge serve` on the same file decides and sends everything twice. `ProcessLock` holds an
  exclusive `flock` on `<db>.lock` for the serving process's life; a second server is refused at start
  with one line. Read-only CLI commands never take it. (Decisions are also claimed inside their write
  transaction, so correctness does not rest on this lock; it turns a silent double into a clear refusal.)
- The database deleted or replaced under a running bridge: SQLite keeps writing into the unlinked inode,
  so accepted events vanish at the next restart, which then creates an empty file. `FileGuard` remembers
  the device and inode of the database (and its -wal / -shm) and refuses every access once the path no
  longer names the open file.
- A file made immutable (chattr +i): SQLite's WAL-index (-shm) is a shared memory map, and the kernel
  answers the first write to a mapped page of an immutable file with SIGBUS, which kills the process
  before any error can be logged. `FileGuard` reads the inode flags (FS_IOC_GETFLAGS) before each access
  and refuses it while a file is immutable or append-only, so bridge answers 503 and carries on once the
  flag is cleared.

The checks are a few stat/ioctl system calls (microseconds), done before each transaction and read and
again after each commit; they narrow the window to that gap, they cannot close it. The guard never opens
and closes the database files per check: closing a descriptor drops all of the process's POSIX locks on
that file, SQLite's among them, and another process could then delete the live WAL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path
from typing import NamedTuple

from bridge.errors import StorageInUse, StorageUnavailable

_FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on Linux
_FS_IMMUTABLE_FL = 0x00000010
_FS_APPEND_FL = 0x00000020
SUFFIXES = ("", "-wal", "-shm")


class ProcessLock:
    """An exclusive, non-blocking flock on `<db>.lock`, released when closed or when the process dies."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise StorageInUse(
                f"{self.path.with_name(self.path.name[:-5])} is in use by another bridge serve (pid {holder}); "
                "two servers on one database would send every card twice"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class _Identity(NamedTuple):  # a tuple: built three times per check, cheaper than a frozen dataclass
    dev: int
    ino: int


def _identity(path: Path | str) -> _Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _Identity(st.st_dev, st.st_ino)


def inode_flags(fd: int) -> int:
    """The inode flags of an open file (0 where the filesystem has none)."""
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8)
    except OSError:  # ENOTTY / EOPNOTSUPP: no inode flags here
        return 0
    return int(struct.unpack("I", raw[:4])[0])


class FileGuard:
    """Remembers which files the store opened and refuses access once the path stops naming them.

    `lost` is final: a database deleted or replaced under a running bridge is never silently recreated;
    only a restart (which logs that it created a new database) starts over.
    """

    def __init__(self, db: Path) -> None:
        self.db = db
        # the files' names as strings, made once: check() runs before every read and transaction, and building
        # three Paths each time cost more than its six system calls
        self._paths = {suffix: str(self._file(suffix)) for suffix in SUFFIXES}
        self._known: dict[str, _Identity] = {}
        # One descriptor per file, opened once and kept: closing ANY descriptor of a file drops every POSIX
        # lock this process holds on it, SQLite's included (then another process may delete the live -wal).
        self._fds: dict[str, int] = {}
        self.lost: str | None = None

    def arm(self) -> None:
        """Record the files as they are now (after the store opened its connections)."""
        self._known = {}
        for suffix in SUFFIXES:
            path = self._file(suffix)
            found = _identity(path)
            if found is None:
                continue
            self._known[suffix] = found
            old = self._fds.get(suffix)
            if old is not None:
                st = os.fstat(old)
                if _Identity(st.st_dev, st.st_ino) == found:
                    continue  # the same file: keep the descriptor (closing it would drop SQLite's locks)
                os.close(old)  # a file that is gone: no lock of ours left on it
            with contextlib.suppress(OSError):
                self._fds[suffix] = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)

    def release(self) -> None:
        """Close the descriptors; only once SQLite's connections are closed."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def rearm_sidecars(self) -> None:
        """After a reconnect: SQLite may have recreated -wal and -shm, but the database must be the same file."""
        db = self._known.get("")
        if db is not None and _identity(self.db) != db:
            self.check()  # marks the store lost and raises
        self.arm()

    def _file(self, suffix: str) -> Path:
        return self.db.with_name(self.db.name + suffix)

    def check(self) -> None:
        """Raise StorageUnavailable if the database was deleted or replaced, or a file is immutable."""
        if self.lost is not None:
            raise StorageUnavailable(self.lost)
        for suffix, known in self._known.items():
            now = _identity(self._paths[suffix])
            if now != known:
                path = self._file(suffix)
                what = "deleted" if now is None else "replaced by another file"
                self.lost = (f"storage unavailable: {path} was {what} while bridge ran; nothing is accepted "
                             "until bridge is restarted (restore the file first, or a new empty database "
                             "is created)")
                raise StorageUnavailable(self.lost)
        if blocked := self.immutable():
            raise StorageUnavailable(f"storage unavailable: {blocked} is immutable or append-only (chattr); "
                                     "bridge waits until it is writable again")

    def immutable(self) -> Path | None:
        """The first of the store's files that is immutable or append-only, if any."""
        for suffix, fd in self._fds.items():
            if inode_flags(fd) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
                return self._file(suffix)
        return None

    def safe_to_close(self) -> bool:
        """Closing the last connection writes to the -shm map: while it is immutable that is SIGBUS."""
        return self.immutable() is None

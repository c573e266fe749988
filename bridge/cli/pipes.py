"""A reader that stops early (`bridge tail -n 1000 | head -1`): end quietly, as `cat` or `seq` would.

Python ignores SIGPIPE (asyncio and aiohttp rely on that, so `bridge serve` keeps it ignored), so a write to a
pipe whose reader has gone raises BrokenPipeError instead of ending the process, and the interpreter, flushing
stdout once more on its way out, prints "Exception ignored ... BrokenPipeError" after it. `bridge.cli.main`
catches the error, checks that it really is stdout that is closed (`stdout_closed`: a BrokenPipeError from a
socket or a child process is a real failure and is reported as one), and calls `end_quietly`.

The exit status is 141 (128 + SIGPIPE), what the shell reports for `seq 1000000 | head -1`: the output was
cut short, which is not the same as success, and `set -o pipefail` scripts see what they see for any other
command in that place. Nothing is printed: the one who closed the pipe did so on purpose.
"""

from __future__ import annotations

import io
import os
import select
import signal
import sys

EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE  # 141, as the shell reports a command ended by SIGPIPE


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reading end has been closed."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # replaced (tests) or already closed
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))


def end_quietly() -> int:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered cannot fail
    again, and return the exit status."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_PIPE_CLOSED

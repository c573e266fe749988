"""What each `bridge` subcommand does; `bridge.cli` only parses arguments and dispatches here.

Commands that read or change state open the SQLite file named by the configuration directly, so they work
from another terminal beside a running `bridge serve` (and when it is down).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import sys
from typing import IO, TYPE_CHECKING, Any

from bridge.cli import common
from bridge.records import JobState

if TYPE_CHECKING:
    from bridge.config import Config

SANDBOX_DB = common.SANDBOX_DB
DEFAULT_SIM_PORT = common.DEFAULT_SIM_PORT
UsageError = common.UsageError
Failed = common.Failed
_load_config = common.load_config
_source = common.source
_open_store = common.open_store
_style = common.style
_print_json = common.print_json
# What `bridge jobs` lists by default: what needs attention.
OPEN_AND_DEAD: tuple[str, ...] = (JobState.PENDING, JobState.RUNNING, JobState.DEAD)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the schema now (serve also does it on start, under a lock on PostgreSQL)."""
    from bridge import errors

    cfg = _load_config(args)

    async def main() -> None:
        st = _open_store(cfg)
        await st.open()  # opening migrates: SQLite in one BEGIN IMMEDIATE, PostgreSQL under pg_advisory_lock
        await st.close()

    try:
        asyncio.run(main())
    except errors.StorageUnavailable as exc:
        raise UsageError(str(exc)) from None
    where = cfg.storage.url or cfg.storage.path
    print(f"storage {where}: schema up to date ({cfg.storage.engine})")
    return 0


# --- commands -------------------------------------------------------------------------------------------
def cmd_simulator(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.simulator import server as simulator

    logs.configure(fmt=args.log_format, level=args.log_level)
    return simulator.run_cli(args)


def cmd_check_config(args: argparse.Namespace) -> int:
    from bridge.cli import config_show

    if args.config is None:
        args.config = "bridge.toml"
    return config_show.run_check_cli(args)


async def _announce_sandbox_token(cfg: Any, ready: asyncio.Event, sim_url: str) -> None:
    """Once the sandbox listens, print its random admin token (never logged: the log scrubber masks it) and
    where to watch it in a browser: the console and the simulator's inboxes."""
    await ready.wait()
    token = cfg.server.admin_token.reveal()
    admin = f"http://{cfg.server.host}:{cfg.admin.port or cfg.server.port}"
    print(f"sandbox admin token (this run only): {token}\n"
          f"  curl -H 'Authorization: Bearer {token}' {admin}/approvals\n"
          f"  console (log in with the token): {admin}/console\n"
          f"  DingTalk inboxes as on a phone: {sim_url}/_sim/ui",
          file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run bridge. A listen failure (port in use) is one line and exit 2; start-up closes what it opened."""
    from bridge import app, errors, logs
    from bridge.appkeys import Role

    logs.configure(fmt=args.log_format, level=args.log_level)

    async def main() -> None:
        if args.sandbox:
            from bridge.simulator import server as simulator

            async with simulator.running(host="127.0.0.1", port=args.sim_port) as sim:
                args.sim_port = int(sim.base_url.rsplit(":", 1)[1])
                cfg = _load_config(args)
                ready = asyncio.Event()
                announce = asyncio.create_task(_announce_sandbox_token(cfg, ready, sim.base_url))
                try:
                    await app.serve(cfg, sandbox_sim=sim, ready=ready, role=Role(args.role))
                finally:
                    announce.cancel()
        else:
            await app.serve(_load_config(args), role=Role(args.role))

    faulthandler.enable()  # a fatal signal (SIGBUS from a mapped file) still leaves a line for the supervisor
    try:
        asyncio.run(main())
    except (errors.StorageInUse, app.ListenError) as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from bridge import clock
    from bridge.cli import send as sender

    cfg = _load_config(args)
    source = _source(cfg, args.source)
    body = common.read_input(args.file)
    url = args.url or sender.default_url(cfg, source)
    try:
        answer = asyncio.run(sender.send(url, source, body, clock.SystemClock().now()))
    except OSError as exc:
        raise Failed(f"cannot reach {url}: {exc}") from None
    print(f"HTTP {answer.status}", file=sys.stderr)
    print(answer.pretty())
    return 0 if answer.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from bridge import views
    from bridge.cli import present

    cfg = _load_config(args)
    if args.source is None or args.approval_id is None:
        return _apps_status(args, cfg)

    async def main() -> dict[str, Any] | None:
        st = _open_store(cfg)
        await st.open()
        try:
            return await views.approval_detail(st, args.source, args.approval_id)
        finally:
            await st.close()

    detail = asyncio.run(main())
    if detail is None:
        raise Failed(f"no approval {args.approval_id!r} from source {args.source!r} is known")
    if args.json:
        _print_json(detail)
    else:
        print(present.approval(detail, _style(args)))
    return 0


def _apps_status(args: argparse.Namespace, cfg: Config) -> int:
    """`bridge status` alone: each DingTalk app's figures from the running bridge."""
    from bridge.cli import apps_status

    if args.source is not None:
        raise UsageError("give both SOURCE and APPROVAL_ID (or neither, for each DingTalk app's figures)")
    try:
        body = apps_status.fetch(cfg, args.url)
    except RuntimeError as exc:
        raise Failed(str(exc)) from None
    if args.json:
        _print_json(body)
    else:
        print(apps_status.render(body))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from bridge import views
    from bridge.cli import present

    cfg = _load_config(args)
    state = JobState.DEAD if args.dead else args.state
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    states: tuple[str | None, ...] = (None,) if args.all else (state,) if state else OPEN_AND_DEAD

    async def main() -> list[dict[str, Any]]:
        st = _open_store(cfg)
        await st.open()
        try:
            found = [j for s in states for j in await st.list_jobs(s, args.limit)]
        finally:
            await st.close()
        # Each list is the newest `limit` of its state, so the newest `limit` of them all is among them.
        return [views.job(j) for j in sorted(found, key=lambda j: j.id, reverse=True)[: args.limit]]

    jobs = asyncio.run(main())
    if args.json:
        _print_json({"jobs": jobs, "count": len(jobs)})
    else:
        style = _style(args)
        for j in jobs:
            print(present.job_line(j, style))
        what = "" if args.all else f" in state {state}" if state else " open or dead (--all for done ones too)"
        print(f"{len(jobs)} job(s){what}, newest first", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from bridge import clock, operate

    if (args.job_id is None) == (not args.all_dead):
        raise UsageError("give a JOB_ID or --all-dead (not both)")
    cfg = _load_config(args)

    async def main() -> int:
        st = _open_store(cfg)
        await st.open()
        try:
            if args.job_id is not None:
                job = await st.get_job(args.job_id)
                if job is None:
                    raise Failed(f"no job {args.job_id}")
                if job.state != JobState.DEAD:
                    raise Failed(f"job {args.job_id} is {job.state}; only dead jobs can be retried")
            return await operate.retry_dead(st, clock.SystemClock().now(), args.job_id, by="CLI")
        finally:
            await st.close()

    n = asyncio.run(main())
    if args.json:
        _print_json({"retried": n})
    else:
        print(f"{n} job(s) put back in the queue; a running bridge picks them up within its poll interval")
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    from bridge import clock, operate

    cfg = _load_config(args)

    async def main() -> str:
        st = _open_store(cfg)
        await st.open()
        try:
            event = await operate.request_recall(st, args.source, args.approval_id, clock.SystemClock().now())
            return event.event_id
        finally:
            await st.close()

    try:
        event_id = asyncio.run(main())
    except operate.NotFound as exc:
        raise Failed(str(exc)) from None
    if args.json:
        _print_json({"status": "accepted", "event_id": event_id})
    else:
        print(f"recall accepted as event {event_id}; `bridge status {args.source} {args.approval_id}` shows progress")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from bridge.cli import present
    from bridge.clock import SystemClock
    from bridge.journal_follow import JournalFollower

    cfg = _load_config(args)
    style = _style(args)

    async def main() -> None:
        st = _open_store(cfg)
        await st.open()
        try:
            after = 0
            if not args.all and args.lines <= 0:  # nothing old: with --follow, only what is written from now on
                last = await st.journal_tail(1, source=args.source)
                after = last[0].id if last else 0
            elif not args.all:  # read the last N lines only, not the whole journal
                recent = await st.journal_tail(args.lines, source=args.source)
                after = recent[0].id - 1 if recent else 0
            if args.follow:
                print("following new lines (Ctrl-C stops)", file=sys.stderr, flush=True)
            # re-reads a short overlap: PostgreSQL ids can commit out of order (bridge.journal_follow)
            follower = JournalFollower(st, SystemClock(), after=after, source=args.source)
            while True:
                entries = await follower.poll()
                for e in entries:
                    if args.json:
                        print(json.dumps({"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "source": e.source,
                                          "approval_id": e.approval_id, "event_id": e.event_id, "job_id": e.job_id,
                                          "task_id": e.task_id, "message": e.message, "data": dict(e.data)},
                                         ensure_ascii=False), flush=True)
                    else:
                        print(present.journal_line(e, style), flush=True)
                if not args.follow:
                    return
                if not entries:
                    await asyncio.sleep(args.interval)
        finally:
            await st.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from bridge import clock, errors, logs
    from bridge.cli import ingest, progress

    cfg = _load_config(args)
    source = _source(cfg, args.source)
    if source.native is not None:
        raise UsageError(f"source {source.name!r} is a native {source.format} source; ingest takes canonical or "
                         "mapped JSON lines")

    stream: IO[bytes] = sys.stdin.buffer if args.file == "-" else _open_input(args.file)
    reader = ingest.LineReader(stream, follow=args.follow)
    system = clock.SystemClock()
    bar = progress.Progress(sys.stderr, system.monotonic, tty=sys.stderr.isatty(),
                            total_bytes=None if args.follow else ingest.size_of(stream), every=args.progress_every)

    async def main() -> ingest.IngestStats:
        st = _open_store(cfg)
        await st.open()
        try:
            return await ingest.ingest(st, source, reader.batches(), system, report=bar.note,
                                       progress=lambda stats: bar.update(stats, reader.bytes_read),
                                       progress_every=args.progress_every)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
            await st.close()

    try:
        with logs.configured(level="warning"):  # the store's own lines to stderr, never into --json's stdout
            stats = asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except errors.StorageUnavailable as exc:
        raise Failed(f"{exc}; lines before the failure are stored") from None
    print(bar.finish(stats), file=sys.stderr)
    if args.json:
        _print_json({"lines": stats.lines, "accepted": stats.accepted, "duplicates": stats.duplicates,
                     "bad": stats.bad, "problems": stats.problems})
    return 1 if stats.bad else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.cli import demo

    logs.configure(fmt="console", level=args.log_level)
    return asyncio.run(demo.run(colour=common.colour_wanted()))


def cmd_gen_secret(args: argparse.Namespace) -> int:
    """A fresh webhook secret (`whsec_` + base64 of 32 random bytes) or, with --admin-token, an admin token."""
    import base64
    import secrets

    if args.admin_token:
        print(secrets.token_urlsafe(32))
    else:
        print("whsec_" + base64.b64encode(secrets.token_bytes(args.bytes)).decode())
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """A completion script for bash or zsh, written by shtab from this very parser (so it cannot drift)."""
    try:
        import shtab
    except ImportError:
        raise Failed("shell completion needs shtab: pip install 'bridge[completion]' (or pip install shtab)") from None
    parser = args.build_parser(prog=args.prog)  # given by bridge.cli.main, which imports this module
    print(shtab.complete(parser, shell=args.shell))
    return 0


def _open_input(name: str) -> IO[bytes]:
    try:
        return open(name, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {name!r}: {exc.strerror or type(exc).__name__}") from None



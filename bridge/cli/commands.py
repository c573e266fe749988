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
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge import config, errors
from bridge.cli import config_show, present
from bridge.config import Config, SourceConfig
from bridge.records import JobState
from bridge.store import Store, open_store

SANDBOX_DB = "bridge-sandbox.db"
DEFAULT_SIM_PORT = 8789


class UsageError(Exception):
    """Bad arguments or configuration: exit 2."""


def _load_config(args: argparse.Namespace) -> Config:
    if getattr(args, "sandbox", False):
        cfg = config.sandbox(f"http://127.0.0.1:{getattr(args, 'sim_port', DEFAULT_SIM_PORT)}", SANDBOX_DB)
    else:
        path = Path(args.config or "bridge.toml")
        if not path.exists():
            hint = " (or use --sandbox for the built-in demo set-up)" if args.config is None else ""
            raise UsageError(f"configuration file {str(path)!r} not found{hint}")
        try:
            cfg = config.load(path)
        except errors.ConfigError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "host", None) or getattr(args, "port", None) is not None:
        try:
            cfg = config.override_server(cfg, host=getattr(args, "host", None), port=getattr(args, "port", None))
        except errors.ConfigError as exc:
            raise UsageError(str(exc)) from None
    if getattr(args, "db", None):
        cfg = replace(cfg, storage=replace(cfg.storage, path=args.db))
    return cfg


def _source(cfg: Config, name: str) -> SourceConfig:
    source = cfg.source(name)
    if source is None:
        known = ", ".join(s.name for s in cfg.sources) or "none"
        raise UsageError(f"no source named {name!r} in the configuration (configured: {known})")
    return source


def _open_store(cfg: Config) -> Store:
    return open_store(cfg.storage)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the schema now (serve also does it on start, under a lock on PostgreSQL)."""
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


def _style(args: argparse.Namespace) -> present.Style:
    return present.Style(colour=sys.stdout.isatty() and not getattr(args, "json", False))


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


# --- commands -------------------------------------------------------------------------------------------
def cmd_simulator(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.simulator import server as simulator

    logs.configure(fmt=args.log_format, level=args.log_level)
    return simulator.run_cli(args)


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.config is None:
        args.config = "bridge.toml"
    return config_show.run_check_cli(args)


async def _announce_sandbox_token(cfg: Any, ready: asyncio.Event) -> None:
    """Once the sandbox listens, print its random admin token (never logged: the log scrubber masks it)."""
    await ready.wait()
    token = cfg.server.admin_token.reveal()
    print(f"sandbox admin token (this run only): {token}\n"
          f"  curl -H 'Authorization: Bearer {token}' http://{cfg.server.host}:{cfg.server.port}/approvals",
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
                announce = asyncio.create_task(_announce_sandbox_token(cfg, ready))
                try:
                    await app.serve(cfg, sandbox_sim=sim, ready=ready, role=Role(args.role))
                finally:
                    announce.cancel()
        else:
            await app.serve(_load_config(args), role=Role(args.role))

    faulthandler.enable()  # a fatal signal (SIGBUS from a mapped file) still leaves a line for the supervisor
    try:
        asyncio.run(main())
    except errors.StorageInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except app.ListenError as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    from bridge import clock
    from bridge.cli import send as sender

    cfg = _load_config(args)
    source = _source(cfg, args.source)
    body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    url = args.url or sender.default_url(cfg, source)
    try:
        answer = asyncio.run(sender.send(url, source, body, clock.SystemClock().now()))
    except OSError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(f"HTTP {answer.status}", file=sys.stderr)
    print(answer.pretty())
    return 0 if answer.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from bridge import views
    cfg = _load_config(args)

    async def main() -> dict[str, Any] | None:
        st = _open_store(cfg)
        await st.open()
        try:
            return await views.approval_detail(st, args.source, args.approval_id)
        finally:
            await st.close()

    detail = asyncio.run(main())
    if detail is None:
        print(f"error: no approval {args.approval_id!r} from source {args.source!r} is known", file=sys.stderr)
        return 1
    if args.json:
        _print_json(detail)
    else:
        print(present.approval(detail, _style(args)))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from bridge import views
    cfg = _load_config(args)
    state = JobState.DEAD if args.dead else args.state

    async def main() -> list[dict[str, Any]]:
        st = _open_store(cfg)
        await st.open()
        try:
            return [views.job(j) for j in await st.list_jobs(state, args.limit)]
        finally:
            await st.close()

    jobs = asyncio.run(main())
    if args.json:
        _print_json({"jobs": jobs, "count": len(jobs)})
    else:
        style = _style(args)
        for j in jobs:
            print(present.job_line(j, style))
        print(f"{len(jobs)} job(s)" + (f" in state {state}" if state else ""), file=sys.stderr)
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
                    raise UsageError(f"no job {args.job_id}")
                if job.state != JobState.DEAD:
                    raise UsageError(f"job {args.job_id} is {job.state}; only dead jobs can be retried")
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json({"status": "accepted", "event_id": event_id})
    else:
        print(f"recall accepted as event {event_id}; `bridge status {args.source} {args.approval_id}` shows progress")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    style = _style(args)

    async def main() -> None:
        st = _open_store(cfg)
        await st.open()
        try:
            after = 0
            if not args.all:  # read the last N lines only, not the whole journal
                recent = await st.journal_tail(args.lines, source=args.source)
                after = recent[0].id - 1 if recent else 0
            while True:
                entries = await st.journal(after, source=args.source, limit=500)
                for e in entries:
                    if args.json:
                        print(json.dumps({"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "source": e.source,
                                          "approval_id": e.approval_id, "event_id": e.event_id, "job_id": e.job_id,
                                          "task_id": e.task_id, "message": e.message, "data": dict(e.data)},
                                         ensure_ascii=False), flush=True)
                    else:
                        print(present.journal_line(e, style), flush=True)
                    after = e.id
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
    from bridge import clock
    from bridge.cli import ingest

    cfg = _load_config(args)
    source = _source(cfg, args.source)
    if source.native is not None:
        raise UsageError(f"source {source.name!r} is a native {source.format} source; ingest takes canonical or "
                         "mapped JSON lines")

    def progress(stats: ingest.IngestStats) -> None:
        print(f"… {stats.summary()}", file=sys.stderr, flush=True)

    async def main() -> ingest.IngestStats:
        st = _open_store(cfg)
        await st.open()
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115, ASYNC230
        try:
            lines = ingest.read_lines(stream, follow=args.follow)
            return await ingest.ingest(st, source, lines, clock.SystemClock(), progress=progress,
                                       progress_every=args.progress_every)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
            await st.close()

    try:
        stats = asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    except errors.StorageUnavailable as exc:
        print(f"error: {exc}; lines before the failure are stored", file=sys.stderr)
        return 1
    print(stats.summary(), file=sys.stderr)
    if args.json:
        _print_json({"lines": stats.lines, "accepted": stats.accepted, "duplicates": stats.duplicates,
                     "bad": stats.bad, "problems": stats.problems})
    return 1 if stats.bad else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.cli import demo

    logs.configure(fmt="console", level=args.log_level)
    return asyncio.run(demo.run(colour=sys.stdout.isatty()))



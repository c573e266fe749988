"""The application factory and `bridge serve`.

`create_app` takes its collaborators as arguments (config, store, clock, DingTalk clients, metrics), so
tests build the real app around an in-memory store or the simulator. Resources live in `cleanup_ctx`
generators, entered in order and left in reverse: store → DingTalk client → worker. On shutdown aiohttp
stops listening first, lets in-flight webhooks finish, then the worker finishes or releases its jobs,
and the store is flushed and closed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from bridge import admin, console, errors, guard, logs, rejections, routing, service, worker
from bridge import web as webapp
from bridge.appkeys import (
    ADMIN_PORTS,
    CLIENTS,
    CLOCK,
    CONFIG,
    INTAKE,
    METRICS,
    REJECTIONS,
    ROLE,
    STORE,
    STREAMS,
    WAKE,
    WORKER,
    Role,
)
from bridge.clock import Clock, SystemClock
from bridge.config import Config
from bridge.dingtalk.apps import AppClients
from bridge.dingtalk.fleetlimit import SlotSource
from bridge.dingtalk.tokens import TokenRegistry
from bridge.errors import BridgeError
from bridge.metrics import Metrics
from bridge.priority import IntakeFirst
from bridge.sources import stream
from bridge.sources.native import native_keys
from bridge.store import Store, open_store

log = logs.get_logger("bridge.app")


def create_app(
    cfg: Config,
    *,
    store: Store,
    clock: Clock | None = None,
    client: worker.DingTalk | AppClients[Any] | None = None,
    metrics: Metrics | None = None,
    run_worker: bool = True,
    role: Role = Role.ALL,
) -> web.Application:
    """Build the bridge web application. The store is opened and closed by the app. `role` receiver runs no
    worker; `role` worker serves no webhooks (health, readiness, metrics and the admin API stay)."""
    app = web.Application(client_max_size=cfg.server.max_body_bytes + 1024)
    app[ADMIN_PORTS] = set()
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    metrics.set_build_info(store_kind(store))
    app[CONFIG] = cfg
    app[STORE] = store
    app[CLOCK] = clock
    app[METRICS] = metrics
    app[REJECTIONS] = rejections.RejectionLog(store, clock)
    app[ROLE] = role
    run_worker = run_worker and role.works

    def wake() -> None:
        w = app.get(WORKER)
        if w is not None:
            w.wake()

    app[WAKE] = wake
    app[INTAKE] = IntakeFirst(cfg.worker.intake_priority_s)

    async def store_ctx(_app: web.Application) -> AsyncIterator[None]:
        await store.open()
        yield
        await store.close()

    async def client_ctx(a: web.Application) -> AsyncIterator[None]:
        """One client per DingTalk app; a single injected client (tests) serves every app."""
        if client is not None:
            a[CLIENTS] = client if isinstance(client, AppClients) else AppClients.same(client, cfg)
            yield
            return
        async with aiohttp.ClientSession() as session:
            slots = store if isinstance(store, SlotSource) else None  # PostgreSQL: one rate limit for the fleet
            a[CLIENTS] = AppClients.from_config(session, cfg, clock=clock, observer=metrics,
                                                tokens=TokenRegistry(store), slots=slots)  # one token per app
            yield

    async def worker_ctx(a: web.Application) -> AsyncIterator[None]:
        decider = service.Decider(store, cfg, clock, observer=metrics)
        w = worker.Worker(store, a[CLIENTS], cfg, clock, decider=decider, observer=metrics,
                          prune_observer=metrics, intake=a[INTAKE])
        a[WORKER] = w
        task = None
        if run_worker:
            store.on_work(w.wake)  # other processes' new work (PostgreSQL NOTIFY); polling stays the fallback
            task = asyncio.create_task(w.run(), name="bridge-worker")
        yield
        if task is not None:
            w.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def rejections_ctx(a: web.Application) -> AsyncIterator[None]:
        """Rejected webhooks reach the journal once a minute, and what is counted at shutdown too."""
        task = asyncio.create_task(a[REJECTIONS].run(), name="bridge-rejections")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(errors.StorageUnavailable):
            await a[REJECTIONS].flush()

    async def stream_ctx(a: web.Application) -> AsyncIterator[None]:
        """One Stream client per `transport = "stream"` source, in receiving processes only."""
        sources = stream.stream_sources(cfg.sources) if role.receives else []
        a[STREAMS] = []
        if not sources:
            yield
            return
        async with aiohttp.ClientSession() as session:
            clients = [stream.StreamClient(s, store, session, clock, wake=wake, observer=metrics) for s in sources]
            a[STREAMS] = clients
            tasks = [asyncio.create_task(c.run(), name=f"bridge-stream-{c.source.name}") for c in clients]
            yield
            for c in clients:
                c.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.extend([store_ctx, client_ctx, rejections_ctx, worker_ctx, stream_ctx])
    webapp.add_routes(app, wrap=routing.edge, webhooks=role.receives)
    admin.add_routes(app, wrap=routing.edge)
    console.add_routes(app, wrap=routing.edge)
    routing.add_fallback(app)  # last: it serves only what no route above does
    return app


class ListenError(BridgeError):
    """bridge could not listen on an address (in use, not permitted, not local): `bridge serve` exits 2."""


def secret_values(cfg: Config) -> list[str]:
    """Every secret the configuration holds, revealed for the log scrubber: webhook secrets, app secrets, the
    admin token, the database password, and each native source's keys (DingTalk / WeCom token and aes_key,
    Feishu verification token and encrypt key, the Stream client secret)."""
    values = [s.reveal() for src in cfg.sources for s in src.secrets]
    values += [a.app_secret.reveal() for a in cfg.dingtalk.all_apps]
    values += [k.reveal() for src in cfg.sources if src.native is not None for k in native_keys(src.native)]
    if cfg.server.admin_token is not None:
        values.append(cfg.server.admin_token.reveal())
    if cfg.storage.password is not None:
        values.append(cfg.storage.password.reveal())
    return [v for v in values if v]


async def serve(
    cfg: Config, *, sandbox_sim: object | None = None, ready: asyncio.Event | None = None, role: Role = Role.ALL
) -> None:
    """Run the receiver and/or the worker (`role`) until SIGINT / SIGTERM, then shut down gracefully. With
    SQLite only one process may serve the file; with PostgreSQL any number, in any mix of roles. `sandbox_sim`
    is the running simulator of `serve --sandbox` (only logged: the sandbox config already points at it).

    Whatever fails during start-up (a port in use, the store), everything opened so far is closed again
    before the error propagates, so the process exits instead of hanging on the store's writer thread."""
    logs.register_secrets(secret_values(cfg))
    storage_path = cfg.storage.url or _absolute(cfg.storage.path)
    st = open_store(cfg.storage, exclusive=True)  # one server per SQLite database
    structlog.contextvars.bind_contextvars(role=str(role), pid=os.getpid())  # every line names process and role
    app = create_app(cfg, store=st, role=role)
    limits = guard.Limits.from_config(cfg.server)
    if limits.max_connections < cfg.server.max_connections:
        log.warning("bridge.max_connections_lowered", configured=cfg.server.max_connections,
                    used=limits.max_connections, reason="kept under the open-file limit (ulimit -n)")
    runner = guard.GuardedRunner(app, limits=limits, shutdown_timeout=cfg.server.shutdown_timeout_s, access_log=None)
    try:
        await runner.setup()
        port = await _listen(runner, cfg.server.host, cfg.server.port)
        admin_port = None
        if cfg.admin.port is not None:
            admin_port = await _listen(runner, cfg.admin.host, cfg.admin.port)
            app[ADMIN_PORTS].add(admin_port)
    except BaseException:
        await runner.cleanup()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "bridge.started",
        listen=f"http://{cfg.server.host}:{port}",
        admin=f"http://{cfg.admin.host}:{admin_port}" if admin_port is not None else "same listener",
        storage=storage_path,
        dingtalk={a.name: f"{a.base_url} agent {a.agent_id}" for a in cfg.dingtalk.all_apps},
        sources=[s.name for s in cfg.sources],
        sandbox=sandbox_sim is not None,
        role=str(role),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("bridge.stopping")
        await runner.cleanup()
        log.info("bridge.stopped")


async def _listen(runner: web.AppRunner, host: str, port: int) -> int:
    """Start one listener; its bound port (for port 0). ListenError names the address."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        raise ListenError(f"cannot listen on {host}:{port}: {why[:1].lower()}{why[1:]}") from None
    return site.port


def _absolute(path: str) -> str:
    return os.path.abspath(path)


def store_kind(st: Store) -> str:
    """The store's short name for bridge_build_info: `kind` if it has one, else its class name ("SQLiteStore" →
    "sqlite")."""
    kind = getattr(st, "kind", None)
    if isinstance(kind, str):
        return kind
    return type(st).__name__.removesuffix("Store").lower() or "unknown"

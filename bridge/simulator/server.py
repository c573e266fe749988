"""A local DingTalk work-notification server, for development, tests, the sandbox mode and benchmarks.

bridge never talks to the real DingTalk in tests or demos; it talks to this. The rules live in
`bridge.simulator.state` and the wire format in `bridge.simulator.wire`; this module is only the aiohttp edge: it
decodes JSON and form bodies, waits out injected delays, and serves the inspection API under /_sim/
(calls received, each user's inbox, tasks, marking a card read, moving simulated time, faults, users,
the employee directory, reset, stats). Three ways in: `bridge simulator` (`run_cli`), in-process with `running(...)` (an
AppRunner on a free port), or `create_app(state)` under aiohttp's TestServer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from bridge.secret import Secret
from bridge.simulator import router as sim_router
from bridge.simulator import stream as sim_stream
from bridge.simulator import ui
from bridge.simulator import wire as sim_wire
from bridge.simulator.directory import Directory
from bridge.simulator.model import DEFAULT_DIRECTORY, DEMO_APP, FAULT_KINDS, Employee, FaultPlan, SimApp, SimSettings
from bridge.simulator.state import SimState
from bridge.simulator.wire import SimAnswer

log = structlog.get_logger(__name__)

SIM_STATE = web.AppKey("SIM_STATE", SimState)


# --- the DingTalk side ------------------------------------------------------------------------------------
async def _read_body(request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    """The request body as a dict, or an error text naming why it could not be read."""
    if request.method == "GET" or not request.can_read_body:
        return None, None
    raw = await request.read()
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        return {}, None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if request.content_type == "multipart/form-data":
            return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}, None
        return dict(parse_qsl(text, keep_blank_values=True)), None
    try:
        body = json.loads(text)
    except ValueError:
        return None, "request body is not valid JSON"
    if not isinstance(body, dict):
        return None, "request body must be a JSON object"
    return body, None


def _respond(answer: SimAnswer) -> web.Response:
    if answer.body is not None:
        return web.Response(status=answer.status, text=json.dumps(answer.body, ensure_ascii=False),
                            content_type="application/json", charset="utf-8")
    return web.Response(status=answer.status, text=answer.text or "", content_type=answer.content_type,
                        charset="utf-8")


async def _oapi(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    body, body_error = await _read_body(request)
    answer = sim_wire.handle(state, request.method, request.path, dict(request.query), body, body_error=body_error)
    if answer.delay_s > 0:
        await asyncio.sleep(answer.delay_s)
    return _respond(answer)


async def _router(request: web.Request) -> web.Response:
    """The TOP router: parameters from the query string and/or a form body (bridge.simulator.router)."""
    body, body_error = await _read_body(request)
    params: dict[str, Any] = {**(body or {}), **dict(request.query)}
    answer = sim_router.handle(request.app[SIM_STATE], request.method, params, body_error=body_error)
    if answer.delay_s > 0:
        await asyncio.sleep(answer.delay_s)
    return _respond(answer)


# --- the inspection API -----------------------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, ensure_ascii=False), content_type="application/json",
                        charset="utf-8")


def _http_error(message: str, status: int) -> web.HTTPException:
    cls = web.HTTPNotFound if status == 404 else web.HTTPBadRequest
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


async def _object(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise _http_error("body must be JSON", 400) from None
    if not isinstance(data, dict):
        raise _http_error("body must be a JSON object", 400)
    return data


def _int_arg(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _http_error(f"{name} must be an integer", 400) from None


async def _calls(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    since = _int_arg(request.query.get("since", "0"), "since")
    calls = state.calls(path=request.query.get("path"), since=since)
    return _json({"calls": calls, "count": len(calls), "next": state.calls_dropped + len(state.call_log)})


async def _inbox(request: web.Request) -> web.Response:
    userid = request.match_info["userid"]
    return _json({"userid": userid, "cards": request.app[SIM_STATE].inbox(userid)})


async def _tasks(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    return _json({"task_ids": list(state.tasks), "count": len(state.tasks)})


async def _task(request: web.Request) -> web.Response:
    task_id = _int_arg(request.match_info["task_id"], "task_id")
    view = request.app[SIM_STATE].task(task_id)
    if view is None:
        raise _http_error(f"no task {task_id}", 404)
    return _json(view)


async def _read(request: web.Request) -> web.Response:
    data = await _object(request)
    task_id, userid = _int_arg(data.get("task_id"), "task_id"), str(data.get("userid", ""))
    try:
        request.app[SIM_STATE].mark_read(task_id, userid)
    except KeyError as exc:
        raise _http_error(str(exc.args[0]), 404) from None
    return _json({"task_id": task_id, "userid": userid, "read": True})


async def _clock(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    if request.method == "POST":
        data = await _object(request)
        try:
            state.advance(float(data.get("seconds", 0)))
        except (TypeError, ValueError) as exc:
            raise _http_error(f"seconds: {exc}", 400) from None
    return _json({"now": state.clock.now().isoformat()})


async def _faults(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    if request.method == "DELETE":
        state.clear_faults()
    elif request.method == "POST":
        data = await _object(request)
        known = {"rate", "kinds", "seed", "delay_s", "timeout_s", "gettoken", "limit", "calls", "ip_ban_status"}
        if unknown := sorted(set(data) - known):
            raise _http_error(f"unknown fields {unknown}; known: {sorted(known)}", 400)
        for key in ("kinds", "calls"):
            if key in data:
                data[key] = tuple(data[key] if isinstance(data[key], list) else [data[key]])
        try:
            state.set_faults(FaultPlan(**data))
        except (TypeError, ValueError) as exc:
            raise _http_error(f"{exc} (kinds: {', '.join(FAULT_KINDS)})", 400) from None
    plan = state.faults
    return _json({"rate": plan.rate, "kinds": list(plan.kinds), "seed": plan.seed, "delay_s": plan.delay_s,
                  "timeout_s": plan.timeout_s, "gettoken": plan.gettoken, "limit": plan.limit,
                  "calls": list(plan.calls), "ip_ban_status": plan.ip_ban_status})


async def _users(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    data = await _object(request)
    for key in ("invalid", "known"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise _http_error(f"{key} must be a list of userids (or null)", 400)
    state.set_users(invalid=data.get("invalid"), known=data.get("known"),
                    everyone_known="known" in data and data["known"] is None)
    known = None if state.known_userids is None else sorted(state.known_userids)
    return _json({"invalid": sorted(state.invalid_userids), "known": known})


async def _directory(request: web.Request) -> web.Response:
    """GET: the employees getbymobile / getbyunionid know. POST {"employees": [{userid, mobile, unionid}]}:
    replace them (until the next reset, which restores the configured directory)."""
    state = request.app[SIM_STATE]
    if request.method == "POST":
        data = await _object(request)
        if set(data) != {"employees"} or not isinstance(data["employees"], list):
            raise _http_error('body must be {"employees": [{"userid", "mobile", "unionid"}, ...]}', 400)
        try:
            state.directory = Directory(Employee.from_dict(e) for e in data["employees"])
        except ValueError as exc:
            raise _http_error(str(exc), 400) from None
    return _json({"employees": [e.to_dict() for e in state.directory.employees]})


async def _reset(request: web.Request) -> web.Response:
    request.app[SIM_STATE].reset()
    return _json({"reset": True})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[SIM_STATE].stats())


async def _ui(request: web.Request) -> web.Response:
    html = ui.render(request.app[SIM_STATE], request.query.get("user") or None,
                     refresh=request.query.get("refresh") != "0")
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})


async def _ui_css(_request: web.Request) -> web.Response:
    return web.Response(body=ui.css(), content_type="text/css", charset="utf-8")


async def _apps(request: web.Request) -> web.Response:
    """The simulator's apps (app_key, agent_id; the secret masked), so a client can discover what to use."""
    apps = request.app[SIM_STATE].settings.apps
    return _json({"apps": [{"app_key": a.app_key, "agent_id": a.agent_id, "app_secret": Secret(a.app_secret).masked()}
                           for a in apps]})


def create_app(state: SimState | None = None, gateway: sim_stream.StreamGateway | None = None) -> web.Application:
    """The simulator as an aiohttp application; `app[SIM_STATE]` is its state, `app[sim_stream.STREAM]` the
    Stream gateway (built for the state's apps unless given)."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SIM_STATE] = state if state is not None else SimState()
    sim_stream.add_routes(app, gateway or sim_stream.StreamGateway(app[SIM_STATE].settings.apps))
    app.router.add_route("*", "/gettoken", _oapi)
    app.router.add_route("*", "/topapi/{tail:.*}", _oapi)
    app.router.add_route("*", sim_router.ROUTER_PATH, _router)
    app.router.add_get("/_sim/calls", _calls)
    app.router.add_get("/_sim/inbox/{userid}", _inbox)
    app.router.add_get("/_sim/tasks", _tasks)
    app.router.add_get("/_sim/tasks/{task_id}", _task)
    app.router.add_post("/_sim/read", _read)
    app.router.add_get("/_sim/clock", _clock)
    app.router.add_post("/_sim/clock/advance", _clock)
    app.router.add_route("*", "/_sim/faults", _faults)
    app.router.add_post("/_sim/users", _users)
    app.router.add_route("*", "/_sim/directory", _directory)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_get("/_sim/ui", _ui)
    app.router.add_get("/_sim/ui.css", _ui_css)
    app.router.add_get("/_sim/apps", _apps)
    return app


# --- running it -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator listening on a socket: where it is and its state."""

    base_url: str
    state: SimState
    app: web.Application

    @property
    def stream(self) -> sim_stream.StreamGateway:
        return self.app[sim_stream.STREAM]


@contextlib.asynccontextmanager
async def running(host: str = "127.0.0.1", port: int = 0, state: SimState | None = None,
                  gateway: sim_stream.StreamGateway | None = None) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator on host:port (0 = a free port) for the duration of the block."""
    app = create_app(state, gateway)
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        yield RunningSimulator(base_url=f"http://{url_host}:{bound}", state=app[SIM_STATE], app=app)
    finally:
        await runner.cleanup()


async def _serve_forever(host: str, port: int, state: SimState) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running(host, port, state) as sim:
        apps = ", ".join(f"app_key {a.app_key} agent_id {a.agent_id}" for a in state.settings.apps)
        log.info("simulator.started", base_url=sim.base_url, apps=apps,
                 status_bar_violation=state.settings.status_bar_violation)
        print(f"DingTalk simulator listening on {sim.base_url} ({apps}); inspect at {sim.base_url}/_sim/stats",
              flush=True)
        await stop.wait()
    log.info("simulator.stopped")


def parse_app(text: str) -> SimApp:
    """`KEY:SECRET:AGENT` (the secret may not contain ':'; the agent id is an integer) → a SimApp."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit():
        raise ValueError(f"--app must be KEY:SECRET:AGENT (agent id an integer), not {parts[0]!r}:…")
    return SimApp(parts[0], parts[1], int(parts[2]))


def parse_user(text: str) -> Employee:
    """`USERID:MOBILE[:UNIONID]` (either of the last two may be empty) → a directory Employee."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(f"--user must be USERID:MOBILE[:UNIONID], not {text!r}")
    return Employee(parts[0], parts[1] or None, (parts[2] if len(parts) == 3 else "") or None)


def load_directory(path: str) -> tuple[Employee, ...]:
    """A JSON file `{"employees": [{"userid", "mobile", "unionid"}, ...]}` (the body POST /_sim/directory takes)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--directory {path}: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"employees"} or not isinstance(data["employees"], list):
        raise ValueError(f'--directory {path}: must be {{"employees": [{{"userid", "mobile", "unionid"}}, ...]}}')
    try:
        return tuple(Employee.from_dict(e) for e in data["employees"])
    except ValueError as exc:
        raise ValueError(f"--directory {path}: {exc}") from None


def run_cli(args: argparse.Namespace) -> int:
    """`bridge simulator --host H --port P [--status-bar-violation ignore|error] [--app KEY:SECRET:AGENT]...
    [--directory FILE] [--user USERID:MOBILE[:UNIONID]]... [--qps N] [--token-ttl S]`; --user entries are added
    after the file's."""
    try:
        apps = tuple(parse_app(a) for a in (getattr(args, "app", None) or []))
        directory = getattr(args, "directory", None)
        users = load_directory(directory) if directory else ()
        users += tuple(parse_user(u) for u in (getattr(args, "user", None) or []))
        tuning = {k: v for k, v in (("qps", getattr(args, "qps", None)),
                                    ("token_ttl_s", getattr(args, "token_ttl", None))) if v is not None}
        if any(v <= 0 for v in tuning.values()):
            raise ValueError("--qps and --token-ttl must be positive")
        settings = SimSettings(status_bar_violation=getattr(args, "status_bar_violation", None) or "ignore",
                               apps=apps or (DEMO_APP,), directory=users or DEFAULT_DIRECTORY, **tuning)
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    try:
        asyncio.run(_serve_forever(args.host, args.port, SimState(settings)))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        pass
    return 0

"""The rules every answer passes, applied route by route instead of by a middleware, and the answer for a
path no route serves.

The rules: a route on the wrong listener is a 404 (`admin.wrong_listener`), console answers carry their
security headers (`console.secure`), and aiohttp's plain-text errors become JSON (`web.json_answer_for`).

Why not a middleware: aiohttp runs an application's middlewares around every request, and with any
middleware at all it adds one of its own (`_fix_request_current_app`): two coroutine frames and a cached
lookup on every webhook. Without them the receiver went from 827.1k to 805.5k instructions per webhook (-2.6%,
callgrind, bench/instructions.py). The webhook route is the one hot path and applies the rules itself
(`bridge.web.receive_webhook`: its own listener check, its errors already JSON); every other route's
handler is wrapped once, at registration, by `edge`. The router's own 404 and 405, which no handler of
ours raised, are answered by a catch-all route added last (`add_fallback`), wrapped like the others.
"""

from __future__ import annotations

import functools

from aiohttp import web

from bridge import admin, console
from bridge import web as webapp

__all__ = ["add_fallback", "edge", "no_route"]


def edge(handler: webapp.Handler) -> webapp.Handler:
    """`handler` with the rules applied around it. Attributes set on `handler` (the admin-listener mark) are
    carried over, so `admin.wrong_listener` still reads them off the route."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            refused = admin.wrong_listener(request)
            resp = refused if refused is not None else await handler(request)
        except web.HTTPException as exc:
            answer = webapp.json_answer_for(request, exc)
            if answer is None:  # a redirect, or already JSON: raised as it is, with the headers
                console.secure(request, exc)
                raise
            resp = answer
        console.secure(request, resp)
        return resp

    return guarded


async def no_route(request: web.Request) -> web.StreamResponse:
    """The catch-all route's handler: 405 with `Allow` when another route serves this path with other methods,
    else 404 (both made JSON by `edge`). aiohttp's router would answer the same, but only the catch-all makes
    that answer pass through a handler of ours."""
    itself = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not itself:
            _match, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_fallback(app: web.Application) -> None:
    """Add the catch-all route; after every other route, so it serves only what none of them does."""
    app.router.add_route("*", "/{path:.*}", edge(no_route))

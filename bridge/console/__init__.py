"""The web console: approvals and their cards as the approvers see them, for people rather than scripts.

Served by bridge itself at /console (on the admin listener when there is one, like the admin API), with no
build step and nothing fetched from elsewhere: the templates (`templates/`), one CSS file and one small script
(`static/`) ship in the package. Access needs the admin token (see `bridge.console.auth`); pages are
server-rendered HTML with every value escaped (`bridge.console.html`), and the actions reuse
`bridge.operate`, as the admin API does. See docs/console.md.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from bridge.console import actions, auth, overview, pages
from bridge.console.auth import ADMIN_MARK, protected
from bridge.console.throttle import LoginThrottle
from bridge.web import Handler, Wrap

__all__ = ["add_routes"]

STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
# Scripts only from /console/static; inline style attributes carry the cards' colours (escaped hex only).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _static(name: str) -> bytes:
    return resources.files("bridge.console").joinpath("static", name).read_bytes()


def _asset(name: str, content_type: str) -> Handler:
    body = _static(name)

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "max-age=300"})

    setattr(handler, ADMIN_MARK, True)
    return handler


def secure(request: web.Request, answer: web.StreamResponse | web.HTTPException) -> None:
    """Security headers on every console answer (redirects and errors included); other paths are left as they
    are. Applied around every route but the webhook's by bridge.routing.edge, and so also to the 404 of a
    /console path no route serves."""
    if request.path.startswith("/console"):
        _secure(answer)


def _secure(resp: web.StreamResponse | web.HTTPException) -> None:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if not _cacheable(resp):
        resp.headers.setdefault("Cache-Control", "no-store")


def _cacheable(resp: web.StreamResponse | web.HTTPException) -> bool:
    return "max-age" in resp.headers.get("Cache-Control", "")


def _mark(handler: Handler) -> Handler:
    setattr(handler, ADMIN_MARK, True)
    return handler


def add_routes(app: web.Application, *, wrap: Wrap) -> None:
    """Mount the console on `app` (before it starts): routes and the per-process session key. Each handler is
    wrapped by `wrap` (bridge.routing.edge), which adds the security headers through `secure`."""
    app[auth.KEY] = auth.new_key()
    app[auth.THROTTLE] = LoginThrottle()
    r = app.router
    for name, ctype in STATIC.items():
        r.add_get(f"/console/static/{name}", wrap(_asset(name, ctype)))
    r.add_get("/console/login", wrap(_mark(actions.login_form)))
    r.add_post("/console/login", wrap(_mark(actions.login)))
    r.add_post("/console/logout", wrap(protected(actions.logout)))
    r.add_get("/console", wrap(protected(overview.overview)))
    r.add_get("/console/", wrap(protected(overview.overview)))
    r.add_get("/console/approvals", wrap(protected(pages.approvals)))
    r.add_get("/console/approvals/{source}/{approval_id}", wrap(protected(pages.approval)))
    r.add_get("/console/approvals/{source}/{approval_id}/live", wrap(protected(pages.approval_live)))
    r.add_post("/console/approvals/{source}/{approval_id}/recall", wrap(protected(actions.recall)))
    r.add_post("/console/approvals/{source}/{approval_id}/resync", wrap(protected(actions.resync)))
    r.add_post("/console/jobs/{job_id}/retry", wrap(protected(actions.retry_job)))
    r.add_post("/console/dead/retry", wrap(protected(actions.retry_selected)))
    r.add_get("/console/dead", wrap(protected(pages.dead_letters)))
    r.add_get("/console/dead/live", wrap(protected(pages.dead_live)))
    r.add_get("/console/journal", wrap(protected(pages.journal)))
    r.add_get("/console/journal.json", wrap(protected(pages.journal_json)))

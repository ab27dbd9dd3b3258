"""The operators' dashboard: ``GET /`` (HTML), ``GET|POST /login``, ``POST /logout``.

Server-rendered pages with no script and nothing fetched from elsewhere (inline CSS), so
they work without JavaScript and under a Content-Security-Policy that allows no other
source. Logging in checks a token (``drd token create``) and keeps it in the HttpOnly,
SameSite=Strict :data:`~drd.api.auth.SESSION_COOKIE`; the API's GET routes accept that
cookie too (:func:`drd.api.auth.current_principal`), so the dashboard's links to drill
reports open in the browser. Every value is escaped by the templates (autoescape on).
What the page shows comes from :func:`drd.services.dashboard.dashboard`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from drd.api.auth import SESSION_COOKIE
from drd.api.context import Context
from drd.services.dashboard import dashboard
from drd.services.refusals import NotAuthenticated
from drd.services.tokens import Principal, authenticate
from restore_drills.charts import human_duration

log = logging.getLogger("drd.dashboard")

router = APIRouter(include_in_schema=False)

SESSION_SECONDS = 12 * 3600
REFRESH_SECONDS = 60
MAX_PAGE = 1_000_000
MAX_TOKEN_CHARACTERS = 512
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _when(moment: dt.datetime | None) -> str:
    """``2026-11-27 19:05 UTC`` (``-`` for None)."""
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _size(count: int | None) -> str:
    """``512 B``, ``1.5 MiB``, ... (``-`` for None)."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # not reached


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f} %"


_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("drd.api", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(when=_when, size=_size, percent=_percent,
                          duration=human_duration,
                          css=lambda text: str(text).replace(" ", "-"))


def _html(template: str, status: int = 200, **values) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**values),
                        status_code=status, headers=SECURITY_HEADERS)


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303,
                            headers={"Cache-Control": "no-store"})


def _session_principal(request: Request, context: Context) -> Principal | None:
    """Who the session cookie speaks for; None for no cookie or one no longer valid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > MAX_TOKEN_CHARACTERS:
        return None
    try:
        return authenticate(context.catalog, token, now=context.now())
    except NotAuthenticated:
        return None


@router.get("/", response_class=HTMLResponse)
def show_dashboard(request: Request, context: Context,
                   page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1) -> Response:
    """The dashboard for the logged-in token; 303 to ``/login`` without one."""
    principal = _session_principal(request, context)
    if principal is None:
        response = _redirect("/login")
        if SESSION_COOKIE in request.cookies:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    board = dashboard(context.catalog, principal, page=page, now=context.now())
    return _html("dashboard.html.j2", board=board, refresh_seconds=REFRESH_SECONDS)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> Response:
    """The login form: one token field."""
    return _html("login.html.j2", problem=None)


@router.post("/login", response_class=HTMLResponse)
async def log_in(request: Request, context: Context) -> Response:
    """Check the form's ``token``; on success set the session cookie and go to ``/``
    (303), else show the form again with the reason (401; 403 for an agent's token)."""
    token = _form_token(await request.body())
    if not token:
        return _html("login.html.j2", 401, problem="Enter a token (drd token create).")
    if len(token) > MAX_TOKEN_CHARACTERS:
        return _html("login.html.j2", 401,
                     problem="unknown token: this centre did not issue it")
    try:
        principal = await run_in_threadpool(authenticate, context.catalog, token,
                                            context.now())
    except NotAuthenticated as refused:
        return _html("login.html.j2", 401, problem=str(refused))
    if principal.role == "agent":
        return _html("login.html.j2", 403, problem="an agent's token cannot log in: use a "
                     "person's token (drd token create)")
    log.info("dashboard: token %s (%s) logged in", principal.name, principal.role)
    response = _redirect("/")
    response.set_cookie(SESSION_COOKIE, token.strip(), max_age=SESSION_SECONDS, path="/",
                        secure=request.url.scheme == "https", httponly=True,
                        samesite="strict")
    return response


@router.post("/logout")
def log_out() -> Response:
    """Forget the session cookie and go to ``/login`` (303)."""
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _form_token(body: bytes) -> str:
    """The ``token`` field of an ``application/x-www-form-urlencoded`` body ("" when
    there is none, or the body is not such a form)."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return ""
    return (fields.get("token") or [""])[0].strip()

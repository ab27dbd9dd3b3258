"""The operators' dashboard: ``GET /`` (HTML), ``GET|POST /login``, ``POST /logout``.

Server-rendered pages with no script and nothing fetched from elsewhere (inline CSS), so
they work without JavaScript and under a Content-Security-Policy that allows no other
source. Logging in checks a token (``drd token create``) and keeps it in the HttpOnly,
SameSite=Strict :data:`~drd.api.auth.SESSION_COOKIE` (``Secure`` over https and when
``public_url`` is https, as behind a TLS-terminating proxy); the API's GET routes accept
that cookie too (:func:`drd.api.auth.current_principal`), so the dashboard's links to
drill reports open in the browser (which carry :data:`SECURITY_HEADERS` too). Logging in
and out refuse a request another site sent (:func:`cross_site_refusal`): SameSite does
not stop a form posted from another site to log a browser in with the attacker's token.
Every value is escaped by the templates (autoescape on). What the page shows comes from
:func:`drd.services.dashboard.dashboard`.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import parse_qs, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from drd.api.auth import SESSION_COOKIE
from drd.api.context import Context
from drd.api.pagination import Cursor, paged, read_cache
from drd.services.dashboard import dashboard
from drd.services.refusals import NotAllowed, NotAuthenticated
from drd.services.tokens import Principal, authenticate
from restore_drills.charts import human_duration

log = logging.getLogger("drd.dashboard")

router = APIRouter(include_in_schema=False)

SESSION_SECONDS = 12 * 3600
REFRESH_SECONDS = 60
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_TOKEN_CHARACTERS = 512
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower case, without a default port; None
    for anything that is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def cross_site_refusal(origin: str | None, fetch_site: str | None,
                       own_origins: set[str]) -> str | None:
    """Why a browser's state-changing request must be refused as sent by another site,
    or None to accept it (pure).

    ``origin`` is its ``Origin`` header (None when absent: a client that is no browser),
    ``fetch_site`` its ``Sec-Fetch-Site`` (set by the browser, never by a page),
    ``own_origins`` this server's origins (:func:`origin_of`). ``Origin: null`` is
    accepted only with ``Sec-Fetch-Site: same-origin``: under the pages'
    ``Referrer-Policy: no-referrer`` browsers send ``null`` for the login form's own
    POST (a browser too old to send Sec-Fetch-Site cannot log in, then).
    """
    site = fetch_site.strip().lower() if fetch_site is not None else None
    if site == "cross-site":
        return "refused: another site sent this request (Sec-Fetch-Site: cross-site)"
    if origin is None or (origin.strip() == "null" and site == "same-origin"):
        return None
    if origin_of(origin) not in own_origins:
        return (f"refused: the request comes from another origin ({origin[:100]!r}); log "
                "in from this server's own page")
    return None


def _refuse_cross_site(request: Request, context: Context) -> None:
    """Raise :class:`NotAllowed` (403) for a request another site sent."""
    own = {origin for origin in (origin_of(str(request.base_url)),
                                 origin_of(context.config.public_url)) if origin}
    reason = cross_site_refusal(request.headers.get("origin"),
                                request.headers.get("sec-fetch-site"), own)
    if reason is not None:
        log.warning("dashboard: %s %s %s", request.method, request.url.path, reason)
        raise NotAllowed(reason)


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
                   cursor: Cursor = None) -> Response:
    """The dashboard for the logged-in token (``cursor``: the systems table's page,
    from its "next" link); 303 to ``/login`` without one."""
    principal = _session_principal(request, context)
    if principal is None:
        response = _redirect("/login")
        if SESSION_COOKIE in request.cookies:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    board = paged(lambda: dashboard(context.catalog, principal, cursor=cursor,
                                    now=context.now(), cache=read_cache(request)))
    return _html("dashboard.html.j2", board=board, refresh_seconds=REFRESH_SECONDS,
                 first_page_link=cursor is not None)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> Response:
    """The login form: one token field."""
    return _html("login.html.j2", problem=None)


@router.post("/login", response_class=HTMLResponse)
async def log_in(request: Request, context: Context) -> Response:
    """Check the form's ``token``; on success set the session cookie and go to ``/``
    (303), else show the form again with the reason (401; 403 for an agent's token).
    Another site's request is refused (403, :func:`cross_site_refusal`)."""
    _refuse_cross_site(request, context)
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
                        secure=_secure(request, context), httponly=True,
                        samesite="strict")
    return response


@router.post("/logout")
def log_out(request: Request, context: Context) -> Response:
    """Forget the session cookie and go to ``/login`` (303); another site's request is
    refused (403)."""
    _refuse_cross_site(request, context)
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request, context),
                           httponly=True, samesite="strict")
    return response


def _secure(request: Request, context: Context) -> bool:
    """Whether the cookie is for https only: the request came over https, or the
    centre is published at an https URL (a TLS-terminating proxy before it)."""
    return (request.url.scheme == "https"
            or context.config.public_url.lower().startswith("https://"))


def _form_token(body: bytes) -> str:
    """The ``token`` field of an ``application/x-www-form-urlencoded`` body ("" when
    there is none, or the body is not such a form)."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return ""
    return (fields.get("token") or [""])[0].strip()

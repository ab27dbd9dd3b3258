"""How the API answers what it will not do: always ``{"detail": "one line"}``.

- a service's refusal (:mod:`drd.services.refusals`) -> 400, 401, 403, 404, 409, 413 or
  429;
- a body that does not fit its model, or is not JSON -> 422, naming the fields;
- a :class:`~drd.errors.UserError` -> 400; an :class:`~drd.errors.OperationError` (the
  catalog unreachable, a secret that does not decrypt) -> 503, the reason logged;
- anything else is a bug: 500 with a generic detail, the traceback in the log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from drd.api.asgi import TrackedSend
from drd.errors import OperationError, UserError
from drd.secrets import mask
from drd.services.refusals import (
    BadRequest,
    Conflict,
    NotAllowed,
    NotAuthenticated,
    NotFound,
    Refused,
    TooBusy,
    TooLarge,
)

log = logging.getLogger(__name__)

STATUS = {
    BadRequest: 400,
    NotAuthenticated: 401,
    NotAllowed: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TooBusy: 429,
}
MAX_LISTED_PROBLEMS = 5
RETRY_AFTER_SECONDS = 60
"""What a 429 asks the client to wait before it tries again."""


def status_of(refusal: Refused) -> int:
    """The HTTP status of a refusal (its nearest listed class; 400 if none)."""
    for kind in type(refusal).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response with ``{"detail": message}``."""
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def describe_validation(problems: list[dict]) -> str:
    """One line naming what is wrong with a body: ``body.files: Input should be ...``."""
    parts = []
    for problem in problems[:MAX_LISTED_PROBLEMS]:
        location = ".".join(str(part) for part in problem.get("loc", ()))
        if problem.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
            continue
        parts.append(f"{location}: {problem.get('msg', 'invalid')}")
    more = len(problems) - MAX_LISTED_PROBLEMS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) or "the request does not fit the protocol"


def refusal(error: Refused) -> JSONResponse:
    """The answer to a service's refusal: its status, its message, and
    ``WWW-Authenticate: Bearer`` with a 401 (``Retry-After`` with a 429)."""
    status = status_of(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return detail(status, str(error), headers)


def unavailable(request: Request, error: OperationError) -> JSONResponse:
    """The 503 for an operation that cannot be done now; the reason is logged too."""
    message = mask(str(error))
    log.warning("%s %s: %s", request.method, request.url.path, message)
    return detail(503, f"the centre cannot serve this now: {message}")


async def _refused(request: Request, error: Refused) -> JSONResponse:
    return refusal(error)


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    return detail(422, describe_validation(list(error.errors())))


async def _user_error(request: Request, error: UserError) -> JSONResponse:
    return detail(400, mask(str(error)))


async def _operation_error(request: Request, error: OperationError) -> JSONResponse:
    return unavailable(request, error)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers a body it cannot decode (not UTF-8, nested too deeply) with this
    # 400; the protocol says 422 with a reason, like any other body that does not fit
    if error.status_code == 400 and error.detail == _UNPARSEABLE_BODY:
        return detail(422, "the body is not valid JSON (UTF-8 text, not nested too deeply)")
    return detail(error.status_code, str(error.detail), getattr(error, "headers", None))


_UNPARSEABLE_BODY = "There was an error parsing the body"


async def _bug(request: Request, error: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path,
              exc_info=(type(error), error, error.__traceback__))
    return detail(500, "internal error in the centre: see its log")


class CatchBugs:
    """ASGI middleware answering a bug with one logged traceback and a 500, keeping the
    connection usable (a handler registered for ``Exception`` runs in Starlette's
    outermost middleware, which logs the error a second time and drops the connection).
    A pure ASGI middleware, so that the request body reaches the app unwrapped."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as error:  # noqa: BLE001 -- the edge: anything else is a bug
            if tracked.started:
                raise
            response = await _bug(Request(scope), error)
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(OperationError, _operation_error)
    app.add_middleware(CatchBugs)

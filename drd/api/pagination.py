"""What the read API's routes share: ``limit``, ``cursor`` and ``department`` parameters,
the error responses every read route documents, and the app's :func:`read_cache`.

``?limit=`` (1-500, default 100) items per page; ``?cursor=`` the ``next`` of the
previous page (:mod:`drd.services.paging`); ``?department=`` (repeatable) keeps the
systems of those departments. A bad value is a 422 with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from drd.names import NAME_PATTERN, NAME_RULE, is_valid_name
from drd.services.paging import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT, InvalidCursor
from drd.services.views import SummaryCache

MAX_DEPARTMENTS = 50

Result = TypeVar("Result")


class ErrorDetail(BaseModel):
    """Every refusal: one line saying what is wrong and what to do."""

    detail: str


def _error(description: str) -> dict:
    return {"description": description, "model": ErrorDetail}


AUTH = {401: _error("no token, or one the centre does not accept (unknown, revoked, "
                    "expired)")}
INVALID = {422: _error("a parameter that does not fit (the reason names it)")}
READ = AUTH | INVALID
SYSTEM = READ | {
    403: _error("the token may not see this system (for owners and agents: also when no "
                "system has this name)"),
    404: _error("no system has this name (for callers that read everything)"),
}
EVERYTHING = READ | {403: _error("only for admins and operators")}

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT,
                             description=f"items per page (1-{MAX_LIMIT})")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                     description="the 'next' of the previous page")]
SystemName = Annotated[str, Path(pattern=NAME_PATTERN, description="the system's name")]


def invalid(location: str, message: str) -> RequestValidationError:
    """A 422 naming ``location`` (``query.cursor``) and what is wrong with it."""
    return RequestValidationError([{"loc": tuple(location.split(".")), "msg": message,
                                    "type": "value_error"}])


def departments(
    department: Annotated[list[str] | None, Query(
        max_length=MAX_DEPARTMENTS,
        description="keep the systems of this department (repeatable: any of them)")] = None,
) -> tuple[str, ...]:
    """FastAPI dependency: the ``?department=`` filter, each a valid name."""
    names = tuple(department or ())
    for name in names:
        if not is_valid_name(name):
            raise invalid("query.department", f"{name[:70]!r} is not a department name: "
                                              f"{NAME_RULE}")
    return names


Departments = Annotated[tuple[str, ...], Depends(departments)]


def read_cache(request: Request) -> SummaryCache:
    """The app's cache of sums over every system (status counts, store coverage): one
    per app, so that one catalog's sums are never served for another."""
    cache = getattr(request.app.state, "drd_read_cache", None)
    if cache is None:
        cache = request.app.state.drd_read_cache = SummaryCache()
    return cache


def paged(read: Callable[[], Result]) -> Result:
    """``read()``, with a cursor this list did not hand out turned into a 422."""
    try:
        return read()
    except InvalidCursor as problem:
        raise invalid("query.cursor", str(problem).removeprefix("cursor: ")) from None


__all__ = ["DEFAULT_LIMIT", "Cursor", "Departments", "Limit", "SystemName", "paged"]

"""Large request bodies are read only for callers the route accepts, and only while
there is room: the centre answers strangers cheaply.

A request whose body is larger than :data:`~drd.api.limits.SMALL_BODY_LIMIT` (8 KiB)
is authenticated before its body is read, with the bearer-token check its route takes
(:func:`drd.api.auth.bearer_check_for`: an agent's token for ``/v1/agent/...``, a
person's for the rest of ``/v1``), so that authentication is written once:

- a declared ``Content-Length`` over the limit: the check runs before any byte of the
  body is read (with ``Expect: 100-continue`` a refused client never sends it);
- a body of unknown size (``Transfer-Encoding: chunked``): the first messages are read
  ahead until the body ends within the limit (then the request goes on as a small one)
  or passes it (then the check runs before anything more is read). One message holds at
  most what uvicorn buffered for the connection (about 64 KiB: it stops reading the
  socket beyond that until the app asks for more), so no more than that is read;
- a path whose routes take no token (enrollment, whose token is in the body; the
  dashboard's login) takes no body over the limit: 413.

A refusal (401 or 403 with the check's reason; 503 when the catalog cannot say) is sent
at once with ``Connection: close``, and uvicorn closes the connection without reading
the rest of the body. HTTP/1.1 leaves a server that will not read a body two choices:
read and discard it to keep the connection, or close it. Without ``Connection: close``
uvicorn reads and discards the whole body (it did, for 200 MB), which is the work a
stranger should not get for free. Clients see the answer: httpx and curl report the
401, not a broken connection, whether they declared the length or sent chunks.

An admitted large body then claims its size (its route's limit when chunked; never
more than that limit, over which :class:`~drd.api.limits.BodySizeLimit` answers 413) in
a :class:`~drd.api.limits.BodyBudget` for as long as its request runs; when the budget
is full the request gets 429 with ``Retry-After``, again without its body being read.
Bodies within the small limit pass untouched: their routes authenticate as always.
"""

from __future__ import annotations

from fastapi import Request

from drd.api import errors
from drd.api.auth import authenticate_headers, bearer_check_for
from drd.api.context import ApiContext
from drd.api.limits import (
    LARGE_BODY_BUDGET,
    SMALL_BODY_LIMIT,
    BodyBudget,
    content_length,
    has_body_of_unknown_size,
    limit_for,
)
from drd.errors import OperationError
from drd.services.refusals import Refused, TooBusy, TooLarge


class LargeBodyGate:
    """ASGI middleware: see the module's docstring. ``budget`` defaults to
    :data:`LARGE_BODY_BUDGET` bytes."""

    def __init__(self, app, *, context: ApiContext, budget: BodyBudget | None = None) -> None:
        self.app = app
        self.context = context
        self.budget = budget or BodyBudget(LARGE_BODY_BUDGET)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        read_ahead: list[dict] = []
        if declared is None and has_body_of_unknown_size(scope):
            read_ahead, size = await _read_ahead(receive)
            if size <= SMALL_BODY_LIMIT:
                await self.app(scope, _replay(read_ahead, receive), send)
                return
        elif declared is None or declared <= SMALL_BODY_LIMIT:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            claim = await self._admit(request, declared)
        except Refused as refused:
            await _answer_and_close(errors.refusal(refused), scope, receive, send)
            return
        except OperationError as error:
            await _answer_and_close(errors.unavailable(request, error), scope, receive, send)
            return
        try:
            await self.app(scope, _replay(read_ahead, receive), send)
        finally:
            self.budget.release(claim)

    async def _admit(self, request: Request, declared: int | None) -> int:
        """Authenticate ``request`` as its route would, then claim room for its body;
        return the bytes claimed. Raises the route's refusal, :class:`TooLarge` for a
        route that takes no token, :class:`TooBusy` when the budget is full."""
        check = bearer_check_for(request.scope["path"])
        if check is None:
            raise TooLarge(f"the request body is larger than {SMALL_BODY_LIMIT} bytes, "
                           "the most this path takes without a bearer token")
        await authenticate_headers(check, request, self.context)
        limit = limit_for(request.scope["method"], request.scope["path"])
        claim = limit if declared is None else min(declared, limit)
        if not self.budget.claim(claim):
            raise TooBusy(f"the centre is reading as many large request bodies as it allows "
                          f"({self.budget.total >> 20} MiB at once): send this one again "
                          "later")
        return claim


async def _read_ahead(receive) -> tuple[list[dict], int]:
    """Receive messages until the body ends or passes :data:`SMALL_BODY_LIMIT`; return
    them and the body bytes they hold."""
    messages: list[dict] = []
    size = 0
    while size <= SMALL_BODY_LIMIT:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, size


def _replay(messages: list[dict], receive):
    """A ``receive`` that gives ``messages`` first, then what ``receive`` gives."""
    if not messages:
        return receive
    pending = list(messages)

    async def replay() -> dict:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _answer_and_close(response, scope, receive, send) -> None:
    response.headers["Connection"] = "close"
    await response(scope, receive, send)

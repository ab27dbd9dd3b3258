"""Limits on request bodies, so that no client can make the centre buffer without end.

Every body is limited to :data:`DEFAULT_LIMIT`; a snapshot report, which may list
every object a store missed, to :data:`REPORT_LIMIT`; a manifest upload, which lists
every file of a snapshot, to :data:`MANIFEST_LIMIT`. A ``Content-Length`` above the limit is
refused with 413 before anything is read; a chunked body is counted as it arrives and
refused as soon as it passes the limit.

A body over :data:`SMALL_BODY_LIMIT` is read only for a caller whose token its route
accepts, and only while the bodies being read fit in :data:`LARGE_BODY_BUDGET`
(:mod:`drd.api.large_bodies`, which runs before :class:`BodySizeLimit`).
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

from drd.api.asgi import TrackedSend

DEFAULT_LIMIT = 1 << 20  # 1 MiB
REPORT_LIMIT = 64 << 20  # 64 MiB: some 500,000 missing object names
MANIFEST_LIMIT = 256 << 20  # 256 MiB: about a million files at ~200 bytes each
SMALL_BODY_LIMIT = 8 << 10
"""The most of a body the centre reads before it has checked the sender's token: enough
for an enrollment (about 2 KiB) or a login form."""
LARGE_BODY_BUDGET = 2 * MANIFEST_LIMIT
"""How many bytes of bodies over :data:`SMALL_BODY_LIMIT` may be read and handled at
once, counted at their ``Content-Length`` (at their route's limit when chunked): two of
the largest manifests, or many smaller bodies; one that does not fit gets 429 and is
sent again later. A JSON body takes up to about 6.5 times its size in memory while its
handler runs (measured with a 254 MiB manifest: +1,610 MiB at peak on SQLite, +1,300 MiB
on PostgreSQL; see the manifest route), so large bodies take at most about 3.3 GiB
together."""
_MANIFEST_PATH = re.compile(r"^/v1/agent/snapshots/[^/]+/manifest$")


def limit_for(method: str, path: str) -> int:
    """The largest body, in bytes, accepted for ``method`` on ``path``."""
    if method == "PUT" and _MANIFEST_PATH.match(path):
        return MANIFEST_LIMIT
    if method == "POST" and path == "/v1/agent/snapshots":
        return REPORT_LIMIT
    return DEFAULT_LIMIT


def too_large_detail(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


class BodySizeLimit:
    """ASGI middleware enforcing :func:`limit_for` on every HTTP request."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["method"], scope["path"])
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes an HTTPException raised while reading the body on
                    # to its exception handling; any other one would become a 400
                    raise HTTPException(413, too_large_detail(limit))
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except HTTPException as error:
            if error.status_code != 413 or tracked.started:
                raise
            await _too_large(send, limit)


def content_length(scope) -> int | None:
    """The request's declared body size; None when it has no valid ``Content-Length``
    or is sent in chunks (``Transfer-Encoding``, which overrides any length)."""
    length = None
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    return length


def has_body_of_unknown_size(scope) -> bool:
    """True for a request whose body comes in chunks (``Transfer-Encoding``): its size is
    known once it has been read."""
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))


class BodyBudget:
    """How many bytes of large bodies may be in flight at once.

    :meth:`claim` takes ``size`` bytes if they fit and says whether it did; every
    successful claim is given back with :meth:`release` once its request is done. Used
    from the event loop alone (ASGI middlewares), so no lock is needed.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0

    def claim(self, size: int) -> bool:
        if self.in_use + size > self.total:
            return False
        self.in_use += size
        return True

    def release(self, size: int) -> None:
        self.in_use -= size


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": too_large_detail(limit)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

"""A limit on request bodies, so that no client can make the centre buffer without end.

Every body is limited to :data:`DEFAULT_LIMIT`; a snapshot report, which may list
every object a store missed, to :data:`REPORT_LIMIT`; a manifest upload, which lists
every file of a snapshot, to :data:`MANIFEST_LIMIT`. A ``Content-Length`` above the limit is
refused with 413 before anything is read; a chunked body is counted as it arrives and
refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

from drd.api.asgi import TrackedSend

DEFAULT_LIMIT = 1 << 20  # 1 MiB
REPORT_LIMIT = 64 << 20  # 64 MiB: some 500,000 missing object names
MANIFEST_LIMIT = 256 << 20  # 256 MiB: about a million files at ~200 bytes each
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
        declared = _content_length(scope)
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


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": too_large_detail(limit)}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

"""Small pieces shared by the API's pure ASGI middlewares."""

from __future__ import annotations


class TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started.

    A middleware may answer an error itself only while ``started`` is False; once the
    app has sent the response's start, the error must propagate instead.
    """

    def __init__(self, send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

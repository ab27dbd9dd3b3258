"""The HTTP side of the fan-out endpoint: restic's REST protocol on 127.0.0.1.

A :class:`FanoutHTTPServer` serves each keep-alive connection (HTTP/1.1) on a thread of
its own, at most ``max_connections`` at once (restic keeps 5 by default); further
connections wait in the listen backlog. Every request must carry the run's credential
(HTTP Basic, user ``drd``) or gets 401. Uploads are read whole into memory (within the
writer's byte budget) and checked against their content-addressed name before any store
sees them, so a corrupt upload is never stored, let alone locked under Object Lock.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agents.fanout.durability import Decision
from agents.fanout.protocol import (
    InvalidName,
    RangeNotSatisfiable,
    RequestTarget,
    UnknownPath,
    accepts_v2,
    content_matches_name,
    credentials_match,
    listing_body,
    may_delete,
    parse_target,
    sha256_hex,
)
from agents.fanout.reader import FanoutReader
from agents.fanout.writer import FanoutWriter, WriterClosed
from drd.stores.errors import ObjectNotFound, StoreError

logger = logging.getLogger(__name__)

USER = "drd"
HOST = "127.0.0.1"
# restic's packs are 16 MiB by default and 128 MiB at most (--pack-size).
MAX_OBJECT_BYTES = 512 * 1024 * 1024
_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"


class FanoutHTTPServer(ThreadingHTTPServer):
    """The endpoint's HTTP server, bound to 127.0.0.1 on a free port.

    Args:
        password: the run's credential (user :data:`USER`).
        reader, writer: where reads and writes go.
        max_connections: connections served at once.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False
    request_queue_size = 64

    def __init__(
        self,
        *,
        password: str,
        reader: FanoutReader,
        writer: FanoutWriter,
        max_connections: int,
    ) -> None:
        super().__init__((HOST, 0), RestRequestHandler)
        self.password = password
        self.reader = reader
        self.writer = writer
        self._slots = threading.BoundedSemaphore(max_connections)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request, client_address) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self._stopping.is_set():
                self.shutdown_request(request)
                return
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            held = request in self._connections
            self._connections.discard(request)
        if held:
            self._slots.release()
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Stop accepting and cut every open connection (their threads then end)."""
        self._stopping.set()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            # restic went away mid-request (stopped, or killed): nothing to answer.
            logger.debug("fan-out: connection from %s lost: %s", client_address, error)
        else:
            logger.exception("fan-out: a request from %s failed", client_address)


class RestRequestHandler(BaseHTTPRequestHandler):
    """One connection: restic's REST requests, answered one after the other."""

    protocol_version = "HTTP/1.1"
    server_version = "drd-fanout"
    sys_version = ""
    # Headers and body go out in separate writes; without TCP_NODELAY the second waits
    # for a delayed ACK (40 ms per small answer on a keep-alive connection).
    disable_nagle_algorithm = True
    server: FanoutHTTPServer

    # --- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args) -> None:
        logger.debug("fan-out: %s " + format, self.address_string(), *args)

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = _TEXT,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        """Send ``status`` with ``body`` (not for HEAD), always with a Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._reply(status, (message + "\n").encode(), headers=headers)

    def _handle(self, method) -> None:
        self._body_read = False
        try:
            if not credentials_match(self.headers.get("Authorization"), USER, self.server.password):
                self._error(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="drd"'})
                return
            try:
                target = parse_target(self.path)
            except UnknownPath as error:
                self._error(404, str(error))
                return
            except InvalidName as error:
                self._error(400, str(error))
                return
            method(target)
        finally:
            if not self._body_read and self._declared_length() not in (None, 0):
                # An unread body would be taken for the next request.
                self.close_connection = True

    def _declared_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None or not value.strip().isdigit():
            return None
        return int(value)

    def do_HEAD(self) -> None:
        self._handle(self._head)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def do_DELETE(self) -> None:
        self._handle(self._delete)

    def do_PUT(self) -> None:
        self._handle(lambda target: self._error(405, "restic saves with POST"))

    # --- reads ------------------------------------------------------------------------------

    def _head(self, target: RequestTarget) -> None:
        if target.kind not in ("config", "object"):
            self._error(405, "HEAD applies to objects only")
            return
        try:
            size = self.server.reader.size(target.key)
        except ObjectNotFound:
            self._error(404, f"{target.key} not found")
            return
        except StoreError as error:
            self._error(500, f"no store could tell: {error}")
            return
        self._reply(200, content_type=_BINARY, length=size)

    def _get(self, target: RequestTarget) -> None:
        if target.kind == "listing":
            self._list(target)
        elif target.kind in ("config", "object"):
            self._send_object(target)
        else:
            self._error(405, "GET applies to objects and listings only")

    def _list(self, target: RequestTarget) -> None:
        try:
            entries = self.server.reader.listing(target.object_type)
        except StoreError as error:
            self._error(500, f"no store could list {target.object_type}/: {error}")
            return
        body, content_type = listing_body(entries, v2=accepts_v2(self.headers.get("Accept")))
        self._reply(200, body, content_type=content_type)

    def _send_object(self, target: RequestTarget) -> None:
        key = target.key
        try:
            opened = self.server.reader.open(key, self.headers.get("Range"))
        except ObjectNotFound:
            self._error(404, f"{key} not found")
            return
        except RangeNotSatisfiable as error:
            self._error(416, str(error), {"Content-Range": f"bytes */{error.size}"})
            return
        except StoreError as error:
            self._error(500, f"no store could read {key}: {error}")
            return
        wanted = opened.range
        headers = {"Accept-Ranges": "bytes"}
        if wanted.partial:
            headers["Content-Range"] = wanted.content_range(opened.size)
        self._reply(
            206 if wanted.partial else 200, content_type=_BINARY, headers=headers,
            length=wanted.length,
        )
        sent = 0
        try:
            for chunk in opened.chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        except StoreError as error:
            logger.warning("fan-out: reading %s broke off after %d bytes: %s", key, sent, error)
        finally:
            close = getattr(opened.chunks, "close", None)
            if close is not None:
                close()
        if sent != wanted.length:
            # The client must not take a short body for the object: end the connection.
            self.close_connection = True

    # --- writes -----------------------------------------------------------------------------

    def _post(self, target: RequestTarget) -> None:
        if target.kind == "repository":
            self._create(target)
        elif target.kind in ("config", "object"):
            self._save(target)
        else:
            self._error(405, "POST applies to the repository and objects only")

    def _create(self, target: RequestTarget) -> None:
        if not target.create:
            self._error(400, "POST / needs ?create=true")
            return
        # The stores' buckets exist already (drd store add creates them); the repository
        # itself is made of the config and key restic writes next.
        length = self._declared_length() or 0
        if length:
            self.rfile.read(length)
        self._body_read = True
        self._reply(200)

    def _save(self, target: RequestTarget) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._error(411, "uploads need a Content-Length")
            return
        length = self._declared_length()
        if length is None:
            self._error(411, "uploads need a Content-Length")
            return
        if length > MAX_OBJECT_BYTES:
            self._error(413, f"objects of more than {MAX_OBJECT_BYTES} bytes are refused")
            return
        writer = self.server.writer
        reservation = writer.reserve(length)
        try:
            body = self.rfile.read(length)
            self._body_read = True
            if len(body) != length:
                # The client went away mid-upload: there is nobody left to answer.
                self.close_connection = True
                reservation.release()
                return
            if not content_matches_name(target, sha256_hex(body) if target.name else ""):
                reservation.release()
                logger.warning("fan-out: refused %s: its content does not match its name",
                               target.key)
                self._error(400, f"the content of {target.key} does not match its name")
                return
            decision = writer.write(target.key, body, reservation)
        except WriterClosed as error:
            reservation.release()
            self._error(503, str(error))
            return
        except BaseException:
            reservation.release()
            raise
        if decision is Decision.DURABLE:
            self._reply(200)
        else:
            self._error(
                500,
                f"fewer than {writer.min_copies} stores could store {target.key}; "
                "see the agent's log",
            )

    def _delete(self, target: RequestTarget) -> None:
        if not may_delete(target):
            logger.warning("fan-out: refused to delete %s: only locks/ may be deleted", self.path)
            self._error(403, "only lock files may be deleted through this endpoint")
            return
        try:
            deleted = self.server.writer.delete(target.key)
        except WriterClosed as error:
            self._error(503, str(error))
            return
        if deleted:
            self._reply(200)
        else:
            self._error(500, f"no store could delete {target.key}")

"""The fan-out endpoint: one restic run writing to every store of a policy at once.

::

    endpoint = FanoutEndpoint(stores, min_copies=2, object_lock_days=7)
    with endpoint:
        restic.backup(Repository(url=endpoint.restic_url, password=...), paths)
    report = endpoint.report()

restic talks to 127.0.0.1 on a random free port with a random per-run credential
(:attr:`FanoutEndpoint.restic_url`, a :class:`~drd.secrets.Secret` meant for
``RESTIC_REPOSITORY``). Each object restic saves is checked against its name, then put
to every store in parallel; restic's POST is answered 200 once ``min_copies`` stores
hold it, 500 when that can no longer happen. Writes to the other stores finish in the
background and are awaited when the ``with`` block ends and by :meth:`report`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence

from agents.fanout.budget import ByteBudget
from agents.fanout.ledger import Ledger
from agents.fanout.reader import FanoutReader
from agents.fanout.report import FanoutReport, build_report
from agents.fanout.server import HOST, USER, FanoutHTTPServer
from agents.fanout.writer import FanoutWriter
from drd.secrets import Secret
from drd.stores.base import Store
from drd.stores.retry import RetryingStore

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 8
# restic uploads at most 5 packs at once (16 MiB each by default); the rest of the budget
# lets the slower stores trail behind without stalling restic.
DEFAULT_BUFFER_BYTES = 256 * MIB


class FanoutEndpoint:
    """restic's REST protocol on 127.0.0.1, writing every object to all ``stores``.

    Args:
        stores: the policy's stores, each rooted at the system's repository (keys such as
            ``config`` and ``data/ab/abcd...`` relative to it), in the policy's order
            (reads prefer the first). A :class:`RetryingStore` is unwrapped once for
            writes, which the endpoint retries itself, store health permitting.
        min_copies: stores that must acknowledge an object before restic is told it is
            saved (1..len(stores)).
        object_lock_days: Object Lock retention of new objects (except ``locks/``) on
            stores that support it; 0 for none.
        max_connections: restic connections served at once (restic keeps 5 by default);
            also the concurrent writes per store.
        max_buffer_bytes: bytes of upload bodies held in memory at once; an upload waits
            while they are spent.
        attempts, backoff: tries per store operation and seconds before the first retry
            (doubled each time). A store failing an object that often is given up on for
            the rest of the run.

    Raises:
        ValueError: no stores, two stores of one name, ``min_copies`` out of range, a
            negative ``object_lock_days``, or limits below 1.
    """

    def __init__(
        self,
        stores: Sequence[Store],
        *,
        min_copies: int,
        object_lock_days: int = 0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        names = [store.name for store in stores]
        if not names:
            raise ValueError("a fan-out endpoint needs at least one store")
        if len(set(names)) != len(names):
            raise ValueError(f"store names must be unique, got {names}")
        if not 1 <= min_copies <= len(names):
            raise ValueError(f"min_copies must be between 1 and {len(names)}, not {min_copies}")
        if object_lock_days < 0:
            raise ValueError(f"object_lock_days must be >= 0, not {object_lock_days}")
        if max_connections < 1 or attempts < 1:
            raise ValueError("max_connections and attempts must be at least 1")
        self.stores = tuple(stores)
        self.min_copies = min_copies
        self.object_lock_days = object_lock_days
        self.max_connections = max_connections
        self.budget = ByteBudget(max_buffer_bytes)
        self.attempts = attempts
        self.backoff = backoff
        self._ledger = Ledger(names)
        self._writer: FanoutWriter | None = None
        self._server: FanoutHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._password: str | None = None
        self._used = False

    # --- the run ---------------------------------------------------------------------------

    def __enter__(self) -> FanoutEndpoint:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve until :meth:`stop`.

        Raises:
            RuntimeError: the endpoint was started before (one run per endpoint).
            OSError: no port could be bound.
        """
        if self._used:
            raise RuntimeError("a FanoutEndpoint serves one run; make a new one")
        self._used = True
        write_stores = [_unwrapped(store) for store in self.stores]
        read_stores = [
            RetryingStore(store, attempts=self.attempts, backoff=self.backoff)
            for store in write_stores
        ]
        self._writer = FanoutWriter(
            write_stores,
            self._ledger,
            min_copies=self.min_copies,
            object_lock_days=self.object_lock_days,
            attempts=self.attempts,
            backoff=self.backoff,
            workers=self.max_connections,
            budget=self.budget,
        )
        reader = FanoutReader(read_stores, self._ledger, self._writer.give_up)
        self._password = secrets.token_urlsafe(32)
        try:
            self._server = FanoutHTTPServer(
                password=self._password,
                reader=reader,
                writer=self._writer,
                max_connections=self.max_connections,
            )
        except BaseException:
            self._writer.close()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fanout-server",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "fan-out endpoint on %s:%d for stores %s (min_copies %d)",
            HOST, self._server.port, ", ".join(self._ledger.store_names), self.min_copies,
        )

    def stop(self) -> None:
        """Stop serving, cut remaining connections, and wait for every background write.
        Safe to call more than once."""
        server, self._server = self._server, None
        if server is not None:
            server.close_connections()
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._writer is not None:
            self._writer.close()

    @property
    def restic_url(self) -> Secret:
        """``rest:http://drd:<credential>@127.0.0.1:<port>/``, for ``RESTIC_REPOSITORY``.

        Raises:
            RuntimeError: the endpoint is not serving.
        """
        if self._server is None or self._password is None:
            raise RuntimeError("the fan-out endpoint is not running; use it as `with endpoint:`")
        return Secret(f"rest:http://{USER}:{self._password}@{HOST}:{self._server.port}/")

    @property
    def port(self) -> int:
        """The port served on. Raises RuntimeError when not serving."""
        if self._server is None:
            raise RuntimeError("the fan-out endpoint is not running")
        return self._server.port

    @property
    def can_be_durable(self) -> bool:
        """False once fewer than ``min_copies`` stores are healthy: every further upload
        will be refused, and restic only fails after its own retries (about 50 s in
        0.14), so a caller may stop restic at once."""
        return len(self._ledger.healthy_stores()) >= self.min_copies

    def report(self) -> FanoutReport:
        """What the run achieved so far, per store, once every background write is done.

        Inside the ``with`` block it waits for the writes accepted until then; after it,
        it is the run's final report.
        """
        if self._writer is not None:
            self._writer.drain()
        return build_report(
            self._ledger.store_names, self._ledger.snapshot(), min_copies=self.min_copies
        )

    def __repr__(self) -> str:
        names = ", ".join(self._ledger.store_names)
        return f"FanoutEndpoint([{names}], min_copies={self.min_copies})"


def _unwrapped(store: Store) -> Store:
    """``store`` without its outer :class:`RetryingStore`: the endpoint retries writes
    itself and must be able to stop retrying a store it has given up on."""
    return store.inner if isinstance(store, RetryingStore) else store

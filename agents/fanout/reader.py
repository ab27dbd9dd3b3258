"""Reads for restic through the fan-out endpoint: from the first healthy store that has
the object, falling back to the next one on an error.

An object written during the run is read from a store that acknowledged it (the ledger
knows which), since the others may still be writing it in the background. A store that
stays unreachable through its retries is given up on for the rest of the run, for writes
as well, as it is clearly down. Listings come from the first healthy store that answers,
together with the run's own acknowledged objects of that type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from agents.fanout.ledger import Ledger
from agents.fanout.protocol import (
    ByteRange,
    listing_prefix,
    name_of_key,
    parse_range,
)
from drd.stores.base import Store
from drd.stores.errors import ObjectNotFound, StoreError, StoreUnavailable

logger = logging.getLogger(__name__)


class NoStoreAnswered(StoreError):
    """No healthy store was left to ask (every store was given up on)."""


@dataclass
class OpenedObject:
    """A read in progress: the object's ``size``, the ``range`` being sent, its chunks."""

    size: int
    range: ByteRange
    chunks: Iterator[bytes]


class FanoutReader:
    """Reads objects and listings from ``stores`` (in the policy's order).

    ``stores`` should retry transient failures themselves (a
    :class:`~drd.stores.retry.RetryingStore`); a :class:`StoreUnavailable` that still
    comes through calls ``give_up(name, error)``, which stops all use of that store.
    """

    def __init__(
        self,
        stores: Sequence[Store],
        ledger: Ledger,
        give_up: Callable[[str, str], None],
    ) -> None:
        self.stores = {store.name: store for store in stores}
        self.ledger = ledger
        self._give_up = give_up

    def _candidates(self, key: str) -> list[Store]:
        healthy = self.ledger.healthy_stores()
        holders = self.ledger.holders(key) or ()
        ordered = [name for name in holders if name in healthy]
        ordered += [name for name in healthy if name not in ordered]
        return [self.stores[name] for name in ordered]

    def _failed(self, store: Store, error: StoreError) -> None:
        if isinstance(error, StoreUnavailable):
            self._give_up(store.name, str(error))
        else:
            logger.warning("fan-out: reading from store %r failed: %s", store.name, error)

    def _first_answer(self, key: str, read: Callable[[Store], object]):
        """``read(store)`` from each candidate in turn; the first answer wins.

        Raises:
            ObjectNotFound: every store that answered said it has no such object.
            StoreError: some store failed and none had the object (the last error).
            NoStoreAnswered: no healthy store is left.
        """
        failure: StoreError | None = None
        not_found: ObjectNotFound | None = None
        for store in self._candidates(key):
            try:
                return read(store)
            except ObjectNotFound as error:
                not_found = error
            except StoreError as error:
                self._failed(store, error)
                failure = error
        if failure is not None and not isinstance(failure, StoreUnavailable):
            raise failure
        if not_found is not None:
            raise not_found
        if failure is not None:
            raise failure
        raise NoStoreAnswered("fan-out", f"no healthy store left to read {key!r} from")

    def size(self, key: str) -> int:
        """The size of the object under ``key``. Raises as :meth:`_first_answer`."""
        known = self.ledger.size_of(key)
        if known is not None:
            return known
        return self._first_answer(key, lambda store: store.head(key).size)

    def open(self, key: str, range_header: str | None) -> OpenedObject:
        """Start reading the bytes of ``key`` that ``range_header`` asks for.

        Raises:
            RangeNotSatisfiable: the range lies past the end of the object.
            ObjectNotFound, StoreError, NoStoreAnswered: as :meth:`_first_answer`.
        """
        known = self.ledger.size_of(key)

        def read(store: Store) -> OpenedObject:
            size = known if known is not None else store.head(key).size
            wanted = parse_range(range_header, size)
            chunks = store.get(key, offset=wanted.start, length=wanted.length)
            return OpenedObject(size, wanted, chunks)

        return self._first_answer(key, read)

    def listing(self, object_type: str) -> list[tuple[str, int]]:
        """``(name, size)`` of every object of ``object_type``: the first healthy store's
        listing, plus the objects of that type acknowledged during the run.

        Raises:
            StoreError, NoStoreAnswered: no healthy store could list.
        """
        prefix = listing_prefix(object_type)
        entries: dict[str, int] = {}
        for key, size in self.ledger.written_under(prefix):
            name = name_of_key(object_type, key)
            if name is not None:
                entries[name] = size
        failure: StoreError | None = None
        for name in self.ledger.healthy_stores():
            store = self.stores[name]
            try:
                listed = {}
                for info in store.list(prefix):
                    object_name = name_of_key(object_type, info.key)
                    if object_name is not None:
                        listed[object_name] = info.size
            except StoreError as error:
                self._failed(store, error)
                failure = error
                continue
            listed.update(entries)
            return sorted(listed.items())
        if failure is not None:
            raise failure
        raise NoStoreAnswered("fan-out", f"no healthy store left to list {prefix!r}")

"""The stores' copies of recorded objects: reading them, learning ``config``'s record from
a locked copy, and the alerts (``tamper``, ``unverifiable``).

Replication and verification both call these (the engines above; the stores and the
catalog below). A store that cannot be read is reported, never raised: the other stores
are judged all the same, and nothing is learned from a store that did not answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.types import utcnow
from drd.recorded.catalog import backfill_records, record_object, records_of
from drd.recorded.judge import Judgement, Record, SeenCopy, judge_copies
from drd.recorded.keys import CONFIG
from drd.services import alerts
from drd.stores.base import Store
from drd.stores.errors import ObjectNotFound, StoreError

log = logging.getLogger("drd.recorded")

ACTOR = "centre"


class Holder(Protocol):
    """A store holding a system's repository, as
    :class:`~drd.services.repositories.RepositoryStore` is."""

    store_id: int
    name: str
    object_lock: bool
    store: Store


def digest_of(store: Store, key: str) -> tuple[str, int]:
    """SHA-256 (hex) and size of ``key``'s bytes in ``store``, streamed.

    Raises :class:`ObjectNotFound` and the store's other errors.
    """
    hasher = hashlib.sha256()
    size = 0
    for chunk in store.get(key):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def is_locked(store: Store, key: str, now: dt.datetime) -> bool:
    """True when the current version of ``key`` is under an Object Lock retention that
    has not ended. Raises as :meth:`Store.head`."""
    retain_until = store.head(key).retain_until
    return retain_until is not None and retain_until > now


def read_copy(holder: Holder, key: str, now: dt.datetime) -> SeenCopy:
    """One store's copy of ``key``: digest, size, and whether it is locked (asked only of
    stores with Object Lock). Raises :class:`StoreError` (not ObjectNotFound: a missing
    copy is a :class:`SeenCopy` without digest)."""
    try:
        locked = holder.object_lock and is_locked(holder.store, key, now)
        sha256, size = digest_of(holder.store, key)
    except ObjectNotFound:
        return SeenCopy(holder.name, None)
    return SeenCopy(holder.name, sha256, size, locked)


def survey(holders: Sequence[Holder], key: str, now: dt.datetime
           ) -> tuple[list[SeenCopy], dict[str, str]]:
    """Every store's copy of ``key``, in the given order; and the stores that could not
    be read, with why."""
    copies: list[SeenCopy] = []
    failed: dict[str, str] = {}
    for holder in holders:
        try:
            copies.append(read_copy(holder, key, now))
        except StoreError as error:
            failed[holder.name] = str(error)
    return copies, failed


def load_records(catalog: Catalog, system_id: int, now: dt.datetime) -> dict[str, Record]:
    """The system's records, after recording what the catalog can derive itself
    (:func:`~drd.recorded.catalog.backfill_records`)."""
    for attempt in (1, 2):
        try:
            with catalog.session() as session:
                if backfill_records(session, system_id, now):
                    log.info("system %d: recorded the digests of objects written before "
                             "drd recorded them", system_id)
            break
        except sa.exc.IntegrityError:
            # another process recorded the same keys at the same moment: its rows stand
            if attempt == 2:
                raise
    with catalog.session() as session:
        return records_of(session, system_id)


def learn_config(catalog: Catalog, system_id: int, system: str, holders: Sequence[Holder],
                 now: Callable[[], dt.datetime] = utcnow) -> Judgement:
    """Judge ``config`` of a system the catalog holds no record of: from its locked
    copies, never from a majority.

    When every locked copy present has the same bytes, that digest is recorded (audit
    ``object.record``) and the ``unverifiable`` alert resolved; otherwise the alert says
    that ``config`` cannot be checked (and so is neither healed nor copied). Returns the
    judgement (``expected`` None when nothing was learned). No copy at all: nothing to
    learn, no alert.
    """
    moment = now()
    copies, failed = survey(holders, CONFIG, moment)
    judgement = judge_copies(copies, None, learn_from_locked=True)
    if judgement.expected is None and not any(copy.sha256 for copy in copies):
        return judgement
    if judgement.expected is not None:
        record = judgement.expected
        try:
            with catalog.session() as session:
                if CONFIG not in records_of(session, system_id):
                    record_object(session, system_id, CONFIG, sha256=record.sha256,
                                  size=record.size, source=record.source, now=moment)
                    audit.record(session, ACTOR, "object.record", f"{system}/{CONFIG}",
                                 sha256=record.sha256, size=record.size,
                                 source=record.source)
                alerts.resolve_alert(session, "unverifiable", system_id=system_id,
                                     subject=CONFIG, now=moment)
        except sa.exc.IntegrityError:
            pass  # another process recorded it at the same moment: its record stands
        log.warning("%s: recorded the digest of config from the %s (the agent sent none "
                    "at enrollment)", system, record.source)
        return judgement
    with catalog.session() as session:
        unread = "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
        alerts.raise_alert(
            session, "unverifiable",
            f"{system}: config cannot be checked: {judgement.problem}"
            + (f" (not read: {unread})" if unread else "")
            + "; it is neither healed nor copied until its digest is known",
            system_id=system_id, subject=CONFIG, severity="warning",
            details={"system": system, "key": CONFIG, "problem": judgement.problem,
                     "unread": sorted(failed)}, now=moment)
    return judgement


def raise_tamper(session, *, system_id: int, system: str, store_id: int, store: str,
                 key: str, found: str | None, expected: Record | None, outcome: str,
                 now: dt.datetime | None = None) -> None:
    """Open (or repeat) the ``tamper`` alert of ``key`` on ``store``: its copy's bytes
    are not what they must be -- the catalog's record (``expected``), or, for an object
    named by its hash (``expected`` None), its name. ``outcome`` says what became of it.

    Nothing resolves it by itself: whoever changed the copy may still hold the keys that
    did, so it stays open, healed or not, until an operator resolves it (``drd alerts
    resolve``).
    """
    if expected is None:
        wrong = "does not hash to its name (its bytes changed after they were written)"
        details = {"name_sha256": key.rsplit("/", 1)[-1]}
    else:
        wrong = f"does not match the SHA-256 the catalog recorded ({expected.source})"
        details = {"recorded_sha256": expected.sha256, "recorded_from": expected.source}
    alerts.raise_alert(
        session, "tamper",
        f"{system}: {key} in store {store} {wrong}: someone who can write there changed "
        f"it, with {system}'s keys or the store's (or the medium failed); {outcome}",
        system_id=system_id, store_id=store_id, subject=key,
        details={"system": system, "store": store, "key": key, "found_sha256": found,
                 "outcome": outcome} | details, now=now)

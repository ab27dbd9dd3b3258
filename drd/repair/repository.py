"""Repairing one system's repository in one store: every tracked object hidden by a delete
marker, or whose current version is bad over a good older one, gets its newest good
version back as the current one.

:func:`repair_repository` is what ``drd repair`` runs per system (through
:mod:`drd.services.repair`), and what a restore and a drill run on the store they read
before restic opens it (restic reads only current versions). :func:`record_repair` is the
bookkeeping of one object brought back, which replication and verification share.

One pass:

1. list the repository's versions in the store (one ListObjectVersions listing; a store
   that keeps no versions has nothing to repair);
2. leave out what is not drd's to bring back: untracked keys (``locks/``, strays) and
   tombstoned keys (retention's prune removed them on purpose, leaving markers);
3. for each key whose history may cover a good version (:attr:`KeyHistory.needs_look`):
   judge its current version (skipped when the ledger verified it after it was written),
   then its older ones newest first (:func:`drd.repair.decide.choose_version`) against
   its name or the catalog's record (a recorded kind without a record is left alone:
   ``unchecked``);
4. bring the chosen version back (:func:`drd.repair.versions.bring_back`, with the
   policy's Object Lock retention), and record it (:func:`record_repair`): the ledger row
   ``present`` and verified, the audit entry ``object.repair``, a ``tamper`` alert
   naming the system (an unexplained delete or overwrite), an open ``damage`` alert of
   the key on that store resolved.

Crash and idempotence: each object is written, then recorded, one at a time; a second
pass finds each repaired key's current version good and does nothing. A kill between an
object's write and its record leaves it repaired without its audit entry (the store's
history still shows the marker or bad version beneath the copy). A dry run reads and
judges as a real one does and changes nothing: no write, no ledger, no audit, no alert.
Failures are per object (reported, the others go on); a store that cannot be listed
ends the pass with an error.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import StoreObject
from drd.catalog.types import utcnow
from drd.ledger import is_tracked, tombstoned_keys
from drd.recorded.copies import load_records
from drd.recorded.judge import Record
from drd.repair.decide import HIDDEN, Expected, KeyHistory, expected_for, histories
from drd.repair.versions import VersionMismatch, bring_back, find_good
from drd.services import alerts
from drd.stores.base import ObjectVersion, Store
from drd.stores.errors import StoreError

log = logging.getLogger("drd.repair")

ACTION = "object.repair"
TRUST_MARGIN = dt.timedelta(minutes=10)
"""A current version the ledger verified this long after it was written is not read
again (the margin covers a store's clock running behind the centre's)."""
_ORDER = {"data": 0, "index": 1, "keys": 2, "config": 3, "snapshots": 4}


class Holder(Protocol):
    """A store holding a system's repository, as
    :class:`~drd.services.repositories.RepositoryStore` is."""

    store_id: int
    name: str
    object_lock: bool
    store: Store


@dataclass(frozen=True)
class ObjectRepair:
    """One object found covered in one store, and what became of it.

    ``reason``: ``hidden`` (a delete marker) or ``overwritten``; ``version`` the version
    brought back (or that would be, in a dry run); ``source`` the store it came from;
    ``detail`` why nothing was brought back.
    """

    system: str
    store: str
    key: str
    reason: str
    version: str | None = None
    size: int | None = None
    source: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "store": self.store, "key": self.key,
                "reason": self.reason, "version": self.version, "size": self.size,
                "source": self.source, "detail": self.detail}


@dataclass
class RepositoryRepair:
    """The outcome of :func:`repair_repository` for one system in one store.

    ``keeps_versions`` False: the store keeps none, so there was nothing to look at.
    ``looked_at``: keys whose history was judged; ``repaired``: brought back (in a dry
    run: would be); ``unrepaired``: covered, with no good version here (or the write
    failed); ``unchecked``: recorded kinds without a record, left alone; ``errors``:
    what stopped the pass (the store could not be listed).
    """

    system: str
    store: str
    dry_run: bool = False
    keeps_versions: bool = True
    looked_at: int = 0
    repaired: list[ObjectRepair] = field(default_factory=list)
    unrepaired: list[ObjectRepair] = field(default_factory=list)
    unchecked: list[ObjectRepair] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not (self.unrepaired or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "store": self.store, "ok": self.ok,
                "dry_run": self.dry_run, "keeps_versions": self.keeps_versions,
                "looked_at": self.looked_at,
                "repaired": [item.as_dict() for item in self.repaired],
                "unrepaired": [item.as_dict() for item in self.unrepaired],
                "unchecked": [item.as_dict() for item in self.unchecked],
                "errors": list(self.errors), "stopped": self.stopped}


def retain_until_for(holder: Holder, lock_days: int, now: dt.datetime) -> dt.datetime | None:
    """The retention a copy written to ``holder`` gets: the policy's Object Lock days
    from now, on a store with Object Lock."""
    if lock_days > 0 and holder.object_lock:
        return now + dt.timedelta(days=lock_days)
    return None


def covered_keys(entries: list[ObjectVersion], skip: set[str]) -> list[KeyHistory]:
    """The histories among ``entries`` that may cover a good version, tracked keys only,
    none of ``skip``; in restic's order of writing (packs first, snapshots last), so that
    a pass cut short never brings back a snapshot before the data it needs."""
    found = [history for key, history in histories(entries).items()
             if history.needs_look and is_tracked(key) and key not in skip]
    return sorted(found, key=lambda h: (_ORDER.get(h.key.split("/", 1)[0], 5), h.key))


def repair_repository(catalog: Catalog, *, system_id: int, system: str, holder: Holder,
                      lock_days: int, actor: str, dry_run: bool = False,
                      records: dict[str, Record] | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      now: Callable[[], dt.datetime] = utcnow) -> RepositoryRepair:
    """Repair ``system``'s repository in ``holder`` as the module docstring says.

    ``progress(done, total)`` is called after each key looked at; ``should_stop()``
    asked between keys ends the pass early (``stopped``). ``records``: the system's
    records, when the caller read them already. Never raises for a store's failure: it
    is in the result.
    """
    result = RepositoryRepair(system, holder.name, dry_run=dry_run)
    store = holder.store
    try:
        if not store.keeps_versions:
            result.keeps_versions = False
            return result
        entries = list(store.list_versions())
    except StoreError as error:
        result.errors.append(f"cannot list the versions of the store: {error}")
        return result
    with catalog.session() as session:
        skip = tombstoned_keys(session, system_id)
        trusted = {key: verified_at for key, verified_at, size in session.execute(
            sa.select(StoreObject.key, StoreObject.verified_at, StoreObject.size).where(
                StoreObject.system_id == system_id, StoreObject.store_id == holder.store_id,
                StoreObject.state == "present", StoreObject.verified_at.is_not(None)))}
    covered = covered_keys(entries, skip)
    if covered and records is None:
        records = load_records(catalog, system_id, now())
    for done, history in enumerate(covered, start=1):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        _repair_key(catalog, result, system_id, system, holder, history,
                    expected_for(history.key, records or {}), trusted.get(history.key),
                    lock_days, actor, dry_run, now)
        result.looked_at += 1
        if progress is not None:
            progress(done, len(covered))
    return result


def _repair_key(catalog: Catalog, result: RepositoryRepair, system_id: int, system: str,
                holder: Holder, history: KeyHistory, expected: Expected | None,
                verified_at: dt.datetime | None, lock_days: int, actor: str,
                dry_run: bool, now: Callable[[], dt.datetime]) -> None:
    key = history.key
    reason = HIDDEN if history.hidden else "overwritten"
    if expected is None:
        result.unchecked.append(ObjectRepair(
            system, holder.name, key, reason,
            detail="the catalog holds no record of its digest: no version of it is taken "
                   "for the right one"))
        return
    current = history.current
    if current is not None and verified_at is not None \
            and verified_at > current.modified + TRUST_MARGIN:
        return  # verification read this very version, and found it good
    try:
        found = find_good(holder.store, holder.name, history, expected)
    except StoreError as error:
        result.unrepaired.append(ObjectRepair(system, holder.name, key, reason,
                                               detail=f"its versions could not be read: "
                                                      f"{error}"))
        return
    choice = found.choice
    if choice.action == "keep":
        return
    if choice.action == "none":
        result.unrepaired.append(ObjectRepair(
            system, holder.name, key, choice.reason,
            detail=f"no version of it in {holder.name} is good "
                   f"({len(choice.rejected)} judged); drd verify heals it from another "
                   "store where one holds a good copy"))
        return
    version = choice.version
    if dry_run:
        result.repaired.append(ObjectRepair(system, holder.name, key, choice.reason,
                                            version.version_id, version.size, holder.name))
        return
    moment = now()
    retain_until = retain_until_for(holder, lock_days, moment)
    try:
        size = bring_back(holder.store, holder.store, key, version, expected, retain_until)
    except (VersionMismatch, StoreError, ValueError, OSError) as error:
        result.unrepaired.append(ObjectRepair(
            system, holder.name, key, choice.reason, version.version_id, version.size,
            holder.name, detail=f"bringing version {version.version_id} back failed: "
                                f"{error}"))
        return
    record_repair(catalog, system_id=system_id, system=system, holder=holder, key=key,
                  reason=choice.reason, version=version.version_id, size=size,
                  source=holder.name, retain_until=retain_until, actor=actor,
                  expected=expected, now=moment)
    result.repaired.append(ObjectRepair(system, holder.name, key, choice.reason,
                                        version.version_id, size, holder.name))


def record_repair(catalog: Catalog, *, system_id: int, system: str, holder: Holder,
                  key: str, reason: str, version: str | None, size: int, source: str,
                  retain_until: dt.datetime | None, actor: str, expected: Expected,
                  action: str = ACTION, now: dt.datetime | None = None) -> None:
    """The bookkeeping of one object brought back in ``holder`` from ``version`` (in
    store ``source``), in one transaction: the ledger row ``present`` and verified, the
    audit entry ``action`` (``object.repair``), a ``tamper`` alert naming the system,
    and the key's ``damage`` alert on that store resolved."""
    moment = now or utcnow()
    with catalog.session() as session:
        row = session.scalar(sa.select(StoreObject).where(
            StoreObject.system_id == system_id, StoreObject.store_id == holder.store_id,
            StoreObject.key == key))
        if row is None:
            row = StoreObject(store_id=holder.store_id, system_id=system_id, key=key,
                              size=size, first_seen_at=moment)
            session.add(row)
        row.state, row.size, row.verified_at = "present", size, moment
        target = f"{holder.name}:{system}/{key}"
        audit.record(session, actor, action, target=target, reason=reason,
                     version=version, source=source, size=size,
                     retain_until=retain_until.isoformat() if retain_until else None)
        origin = "its own" if source == holder.name else f"{source}'s"
        raise_covered(session, system_id=system_id, system=system, store_id=holder.store_id,
                      store=holder.name, key=key, reason=reason, expected=expected,
                      outcome=f"brought back from {origin} version {version} "
                              f"(audit {action})", now=moment)
        alerts.resolve_alert(session, "damage", system_id=system_id,
                             store_id=holder.store_id, subject=key, now=moment)
    log.warning("%s: brought %s/%s back (%s) from %s version %s", holder.name, system, key,
                reason, source, version)


def raise_covered(session, *, system_id: int, system: str, store_id: int, store: str,
                  key: str, reason: str, expected: Expected, outcome: str,
                  now: dt.datetime | None = None) -> None:
    """Open (or repeat) the ``tamper`` alert of ``key`` in ``store``: it was deleted (a
    delete marker hides it) or overwritten with wrong bytes, neither of which drd does
    to a tracked object. Nothing resolves it by itself: whoever did it may still hold the
    keys that did (``drd alerts resolve`` once looked into)."""
    if reason == HIDDEN:
        what = ("was deleted: a delete marker hides it from restic; someone who can "
                "delete there did it (the store's own keys, or keys it shares with agents)")
    else:
        what = (f"was overwritten: its current version does not match {expected.against}; "
                f"someone who can write there changed it, with {system}'s keys or the "
                "store's (or the medium failed)")
    alerts.raise_alert(
        session, "tamper", f"{system}: {key} in store {store} {what}; {outcome}",
        system_id=system_id, store_id=store_id, subject=key,
        details={"system": system, "store": store, "key": key, "reason": reason,
                 "outcome": outcome, "expected_sha256": expected.sha256}, now=now)

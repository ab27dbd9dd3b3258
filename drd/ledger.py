"""The object ledger: what each store holds of each system's repository.

Restic names every object under ``data/``, ``index/``, ``snapshots/`` and ``keys/`` by
the SHA-256 of its bytes as stored (:func:`expected_sha256`), so a copy is proven
intact by reading it back and hashing it -- no password needed. ``config`` has a fixed
name, and so have drd's own objects beside the repository (the sealed password, the
sealed manifests and their signatures): each is checked against the digest the catalog
recorded when it was written (:mod:`drd.recorded.keys` names them), never against the
other copies. ``locks/`` are transient and
never tracked.

:func:`sync_listing` brings the catalog's rows (:class:`~drd.catalog.models.StoreObject`)
in line with a store's listing. Replication and verification both call it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog.models import StoreObject
from drd.recorded.keys import CONFIG, is_recorded_kind

HEX64 = re.compile(r"[0-9a-f]{64}")
CONTENT_ADDRESSED = ("data", "index", "snapshots", "keys")


def expected_sha256(key: str) -> str | None:
    """The SHA-256 (hex) ``key``'s name says its bytes must have; None for a key not
    named by its hash (``config``, drd's own objects: their digest is recorded, see
    :mod:`drd.recorded`).

    Raises ``ValueError`` for a key the ledger does not track.
    """
    if is_recorded_kind(key):
        return None
    parts = key.split("/")
    if parts[0] == "data" and len(parts) == 3 and HEX64.fullmatch(parts[2]) \
            and parts[1] == parts[2][:2]:
        return parts[2]
    if parts[0] in CONTENT_ADDRESSED[1:] and len(parts) == 2 and HEX64.fullmatch(parts[1]):
        return parts[1]
    raise ValueError(f"not an object drd tracks: {key!r}")


def is_tracked(key: str) -> bool:
    """True for the objects the ledger tracks: restic's (:func:`is_restic_object`) and
    drd's own beside them (the sealed password; the manifests, sealed
    ``drd/manifests/<id>.json.sealed`` or an older agent's plaintext ``.json``; and
    their ``.json.sig``)."""
    try:
        expected_sha256(key)
    except ValueError:
        return False
    return True


def is_restic_object(key: str) -> bool:
    """True for restic's own tracked objects: ``config`` and the content-addressed ones
    (what ``restic prune`` may change; drd's objects it never touches)."""
    return key == CONFIG or (is_tracked(key) and not is_recorded_kind(key))


@dataclass(frozen=True)
class ListingChange:
    """What :func:`sync_listing` changed: keys new to the ledger, keys that vanished."""

    added: list[str]
    vanished: list[str]


def sync_listing(session: Session, system_id: int, store_id: int,
                 listing: Iterable[tuple[str, int]], now: dt.datetime, *,
                 scope: Callable[[str], bool] = is_tracked) -> ListingChange:
    """Make the ledger of ``store_id`` for ``system_id`` match ``listing`` (key, size).

    Only keys within ``scope`` are synced (default: every tracked key); rows of other
    keys are left as they are, so a listing of restic's objects alone
    (:func:`is_restic_object`) does not mark drd's own objects missing. Untracked keys
    (``locks/``, strays) are ignored. A key new to the ledger is added as
    ``present``, never verified; a listed key whose row was ``missing`` (or ``lost``) is
    ``present`` again, unverified; a row whose size changed is unverified again. A
    ``present`` row the listing lacks becomes ``missing``. ``corrupt`` rows stay corrupt
    until verification or healing says otherwise.
    """
    listed = {key: size for key, size in listing if is_tracked(key) and scope(key)}
    rows = {row.key: row for row in session.scalars(sa.select(StoreObject).where(
        StoreObject.system_id == system_id, StoreObject.store_id == store_id))
        if scope(row.key)}
    added, vanished = [], []
    for key, size in listed.items():
        row = rows.get(key)
        if row is None:
            session.add(StoreObject(store_id=store_id, system_id=system_id, key=key,
                                    size=size, state="present", first_seen_at=now))
            added.append(key)
        elif row.state in ("missing", "lost") or row.size != size:
            row.state = "present"
            row.verified_at = None
            row.size = size
    for key, row in rows.items():
        if key not in listed and row.state == "present":
            row.state = "missing"
            vanished.append(key)
    return ListingChange(added=sorted(added), vanished=sorted(vanished))


def tombstoned_keys(session: Session, system_id: int) -> set[str]:
    """Keys that retention's prune removed from ``system_id``'s repository.

    Replication never copies them and verification never heals them: they are on their
    way out of every store (:class:`~drd.catalog.models.Tombstone`).
    """
    from drd.catalog.models import Tombstone

    return set(session.scalars(sa.select(Tombstone.key).where(
        Tombstone.system_id == system_id)))

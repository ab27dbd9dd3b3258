"""The records: what each copy of a recorded object must be, kept in the catalog.

:func:`record_object` is the one call to make wherever drd (or an agent, through the
centre) first writes an object not named by its hash: it records the SHA-256 and size
of the bytes **as stored** (so a manifest kept encrypted in the stores is recorded by
the digest of its ciphertext). The rest reads the records and fills in those the catalog
can derive from what it holds already (:func:`backfill_records`).

Every function works in the caller's session and transaction.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog.models import RecordedObject, Snapshot, SnapshotManifest, System
from drd.catalog.types import utcnow
from drd.crypto.keystore import KeyStore
from drd.crypto.pem import load_signing_public_key
from drd.crypto.seal import manifest_context, reseal
from drd.crypto.signing import public_key_fingerprint
from drd.errors import DrdError, OperationError
from drd.recorded.judge import Record
from drd.recorded.keys import (
    ESCROW_KEY,
    is_recorded_kind,
    is_sealed_manifest,
    manifest_keys,
    manifest_snapshot,
    sealed_manifest_keys,
    signature_document,
)

log = logging.getLogger("drd.recorded")

_HEX64 = re.compile(r"[0-9a-f]{64}")


class RecordConflict(OperationError):
    """A key already has a record with another digest (and replacing it was not asked)."""


def record_object(session: Session, system_id: int, key: str, *, sha256: str, size: int,
                  source: str, now: dt.datetime | None = None,
                  replace: bool = False) -> RecordedObject:
    """Record the SHA-256 and size every copy of ``key`` of system ``system_id`` must
    have, and where that digest came from (``source``: ``agent at enrollment``,
    ``catalog``, ``locked copy in dc-a``...).

    Recording the same digest again changes nothing. Another digest for a key already
    recorded raises :class:`RecordConflict`, unless ``replace`` (for a deliberate
    rewrite of the object in every store, e.g. after re-sealing). Raises ``ValueError``
    for a key not checked by record (:func:`drd.recorded.keys.is_recorded_kind`) or a
    malformed digest or size.
    """
    if not is_recorded_kind(key):
        raise ValueError(f"{key!r} is not an object drd checks against a record")
    if not _HEX64.fullmatch(sha256) or size < 0:
        raise ValueError(f"not a SHA-256 (hex) and size: {sha256!r}, {size!r}")
    row = session.scalar(sa.select(RecordedObject).where(
        RecordedObject.system_id == system_id, RecordedObject.key == key))
    if row is not None:
        if (row.sha256, row.size) == (sha256, size):
            return row
        if not replace:
            raise RecordConflict(f"{key} of system {system_id} was recorded with SHA-256 "
                                 f"{row.sha256} ({row.source}), not {sha256}")
        row.sha256, row.size, row.source, row.recorded_at = sha256, size, source, now or utcnow()
        return row
    row = RecordedObject(system_id=system_id, key=key, sha256=sha256, size=size,
                         source=source, recorded_at=now or utcnow())
    session.add(row)
    session.flush()
    return row


def record_bytes(session: Session, system_id: int, key: str, data: bytes, *, source: str,
                 now: dt.datetime | None = None, replace: bool = False) -> RecordedObject:
    """:func:`record_object` for the bytes ``data`` as they are stored."""
    return record_object(session, system_id, key, sha256=hashlib.sha256(data).hexdigest(),
                         size=len(data), source=source, now=now, replace=replace)


def manifest_objects(snapshot_id: str, content: bytes, signature: bytes,
                     agent_public_key_pem: str) -> dict[str, bytes]:
    """The bytes an agent that did not seal manifests stored: ``<id>.json`` (the
    canonical bytes signed) and ``<id>.json.sig`` (the signature document naming the
    agent's key). Raises :class:`~drd.errors.UserError` for a key that is not Ed25519
    PEM."""
    manifest_key, signature_key = manifest_keys(snapshot_id)
    return {manifest_key: content,
            signature_key: _signature_bytes(signature, agent_public_key_pem)}


def _signature_bytes(signature: bytes, agent_public_key_pem: str) -> bytes:
    fingerprint = public_key_fingerprint(load_signing_public_key(agent_public_key_pem.encode()))
    return signature_document(fingerprint, base64.b64encode(signature).decode())


def record_manifest(session: Session, system_id: int, snapshot_id: str, content: bytes,
                    signature: bytes, agent_public_key_pem: str, *,
                    sealed: tuple[str, int] | None = None, sealed_checked: bool = True,
                    now: dt.datetime | None = None) -> None:
    """Record a snapshot's manifest and signature objects as the agent stored them.

    ``sealed`` is the SHA-256 and size of the sealed manifest (``<id>.json.sealed``)
    the agent stored, which the caller has checked against ``content``
    (:func:`drd.crypto.seal.resealed_digest`) unless ``sealed_checked`` is False (sealed
    to another escrow key: the source says so); None for an agent that stored the
    plaintext (:func:`manifest_objects`).
    """
    if sealed is None:
        for key, data in manifest_objects(snapshot_id, content, signature,
                                          agent_public_key_pem).items():
            record_bytes(session, system_id, key, data, source="manifest upload", now=now)
        return
    sealed_key, signature_key = sealed_manifest_keys(snapshot_id)
    sha256, size = sealed
    record_object(session, system_id, sealed_key, sha256=sha256, size=size,
                  source="manifest upload" if sealed_checked
                  else "manifest upload (sealed to another escrow key: unchecked)", now=now)
    record_bytes(session, system_id, signature_key,
                 _signature_bytes(signature, agent_public_key_pem),
                 source="manifest upload", now=now)


def records_of(session: Session, system_id: int) -> dict[str, Record]:
    """Every record of system ``system_id``, by key."""
    return {row.key: Record(row.sha256, row.size, row.source)
            for row in session.scalars(sa.select(RecordedObject).where(
                RecordedObject.system_id == system_id))}


def backfill_records(session: Session, system_id: int, now: dt.datetime | None = None) -> int:
    """Record what the catalog can derive from its own bytes and has not recorded yet:
    the sealed password (``System.sealed_password``) and every kept manifest. For systems
    enrolled, and manifests kept, before the records existed. Returns how many records
    were added.
    """
    known = set(session.scalars(sa.select(RecordedObject.key).where(
        RecordedObject.system_id == system_id)))
    system = session.get(System, system_id)
    if system is None:
        return 0
    added = 0
    if ESCROW_KEY not in known and system.sealed_password:
        record_bytes(session, system_id, ESCROW_KEY, system.sealed_password,
                     source="catalog", now=now)
        added += 1
    if not system.agent_public_key:
        return added
    kept = session.execute(
        sa.select(SnapshotManifest.id, Snapshot.restic_id,
                  SnapshotManifest.sealed_head.is_not(None))
        .join(Snapshot).where(Snapshot.system_id == system_id)).all()
    for manifest_id, restic_id, has_head in kept:
        sealed_key, signature_key = sealed_manifest_keys(restic_id)
        if has_head or sealed_key in known:
            # the sealed object's digest was recorded at the upload; it cannot be derived
            # without the escrow key, and the stores never hold the plaintext
            wanted = {signature_key}
        else:
            wanted = set(manifest_keys(restic_id))
        if wanted <= known:
            continue
        manifest = session.get(SnapshotManifest, manifest_id)
        objects = manifest_objects(restic_id, manifest.content, manifest.signature,
                                   system.agent_public_key)
        for key in sorted(wanted - known):
            record_bytes(session, system_id, key, objects[key], source="catalog", now=now)
            added += 1
    return added


def catalog_bytes(session: Session, system_id: int, key: str,
                  keystore: KeyStore | None = None) -> bytes | None:
    """The bytes of ``key`` the catalog holds itself (the sealed password, a kept
    manifest and its signature document), or None. Whether they are what the stores
    must hold is for the record to say: the caller checks them against it.

    A sealed manifest is sealed again from the kept plaintext and its head with the
    escrow key (:func:`drd.crypto.seal.reseal`; ``keystore`` must be given, else None):
    byte for byte what the agent stored, while the escrow key is the one it was sealed
    to. The plaintext of a sealed manifest is never returned for its ``.json`` key:
    it must not reach a store.
    """
    system = session.get(System, system_id)
    if system is None:
        return None
    if key == ESCROW_KEY:
        return system.sealed_password
    restic_id = manifest_snapshot(key)
    if restic_id is None or not system.agent_public_key:
        return None
    manifest = session.scalar(sa.select(SnapshotManifest).join(Snapshot).where(
        Snapshot.system_id == system_id, Snapshot.restic_id == restic_id))
    if manifest is None:
        return None
    if is_sealed_manifest(key):
        return _sealed_again(system.name, restic_id, manifest, keystore)
    if key == manifest_keys(restic_id)[0] and (
            manifest.sealed_head is not None
            or session.scalar(sa.select(RecordedObject.id).where(
                RecordedObject.system_id == system_id,
                RecordedObject.key == sealed_manifest_keys(restic_id)[0])) is not None):
        return None
    return manifest_objects(restic_id, manifest.content, manifest.signature,
                            system.agent_public_key).get(key)


def _sealed_again(system: str, restic_id: str, manifest: SnapshotManifest,
                  keystore: KeyStore | None) -> bytes | None:
    if manifest.sealed_head is None or keystore is None:
        return None
    # the same key and nonce must never encrypt other bytes than the agent sealed
    if hashlib.sha256(manifest.content).hexdigest() != manifest.sha256:
        log.error("the catalog's manifest of snapshot %s of %s does not match its digest: "
                  "it is not sealed again", restic_id[:12], system)
        return None
    try:
        return reseal(keystore.escrow_private_key(), manifest.sealed_head, manifest.content,
                      manifest_context(system, restic_id))
    except (DrdError, ValueError) as error:  # no usable escrow key here
        log.warning("the manifest of snapshot %s of %s cannot be sealed again: %s",
                    restic_id[:12], system, error)
        return None

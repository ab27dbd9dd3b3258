"""Snapshots as the agents report them, their signed manifests, and listing them.

A report is the agent's claim: it is recorded ``unconfirmed``, with each store's copy as
the agent reported it, and counts (``active``) only once the daemon's confirmation step
has seen the snapshot in ``min_copies`` stores (:mod:`drd.confirmation`); until then no
restore, drill, RPO or retention decision takes it for a backup. The report queues the
system's replication, which runs that step, so the API answers without asking a store.

A report is recorded once however often it is delivered (the agent's spool delivers at
least once): a ``report_id`` seen before, or a snapshot id the system reported before,
is answered as a duplicate and changes nothing. A manifest is kept as the canonical
bytes the agent signed (:func:`canonical_json`), after its signature was checked
against the agent's enrolled key; the stores hold it sealed to the escrow key, and the
catalog records that sealed object's digest and keeps its 45-byte head.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from drd.catalog import Catalog
from drd.catalog.models import (
    Department,
    Snapshot,
    SnapshotCopy,
    SnapshotManifest,
    System,
)
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.crypto.errors import BadSignature, CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.pem import load_signing_public_key
from drd.crypto.seal import (
    SEAL_HEAD_SIZE,
    manifest_context,
    recipient_fingerprint,
    resealed_digest,
)
from drd.crypto.signing import verify
from drd.daemon import queue as work_queue
from drd.errors import UserError
from drd.recorded.catalog import record_manifest
from drd.services.agents import AgentIdentity
from drd.services.protocol import (
    MAX_CLOCK_SKEW,
    ManifestSeal,
    SnapshotAccepted,
    SnapshotReport,
)
from drd.services.refusals import BadRequest, Conflict, NotFound

log = logging.getLogger(__name__)

SIGNATURE_SIZE = 64
SHORT_ID_LENGTH = 8
MAX_MISSING_KEPT = 100_000
"""The most object names kept per copy; the replicator lists a store to find the rest."""


def canonical_json(document: Any) -> bytes:
    """The bytes a manifest's signature and ``manifest_sha256`` are over.

    ``json.dumps(document, sort_keys=True, separators=(",", ":")).encode()``: keys
    sorted, no blanks, ASCII only (anything else as ``\\uXXXX``). Raises ``TypeError``
    or ``ValueError`` for what JSON cannot hold.
    """
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def copy_state(complete: bool) -> str:
    """A reported copy's state: ``present`` when the store holds every object."""
    return "present" if complete else "missing"


_STORE_IDS = (sa.select(StoreRow.name, StoreRow.id)
              .where(StoreRow.name.in_(sa.bindparam("names", expanding=True))))
_INSERT_SNAPSHOT = sa.insert(Snapshot.__table__)  # no RETURNING: SQLite < 3.35 lacks it
_INSERT_COPY = sa.insert(SnapshotCopy.__table__)


def record_report(catalog: Catalog, agent: AgentIdentity, report: SnapshotReport,
                  now: dt.datetime | None = None) -> SnapshotAccepted:
    """Record a snapshot report of ``agent``'s system, ``unconfirmed``, with one copy row
    per store as reported, and queue the system's replication (reason ``snapshot``; its
    job confirms or rejects the report) in the same transaction.

    Returns ``duplicate=True`` (nothing written) for a report or snapshot recorded
    before, also when a concurrent delivery of the same report won the race. Raises
    :class:`BadRequest` naming stores the centre does not know, :class:`Conflict` for
    a ``report_id`` that another system used.
    """
    now = now or utcnow()
    if report.time > now + MAX_CLOCK_SKEW:
        raise BadRequest(f"time: {report.time.isoformat()} is in the future by the centre's "
                         "clock: check the agent's clock")
    names = sorted(report.stores)
    try:
        with catalog.session() as session:
            # no look for an earlier delivery first: the unique report id and (system,
            # snapshot id) refuse a second one, and that rare case is sorted out below
            stores = dict(session.execute(_STORE_IDS, {"names": names}).all())
            unknown = [name for name in names if name not in stores]
            if unknown:
                # a store removed since an earlier delivery does not undo that one
                duplicate = _recorded(session, agent, report)
                if duplicate is not None:
                    return duplicate
                raise BadRequest(f"stores: unknown to the centre: {', '.join(unknown)}")
            # Core inserts: the ORM's unit of work would cost more than the database
            connection = session.connection()
            snapshot_id = connection.execute(_INSERT_SNAPSHOT, {
                "restic_id": report.snapshot_id, "report_id": report.report_id,
                "system_id": agent.system_id, "time": report.time,
                "hostname": report.hostname, "paths": list(report.paths),
                "tags": list(report.tags), "tree": report.tree, "size_bytes": report.bytes,
                "file_count": report.files, "duration_seconds": report.duration_seconds,
                "partial": report.partial, "manifest_sha256": report.manifest_sha256,
                "reported_at": now, "status": "unconfirmed"}).inserted_primary_key[0]
            connection.execute(_INSERT_COPY, [
                {"snapshot_id": snapshot_id, "store_id": stores[name],
                 "state": copy_state(copy.complete), "missing_objects": copy.missing_objects,
                 "missing": list(copy.missing[:MAX_MISSING_KEPT])}
                for name, copy in sorted(report.stores.items())])
            # replication starts right after each snapshot (committed with it)
            work_queue.request(session, "replicate", agent.system_id, "snapshot", now=now)
    except sa.exc.IntegrityError:
        # delivered before (or a concurrent delivery of the same report committed first)
        with catalog.read_session() as session:
            duplicate = _recorded(session, agent, report)
        if duplicate is None:
            raise
        return duplicate
    log.info("snapshot %s of %s recorded, unconfirmed (%d files, %d bytes, stores %s)",
             report.snapshot_id[:SHORT_ID_LENGTH], agent.system, report.files, report.bytes,
             ", ".join(f"{name}:{copy_state(copy.complete)}"
                       for name, copy in sorted(report.stores.items())))
    return SnapshotAccepted(snapshot_id=report.snapshot_id, report_id=report.report_id,
                            duplicate=False)


def _recorded(session, agent: AgentIdentity, report: SnapshotReport
              ) -> SnapshotAccepted | None:
    by_report = session.execute(sa.select(Snapshot.system_id, Snapshot.restic_id).where(
        Snapshot.report_id == report.report_id)).one_or_none()
    if by_report is not None:
        if by_report.system_id != agent.system_id:
            raise Conflict("report_id: already used by another system; make a new UUID")
        return SnapshotAccepted(snapshot_id=by_report.restic_id,
                                report_id=report.report_id, duplicate=True)
    by_snapshot = session.scalar(sa.select(Snapshot.id).where(
        Snapshot.system_id == agent.system_id, Snapshot.restic_id == report.snapshot_id))
    if by_snapshot is not None:
        return SnapshotAccepted(snapshot_id=report.snapshot_id, report_id=report.report_id,
                                duplicate=True)
    return None


def store_manifest(catalog: Catalog, agent: AgentIdentity, snapshot_id: str,
                   manifest: dict[str, Any], signature_text: str,
                   now: dt.datetime | None = None, *, sealed: ManifestSeal | None = None,
                   keystore: KeyStore | None = None) -> bool:
    """Check a manifest's signature and keep it; return False if it was kept before.

    ``sealed`` describes the manifest as the agent stored it, sealed to the escrow key
    (:class:`~drd.services.protocol.ManifestSeal`); the centre seals the canonical bytes
    again from its head with ``keystore``'s escrow key (which unseals nothing: it is
    not audited) and must get the digest and size the agent gave, so that what it
    records is what the stores hold and what it keeps can write that object back. It
    records that object's digest, not the plaintext's. A manifest sealed to another
    escrow key (a rotated-away one) cannot be checked: it is kept, and its digest
    recorded as reported (:func:`_check_seal`). Without ``sealed`` (an agent that stored
    the plaintext) the plaintext is recorded, as before.

    Raises :class:`NotFound` when ``agent``'s system has no snapshot ``snapshot_id``
    (another system's snapshot included), :class:`BadRequest` for a signature that is
    not base64 or does not verify, a manifest whose digest differs from the reported
    ``manifest_sha256`` or that names another snapshot, a sealed manifest that is not
    these bytes sealed to this centre's escrow key for this system and snapshot,
    :class:`Conflict` when a different manifest was kept for this snapshot already.
    """
    now = now or utcnow()
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("signature: not base64") from None
    if len(signature) != SIGNATURE_SIZE:
        raise BadRequest(f"signature: an Ed25519 signature is {SIGNATURE_SIZE} bytes, "
                         f"not {len(signature)}")
    named = manifest.get("snapshot_id")
    if named is not None and named != snapshot_id:
        raise BadRequest(f"manifest: it names snapshot {str(named)[:64]!r}, not {snapshot_id}")
    try:
        content = canonical_json(manifest)
    except (TypeError, ValueError) as error:
        raise BadRequest(f"manifest: cannot be put in canonical form: {error}") from None
    digest = hashlib.sha256(content).hexdigest()
    head = None if sealed is None else _check_seal(sealed, keystore, agent.system,
                                                   snapshot_id, content)
    with catalog.session() as session:
        snapshot = session.scalar(sa.select(Snapshot).where(
            Snapshot.system_id == agent.system_id, Snapshot.restic_id == snapshot_id))
        if snapshot is None:
            raise NotFound(f"no snapshot {snapshot_id} of system {agent.system}: report the "
                           "snapshot first (POST /v1/agent/snapshots)")
        public_key = load_signing_public_key(snapshot.system.agent_public_key.encode())
        try:
            verify(public_key, content, signature)
        except BadSignature:
            raise BadRequest("signature: does not verify with this agent's enrolled key over "
                             "the manifest's canonical JSON (see docs/agent-protocol.md)"
                             ) from None
        if snapshot.manifest_sha256 and snapshot.manifest_sha256 != digest:
            raise BadRequest(f"manifest: its canonical SHA-256 is {digest}, the snapshot "
                             f"report said {snapshot.manifest_sha256}")
        kept = session.scalar(sa.select(SnapshotManifest).where(
            SnapshotManifest.snapshot_id == snapshot.id))
        if kept is not None:
            if kept.sha256 == digest:
                return False
            raise Conflict(f"a different manifest was recorded for snapshot {snapshot_id} "
                           "already")
        session.add(SnapshotManifest(snapshot_id=snapshot.id, content=content, sha256=digest,
                                     signature=signature, received_at=now, sealed_head=head))
        # what the agent put in the stores, for verification to check every copy against
        record_manifest(session, agent.system_id, snapshot_id, content, signature,
                        snapshot.system.agent_public_key, now=now,
                        sealed=None if sealed is None else (sealed.sha256, sealed.size),
                        sealed_checked=head is not None)
    if sealed is not None and head is None:
        log.warning("the manifest of snapshot %s of %s in the stores is sealed to escrow key "
                    "%s, not this centre's: its digest is recorded as the agent reports it",
                    snapshot_id[:SHORT_ID_LENGTH], agent.system, sealed.key[:16])
    return True


def _check_seal(sealed: ManifestSeal, keystore: KeyStore | None, system: str,
                snapshot_id: str, content: bytes) -> bytes | None:
    """The sealed manifest's head to keep, once sealing ``content`` again from it gives
    the digest and size the agent reported (raises :class:`BadRequest` otherwise).

    None for a manifest sealed to another escrow key than this centre's (an agent that
    backed up with a cached assignment across ``drd keys rotate-escrow``): the centre
    cannot check it, records the digest as reported, and cannot write that object back
    (another store's matching copy still can)."""
    if keystore is None:
        raise ValueError("a sealed manifest is checked with the centre's key store")
    try:
        head = base64.b64decode(sealed.head, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("sealed.head: not base64") from None
    escrow = keystore.escrow_private_key()
    if sealed.key != recipient_fingerprint(escrow.public_key()):
        return None
    try:
        found = resealed_digest(escrow, head, content, manifest_context(system, snapshot_id))
    except CryptoError:
        raise BadRequest(f"sealed.head: not the first {SEAL_HEAD_SIZE} bytes of a sealed "
                         "object (see docs/agent-protocol.md)") from None
    if found != (sealed.sha256, sealed.size):
        raise BadRequest("sealed: the manifest sealed again from its head is not the object "
                         "the agent reported (sealed for another system or snapshot, or "
                         "other bytes?); see docs/agent-protocol.md")
    return head


@dataclass(frozen=True)
class SnapshotView:
    """A snapshot as listed by ``drd snapshots``."""

    snapshot_id: str
    system: str
    department: str
    time: dt.datetime
    hostname: str
    files: int | None
    bytes: int | None
    duration_seconds: float | None
    partial: bool
    status: str
    manifest: bool
    copies: dict[str, dict[str, Any]]

    @property
    def short_id(self) -> str:
        return self.snapshot_id[:SHORT_ID_LENGTH]

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "short_id": self.short_id,
            "system": self.system,
            "department": self.department,
            "time": self.time,
            "hostname": self.hostname,
            "files": self.files,
            "bytes": self.bytes,
            "duration_seconds": self.duration_seconds,
            "partial": self.partial,
            "status": self.status,
            "manifest": self.manifest,
            "copies": self.copies,
        }


def list_snapshots(catalog: Catalog, system: str | None = None) -> list[SnapshotView]:
    """Every snapshot (or ``system``'s), oldest first, with each store's copy state.

    Raises :class:`UserError` when ``system`` names no system.
    """
    with catalog.session() as session:
        query = (sa.select(Snapshot, System.name, Department.name)
                 .join(System, Snapshot.system_id == System.id)
                 .join(Department, System.department_id == Department.id)
                 .options(selectinload(Snapshot.copies).selectinload(SnapshotCopy.store))
                 .order_by(Snapshot.time, System.name, Snapshot.restic_id))
        if system is not None:
            if session.scalar(sa.select(System.id).where(System.name == system)) is None:
                raise UserError(f"no system named {system!r} (see drd status)")
            query = query.where(System.name == system)
        rows = session.execute(query).all()
        with_manifest = set(session.scalars(sa.select(SnapshotManifest.snapshot_id)))
        return [
            SnapshotView(
                snapshot_id=snapshot.restic_id, system=system_name,
                department=department_name, time=snapshot.time, hostname=snapshot.hostname,
                files=snapshot.file_count, bytes=snapshot.size_bytes,
                duration_seconds=snapshot.duration_seconds, partial=snapshot.partial,
                status=snapshot.status, manifest=snapshot.id in with_manifest,
                copies={copy.store.name: {"state": copy.state,
                                          "missing_objects": copy.missing_objects,
                                          "verified_at": copy.verified_at}
                        for copy in sorted(snapshot.copies, key=lambda c: c.store.name)},
            )
            for snapshot, system_name, department_name in rows
        ]

"""Rotating the centre's keys: a new master passphrase, a new escrow key, a new signing key.

Each rotation changes two things that cannot share one transaction: files in ``keys/``
and rows in the catalog (store secrets and systems' own store keys, sealed passwords,
drill signatures). So that a crash leaves the old or the new state usable, never a mix,
every rotation goes the same way:

1. build a complete new keys directory beside the old one, ``<home>/keys.rotating``
   (everything copied, the changed files replaced), fsynced;
2. write the marker ``<home>/keys.rotating.json`` (the rotation's id and kind): from now
   on the staging directory is known to be complete;
3. change the catalog in **one** transaction that also writes the rotation's audit entry
   (its details carry the rotation id): this commit is the point of no return;
4. swap the directories: ``keys`` -> ``keys.retiring``, ``keys.rotating`` -> ``keys``,
   then remove ``keys.retiring`` and the marker.

:func:`finish_pending` (run first by every rotation, and by ``drd keys finish-rotation``)
completes or undoes an interrupted one: with a marker whose audit entry is in the catalog
it finishes the swap; with a marker and no audit entry it removes the staging directory
(the catalog was never changed); without a marker it removes a partial staging directory.
It needs neither the master key nor any passphrase.

The daemons must be stopped (:func:`check_daemons_stopped`): a running ``drd serve``
holds the master key and the escrow public key in memory and signs drill reports.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy.orm import Session

from drd.catalog import Catalog, audit
from drd.catalog.models import AuditEntry, Daemon, Drill, StoreCredential, System
from drd.catalog.models import Store as StoreRow
from drd.config import KEYS_DIR, Config
from drd.credentials.reconcile import credential_context
from drd.crypto import keystore as layout
from drd.crypto.errors import BadSignature, CryptoError
from drd.crypto.keystore import KeyStore, encrypt_private_key, key_file_context
from drd.crypto.masterkey import KDF_FILE, KEY_FILE, MasterKey, create_master_key, load_master_key
from drd.crypto.pem import public_key_pem
from drd.crypto.seal import password_context, seal, unseal
from drd.crypto.signing import public_key_fingerprint
from drd.errors import OperationError, UserError
from drd.fsutil import (
    PUBLIC_FILE_MODE,
    atomic_write,
    ensure_private_directory,
    fsync_directory,
    write_new_file,
)
from drd.recovery.kit import escrow_fingerprint
from drd.secrets import Secret
from drd.services.stores import secret_context
from restore_drills.report import sign_report, verify_report_signature

log = logging.getLogger("drd.keys")

STAGING_DIR = "keys.rotating"
RETIRING_DIR = "keys.retiring"
MARKER_FILE = "keys.rotating.json"
MINIMUM_PASSPHRASE_LENGTH = 12
NEW_PASSPHRASE_VARIABLE = "DRD_NEW_MASTER_PASSPHRASE"
ACTIONS = {"passphrase": "keys.change_passphrase", "escrow": "keys.rotate_escrow",
           "signing": "keys.rotate_signing"}


@dataclass
class RotationResult:
    """What a rotation did: its id (in the audit entry), the keys' fingerprints, counts."""

    kind: str
    rotation: str
    old_key: str | None = None
    new_key: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    unverified_drills: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rotation": self.rotation, "old_key_sha256": self.old_key,
                "new_key_sha256": self.new_key, "counts": self.counts,
                "unverified_drills": self.unverified_drills}


@dataclass
class PendingOutcome:
    """What :func:`finish_pending` found: ``none``, ``finished`` or ``discarded``."""

    outcome: str
    kind: str | None = None
    rotation: str | None = None


# -- the daemons -----------------------------------------------------------------------


def check_daemons_stopped(catalog: Catalog, config: Config,
                          now: dt.datetime | None = None) -> None:
    """Raise :class:`UserError` if a ``drd serve`` has beaten its heart recently.

    A daemon counts as running when it has not said it stopped and its heartbeat is
    younger than three leases (a daemon killed with ``kill -9`` stops counting then).
    """
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(seconds=3 * config.lease_seconds)
    with catalog.read_session() as session:
        running = session.execute(
            sa.select(Daemon.hostname, Daemon.pid)
            .where(Daemon.stopped_at.is_(None), Daemon.heartbeat_at >= cutoff)).all()
    if running:
        names = ", ".join(f"{row.hostname} pid {row.pid}" for row in running)
        raise UserError(f"drd serve is running ({names}): stop every daemon of this centre "
                        "first (systemctl stop drd), since a running daemon keeps keys in "
                        "memory; nothing was changed")


# -- one rotation at a time ---------------------------------------------------------------

LOCK_FILE = "keys.rotating.lock"


class RotationLock:
    """This process is the only one rotating keys of ``home`` until :meth:`release`.

    Two rotations at once (or a rotation and ``finish-rotation``) could undo each other's
    staging directory between a catalog commit and the swap, leaving passwords sealed to a
    key that exists nowhere. Raises :class:`UserError` when another process holds it.
    """

    def __init__(self, home: Path) -> None:
        import fcntl

        self._handle = open(home / LOCK_FILE, "a")  # noqa: SIM115 -- until release()
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise UserError("another drd keys command is rotating this centre's keys "
                            "right now: wait for it to end; nothing was changed") from None

    def release(self) -> None:
        self._handle.close()  # closing the file releases the lock


def rotation_pending(home: Path) -> bool:
    """Whether a rotation stopped half-way (``drd keys finish-rotation`` settles it)."""
    return (home / MARKER_FILE).exists() or (home / STAGING_DIR).exists()


# -- interrupted rotations ----------------------------------------------------------------


def finish_pending(home: Path, catalog: Catalog) -> PendingOutcome:
    """Complete or undo a rotation that stopped half-way (see the module's docstring).

    Raises :class:`OperationError` when the directories are in a state no rotation
    leaves (then nothing is touched and the message says what is where).
    """
    keys, staging, retiring = home / KEYS_DIR, home / STAGING_DIR, home / RETIRING_DIR
    marker = _read_marker(home)
    if marker is None:
        if staging.exists():
            shutil.rmtree(staging)  # never complete: the catalog was not changed
            return PendingOutcome("discarded")
        if retiring.exists() and keys.is_dir():
            shutil.rmtree(retiring)
        return PendingOutcome("none")
    kind, rotation = marker["kind"], marker["rotation"]
    if not _committed(catalog, kind, rotation):
        if not keys.is_dir():
            raise OperationError(f"{keys} is missing and the rotation {rotation} was not "
                                 f"committed: move {retiring} back to {keys} by hand")
        shutil.rmtree(staging, ignore_errors=True)
        (home / MARKER_FILE).unlink(missing_ok=True)
        fsync_directory(home)
        return PendingOutcome("discarded", kind, rotation)
    _swap(home)
    return PendingOutcome("finished", kind, rotation)


def _read_marker(home: Path) -> dict[str, str] | None:
    path = home / MARKER_FILE
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document["kind"] not in ACTIONS or not isinstance(document["rotation"], str):
            raise ValueError("unknown kind")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OperationError(f"{path} is damaged ({error}): look at {home / STAGING_DIR} "
                             "and the audit log before removing it") from None
    return document


def _committed(catalog: Catalog, kind: str, rotation: str) -> bool:
    with catalog.read_session() as session:
        entries = session.scalars(sa.select(AuditEntry.details)
                                  .where(AuditEntry.action == ACTIONS[kind])
                                  .order_by(AuditEntry.id.desc()).limit(100))
        return any((details or {}).get("rotation") == rotation for details in entries)


def _swap(home: Path) -> None:
    keys, staging, retiring = home / KEYS_DIR, home / STAGING_DIR, home / RETIRING_DIR
    if staging.is_dir():
        if keys.is_dir():
            if retiring.exists():
                raise OperationError(f"both {keys} and {retiring} exist beside {staging}: "
                                     "no rotation leaves that; nothing was touched")
            keys.rename(retiring)
            fsync_directory(home)
        staging.rename(keys)
        fsync_directory(home)
    if not keys.is_dir():
        raise OperationError(f"{keys} is missing: no rotation leaves that")
    shutil.rmtree(retiring, ignore_errors=True)
    (home / MARKER_FILE).unlink(missing_ok=True)
    fsync_directory(home)


# -- staging ------------------------------------------------------------------------------


def _stage(home: Path, replaced: dict[str, tuple[bytes, int]], *,
           dropped: frozenset[str] = frozenset(), fresh: bool = True) -> Path:
    """Copy ``keys/`` into ``keys.rotating/`` with ``replaced`` files (relative names)
    written instead and ``dropped`` ones left out; return the staging directory."""
    keys, staging = home / KEYS_DIR, home / STAGING_DIR
    if fresh:
        ensure_private_directory(staging)
    for path in sorted(keys.rglob("*")):
        relative = path.relative_to(keys).as_posix()
        if path.name.startswith(".") or relative in replaced or relative in dropped:
            continue
        target = staging / relative
        if path.is_dir():
            ensure_private_directory(target)
            continue
        ensure_private_directory(target.parent)
        write_new_file(target, path.read_bytes(), path.stat().st_mode & 0o777)
    for relative, (data, mode) in replaced.items():
        target = staging / relative
        ensure_private_directory(target.parent)
        write_new_file(target, data, mode)
    fsync_directory(staging)
    return staging


def _begin(home: Path, catalog: Catalog, kind: str) -> str:
    outcome = finish_pending(home, catalog)
    if outcome.outcome != "none":
        log.warning("an interrupted key rotation (%s) was %s first", outcome.kind,
                    outcome.outcome)
    return secrets.token_hex(8)


def _mark(home: Path, kind: str, rotation: str) -> None:
    atomic_write(home / MARKER_FILE, json.dumps({"kind": kind, "rotation": rotation}) + "\n",
                 PUBLIC_FILE_MODE)
    fsync_directory(home)


def _undo(home: Path, catalog: Catalog, kind: str, rotation: str) -> None:
    """After a failure: remove the staging directory unless the catalog change was
    committed after all (a commit whose answer was lost), which is finished instead.
    When the catalog cannot tell, everything stays for :func:`finish_pending`."""
    try:
        committed = (home / MARKER_FILE).exists() and _committed(catalog, kind, rotation)
    except Exception:  # noqa: BLE001 -- the catalog is unreachable: decide later
        log.warning("key rotation %s stopped and the catalog cannot say whether it was "
                    "committed: run 'drd keys finish-rotation'", rotation)
        return
    if committed:
        _swap(home)
        return
    shutil.rmtree(home / STAGING_DIR, ignore_errors=True)
    (home / MARKER_FILE).unlink(missing_ok=True)


# -- the master passphrase ------------------------------------------------------------------


def check_new_passphrase(passphrase: Secret) -> None:
    """Raise :class:`UserError` for a master passphrase too short to protect the keys."""
    if len(passphrase.reveal()) < MINIMUM_PASSPHRASE_LENGTH:
        raise UserError(f"the new master passphrase must be at least "
                        f"{MINIMUM_PASSPHRASE_LENGTH} characters long (a few random words)")


def change_passphrase(config: Config, catalog: Catalog, old_master_key: MasterKey,
                      new_passphrase: Secret, *, actor: str) -> RotationResult:
    """Re-encrypt every private key, store secret and system's own store key
    (``store_credentials``) under a master key from ``new_passphrase`` (a centre with a
    random ``master.key`` moves to a passphrase).

    Raises :class:`UserError` for a short passphrase or the same one as now,
    :class:`OperationError` when a key file, store secret or system's key does not
    decrypt with the current master key (nothing is changed then).
    """
    check_new_passphrase(new_passphrase)
    home, keys = config.home, config.keys_dir
    if (keys / KDF_FILE).exists():
        try:
            load_master_key(keys, new_passphrase)
        except UserError:
            pass
        else:
            raise UserError("the new master passphrase is the one in use: choose another")
    rotation = _begin(home, catalog, "passphrase")
    try:
        new_master_key = create_master_key(home / STAGING_DIR, new_passphrase)
        replaced = {}
        for path in sorted(keys.rglob("*.key.enc")):
            relative = path.relative_to(keys).as_posix()
            context = key_file_context(path.name)
            try:
                plaintext = old_master_key.decrypt(path.read_bytes(), context)
            except CryptoError:
                raise OperationError(f"{path} does not decrypt with the current master key: "
                                     "nothing was changed") from None
            replaced[relative] = (new_master_key.encrypt(plaintext, context),
                                  path.stat().st_mode & 0o777)
        _stage(home, replaced, dropped=frozenset({KEY_FILE, KDF_FILE}), fresh=False)
        KeyStore(home / STAGING_DIR, new_master_key).escrow_private_key()  # reads back
        _mark(home, "passphrase", rotation)
        with catalog.session() as session:
            stores = list(session.scalars(sa.select(StoreRow)
                                          .where(StoreRow.secret_encrypted.is_not(None))))
            for row in stores:
                try:
                    secret = old_master_key.decrypt(row.secret_encrypted,
                                                    secret_context(row.name))
                except CryptoError:
                    raise OperationError(f"the secret key of store {row.name!r} does not "
                                         "decrypt with the current master key: nothing was "
                                         "changed") from None
                row.secret_encrypted = new_master_key.encrypt(secret, secret_context(row.name))
            credentials = _reencrypt_system_keys(session, old_master_key, new_master_key)
            audit.record(session, actor, ACTIONS["passphrase"], "master-key",
                         rotation=rotation, key_files=sorted(replaced),
                         store_secrets=len(stores), store_credentials=credentials)
    except BaseException:
        _undo(home, catalog, "passphrase", rotation)
        raise
    _swap(home)
    return RotationResult(kind="passphrase", rotation=rotation,
                          counts={"key_files": len(replaced), "store_secrets": len(stores),
                                  "store_credentials": credentials})


def _reencrypt_system_keys(session: Session, old_master_key: MasterKey,
                           new_master_key: MasterKey) -> int:
    """Re-encrypt, in ``session``'s transaction, every system's own store key that still
    has a secret (active, superseded, pending or disabling: a superseded key works until
    its agent confirms the new one). Returns how many; raises :class:`OperationError`
    naming the first that does not decrypt with ``old_master_key``."""
    rows = session.execute(
        sa.select(StoreCredential, StoreRow.name, System.name)
        .join(StoreRow, StoreCredential.store_id == StoreRow.id)
        .join(System, StoreCredential.system_id == System.id)
        .where(StoreCredential.secret_encrypted.is_not(None))
        .order_by(StoreCredential.id)).all()
    for row, store, system in rows:
        context = credential_context(store, row.access_key_id)
        try:
            secret = old_master_key.decrypt(row.secret_encrypted, context)
        except CryptoError:
            raise OperationError(f"{system}'s key {row.access_key_id} in store {store!r} does "
                                 "not decrypt with the current master key: nothing was "
                                 "changed") from None
        row.secret_encrypted = new_master_key.encrypt(secret, context)
    return len(rows)


# -- the escrow key ---------------------------------------------------------------------------


def rotate_escrow(config: Config, catalog: Catalog, master_key: MasterKey, *,
                  actor: str) -> RotationResult:
    """A new escrow key pair; every sealed password re-sealed to it in one transaction.

    Each unsealing is audit-logged (``escrow.unseal``, committed before the passwords
    are opened, as :func:`drd.services.escrow.unseal_password` does). The old private
    key is removed with the old keys directory: what was sealed to it elsewhere (older
    catalog copies, ``drd/escrow/password.sealed`` in the stores) opens only with the
    recovery kit exported before. Raises :class:`OperationError` naming the systems
    whose password does not unseal with the current key (nothing is changed then).
    """
    home = config.home
    keystore = KeyStore(config.keys_dir, master_key)
    old_private = keystore.escrow_private_key()
    rotation = _begin(home, catalog, "escrow")
    new_private = X25519PrivateKey.generate()
    new_public = new_private.public_key()
    old_fingerprint = escrow_fingerprint(old_private.public_key())
    new_fingerprint = escrow_fingerprint(new_public)
    with catalog.session() as session:
        names = list(session.scalars(sa.select(System.name)
                                     .where(System.sealed_password.is_not(None))
                                     .order_by(System.name)))
        for name in names:
            audit.record(session, actor, "escrow.unseal", name,
                         reason=f"escrow key rotation {rotation}")
    try:
        _stage(home, {
            layout.ESCROW_KEY: (encrypt_private_key(master_key, layout.ESCROW_KEY, new_private),
                                0o600),
            layout.ESCROW_PUBLIC: (public_key_pem(new_public), PUBLIC_FILE_MODE)})
        _mark(home, "escrow", rotation)
        with catalog.session() as session:
            rows = list(session.scalars(sa.select(System)
                                        .where(System.sealed_password.is_not(None))
                                        .order_by(System.name)))
            failed = []
            for row in rows:
                if row.name not in names:  # enrolled since: its unsealing is logged here
                    audit.record(session, actor, "escrow.unseal", row.name,
                                 reason=f"escrow key rotation {rotation}")
                context = password_context(row.name)
                try:
                    password = unseal(old_private, row.sealed_password, context)
                except CryptoError:
                    failed.append(row.name)
                    continue
                row.sealed_password = seal(new_public, password, context)
            if failed:
                raise OperationError(
                    f"the escrowed password of {', '.join(failed)} does not unseal with this "
                    "centre's escrow key, so it cannot be re-sealed: nothing was changed "
                    "(re-enroll those systems, or remove them, then rotate)")
            audit.record(session, actor, ACTIONS["escrow"], "escrow", rotation=rotation,
                         old_key_sha256=old_fingerprint, new_key_sha256=new_fingerprint,
                         systems=len(rows))
    except BaseException:
        _undo(home, catalog, "escrow", rotation)
        raise
    _swap(home)
    return RotationResult(kind="escrow", rotation=rotation, old_key=old_fingerprint,
                          new_key=new_fingerprint, counts={"systems": len(rows)})


# -- the signing key ----------------------------------------------------------------------------


def rotate_signing(config: Config, catalog: Catalog, master_key: MasterKey, *,
                   actor: str) -> RotationResult:
    """A new signing key; the old public key joins ``keys/retired/``.

    Every drill report in the catalog whose signature verifies with a key of the keyring
    is signed again with the new key in one transaction, so exports and the API go on
    checking catalog rows against the current key; one that verifies with none (changed
    since it was signed) keeps its signature and is listed in the result. Reports and
    catalog copies already handed out stay verifiable: ``drd drill verify-report`` and
    ``drd recover-catalog`` accept a retired key and say so.
    """
    home = config.home
    keystore = KeyStore(config.keys_dir, master_key)
    keyring = keystore.signing_keyring()
    old_public = keyring[0].public_key
    rotation = _begin(home, catalog, "signing")
    new_private = Ed25519PrivateKey.generate()
    old_fingerprint = keyring[0].fingerprint
    new_fingerprint = public_key_fingerprint(new_private.public_key())
    retired_name = (f"{layout.RETIRED_DIR}/{layout.RETIRED_SIGNING_PREFIX}{old_fingerprint}"
                    f"{layout.RETIRED_SIGNING_SUFFIX}")
    try:
        _stage(home, {
            layout.SIGNING_KEY: (encrypt_private_key(master_key, layout.SIGNING_KEY,
                                                     new_private), 0o600),
            layout.SIGNING_PUBLIC: (public_key_pem(new_private.public_key()),
                                    PUBLIC_FILE_MODE),
            retired_name: (public_key_pem(old_public), PUBLIC_FILE_MODE)})
        _mark(home, "signing", rotation)
        unverified: list[int] = []
        signed = 0
        with catalog.session() as session:
            for drill in session.scalars(sa.select(Drill).where(Drill.signature.is_not(None))
                                         .order_by(Drill.id)):
                if not any(_signed_by(entry.public_key, drill.report, drill.signature)
                           for entry in keyring):
                    unverified.append(drill.id)
                    continue
                drill.signature = sign_report(new_private, drill.report)
                signed += 1
            audit.record(session, actor, ACTIONS["signing"], "signing", rotation=rotation,
                         old_key_sha256=old_fingerprint, new_key_sha256=new_fingerprint,
                         drills_signed_again=signed, drills_unverified=unverified[:100])
    except BaseException:
        _undo(home, catalog, "signing", rotation)
        raise
    _swap(home)
    return RotationResult(kind="signing", rotation=rotation, old_key=old_fingerprint,
                          new_key=new_fingerprint, counts={"drills_signed_again": signed},
                          unverified_drills=unverified)


def _signed_by(public_key, report: Any, signature: bytes) -> bool:
    try:
        verify_report_signature(public_key, report, signature)
    except (BadSignature, TypeError):
        return False
    return True


def new_passphrase_from_environment() -> Secret | None:
    """``$DRD_NEW_MASTER_PASSPHRASE``, or ``None``."""
    value = os.environ.get(NEW_PASSPHRASE_VARIABLE)
    return Secret(value) if value else None

"""``drd recover-catalog``: a new centre rebuilt from one store and the recovery kit.

The steps, and why in this order:

1. refuse a home that holds anything (a catalog, keys, a configuration: never overwrite
   a centre), then open the kit -- a wrong passphrase fails before any network work;
2. list the catalog copies in the store and take the newest whose signature verifies
   with the kit's signing key (a changed or foreign copy is skipped and reported);
3. build the new home in a staging directory beside it: a new master key (from
   ``DRD_MASTER_PASSPHRASE`` or the systemd credential, as ``drd init``; else a key
   file), the kit's escrow, signing and CA keys re-encrypted under it, a new server
   certificate issued by the kit's CA (agents pin the CA, so they trust it), the
   copy's settings and a catalog loaded from the copy in one transaction;
4. give the store recovered from the keys just used; every other S3 store has no secret
   key until an administrator re-enters it (``drd store set-keys NAME``);
5. move the staging directory into place. Any failure before this removes it: nothing
   half-written is left behind.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import secrets
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from drd.catalog import Catalog, audit, migrate, schema_version
from drd.catalog.engine import display_url
from drd.catalog.models import Department, Store, System
from drd.config import CATALOG_FILE, CONFIG_FILE, KEYS_DIR, Config, sqlite_url, write_config
from drd.crypto import ca, keystore
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey, create_master_key, passphrase_from_environment
from drd.crypto.pem import public_key_pem
from drd.errors import OperationError, UserError
from drd.fsutil import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, ensure_private_directory, write_new_file
from drd.recovery.container import CopyHeader, DamagedCopy, open_payload, read_header, verify
from drd.recovery.copies import copy_key as key_of_copy
from drd.recovery.copies import fetch, list_copies
from drd.recovery.dump import DamagedDump, LoadResult, load_lines
from drd.recovery.kit import RecoveryKeys, signing_fingerprint
from drd.secrets import Secret
from drd.services.stores import secret_context
from drd.stores.base import Store as ObjectStore
from drd.stores.errors import StoreError
from drd.stores.streams import IteratorReader

log = logging.getLogger("drd.recovery")

SOURCE_NAME = "recovery-source"
_KNOWN_SETTINGS = frozenset({"restic_binary", "listen", "public_url", "workers",
                             "replication_parallel", "lease_seconds", "alerts",
                             "catalog_copy_minutes"})


@dataclass(frozen=True, repr=False)
class RecoverRequest:
    """Everything ``drd recover-catalog`` was given. Secrets only as :class:`Secret`."""

    home: Path
    keys: RecoveryKeys
    source: ObjectStore
    source_url: str
    source_endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    store_name: str | None = None
    database_url: str | None = None
    hostnames: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclass
class RecoverResult:
    """What was recovered, from which copy, and what an administrator must do next."""

    home: Path
    copy_key: str
    copy_created_at: str
    counts: dict[str, int]
    recovered_store: str
    stores_needing_keys: list[str]
    skipped_copies: list[dict[str, str]] = field(default_factory=list)
    ca_fingerprint: str = ""
    database_url: str = ""
    master_key_source: str = "file"
    copy_signed_by_retired_key: str | None = None  # fingerprint, when not the kit's current

    def as_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "copy": self.copy_key,
            "copy_created_at": self.copy_created_at,
            "counts": self.counts,
            "recovered_store": self.recovered_store,
            "stores_needing_keys": self.stores_needing_keys,
            "skipped_copies": self.skipped_copies,
            "ca_fingerprint": self.ca_fingerprint,
            "database_url": display_url(self.database_url),
            "master_key": self.master_key_source,
            "copy_signed_by_retired_key": self.copy_signed_by_retired_key,
        }


def check_home_is_free(home: Path) -> None:
    """Raise :class:`UserError` unless ``home`` is missing or an empty directory."""
    if not home.exists():
        return
    if not home.is_dir():
        raise UserError(f"{home} is not a directory: choose a new --home")
    if (home / CONFIG_FILE).exists() or (home / KEYS_DIR).exists() \
            or (home / CATALOG_FILE).exists():
        raise UserError(f"{home} already holds a drd centre (a catalog, keys or drd.yaml); "
                        "recover into a new, empty --home: nothing was changed")
    if any(home.iterdir()):
        raise UserError(f"{home} is not empty: recover into a new, empty --home")


def recover(request: RecoverRequest,
            say: Callable[[str], None] = lambda message: None) -> RecoverResult:
    """Rebuild a centre in ``request.home`` from the newest good copy in the source store.

    Raises :class:`UserError` for a home that is taken or a store name the copy does not
    know, :class:`OperationError` (or a :class:`~drd.stores.errors.StoreError`) when the
    store cannot be read or holds no copy that verifies with the kit, or the catalog
    cannot be written. Nothing is left behind on failure.
    """
    home = request.home
    check_home_is_free(home)  # again: the caller checked before asking for the passphrase
    parent = home.parent
    if not parent.is_dir():
        raise UserError(f"the parent directory of --home {home} does not exist")
    key, handle, header, skipped = _newest_good_copy(request, parent, say)
    try:
        staging = parent / f".{home.name}.recover-{secrets.token_hex(4)}"
        ensure_private_directory(staging)
        try:
            try:
                result = _build(request, staging, handle, header, say)
                if home.exists():
                    home.rmdir()  # empty, checked above
                staging.rename(home)
            except OSError as error:
                raise OperationError(f"cannot write the new home {home}: "
                                     f"{error.strerror or error}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        handle.close()
    result.copy_key, result.skipped_copies = key, skipped
    named = header.document.get("signing_key_sha256")
    if named != signing_fingerprint(request.keys.signing.public_key()):
        result.copy_signed_by_retired_key = named
    return result


def _newest_good_copy(request: RecoverRequest, directory: Path,
                      say: Callable[[str], None]
                      ) -> tuple[str, BinaryIO, CopyHeader, list[dict[str, str]]]:
    try:
        keys = list_copies(request.source)
    except StoreError as error:
        raise OperationError(f"cannot list the catalog copies in {request.source_url}: "
                             f"{error}") from None
    if not keys:
        raise OperationError(f"no catalog copy in {request.source_url} (under _drd-centre/): "
                             "is it a store of this centre, and did its daemon ever write "
                             "one? (drd catalog backup)")
    skipped: list[dict[str, str]] = []
    signing_public = request.keys.signing.public_key()
    # a copy written before `drd keys rotate-signing` names a retired key the kit lists
    retired = {signing_fingerprint(key): key for key in request.keys.retired_signing}
    for key in keys:
        handle = fetch(request.source, key, directory)
        try:
            named = read_header(handle).document.get("signing_key_sha256")
            header = verify(handle, retired.get(named, signing_public))
            if named in retired:
                say(f"{key} is signed by the retired signing key {named[:16]}... (the kit "
                    "lists it as retired)")
            if key != _signed_key(header):
                # names are not signed: anyone holding the store's keys could copy an old
                # signed copy under a newer name, to have a stale catalog recovered
                raise DamagedCopy(f"its signed time {header.document.get('created_at')} "
                                  "does not match its name: an older copy renamed")
            if header.document["escrow_key_sha256"] != request.keys.public_summary()[
                    "escrow_key_sha256"]:
                raise DamagedCopy("the copy was encrypted for another escrow key (another "
                                  "centre's, or one rotated away since: the recovery kit "
                                  "exported before that rotation opens it)")
        except DamagedCopy as problem:
            handle.close()
            log.warning("catalog copy %s refused: %s", key, problem)
            say(f"skipping {key}: {problem}")
            skipped.append({"copy": key, "reason": str(problem)})
            continue
        return key, handle, header, skipped
    raise OperationError(
        f"none of the {len(keys)} catalog copies in {request.source_url} verifies with the "
        f"recovery kit's signing key (changed, damaged, or another centre's): "
        f"{skipped[0]['reason']}. Try another store, or check that the kit is this "
        "centre's")


def _signed_key(header: CopyHeader) -> str | None:
    """The key a copy with ``header`` was written under (its name holds its signed time)."""
    try:
        return key_of_copy(dt.datetime.fromisoformat(header.document["created_at"]))
    except (KeyError, TypeError, ValueError):
        return None


def _build(request: RecoverRequest, staging: Path, handle: BinaryIO, header: CopyHeader,
           say: Callable[[str], None]) -> RecoverResult:
    passphrase = passphrase_from_environment()
    master_key = create_master_key(staging / KEYS_DIR, passphrase)
    fingerprint = _write_keys(staging / KEYS_DIR, master_key, request)
    embedded = not request.database_url
    final_url = sqlite_url(request.home / CATALOG_FILE) if embedded else request.database_url
    staged_url = sqlite_url(staging / CATALOG_FILE) if embedded else request.database_url
    if not embedded:
        _check_database_is_free(request.database_url)
    migrate(staged_url)
    catalog = Catalog(staged_url)
    try:
        with catalog.session() as session:
            loaded = load_lines(_payload_lines(handle, header, request.keys), session)
            recovered, needing = _fix_stores(session, request, master_key)
            audit.record(session, "cli", "catalog.recover", recovered,
                         copy=header.document.get("created_at"), url=request.source_url,
                         counts=loaded.counts)
        say(f"loaded {_summary(loaded.counts)}")
    except (DamagedCopy, DamagedDump) as problem:
        raise OperationError(f"the catalog copy cannot be loaded: {problem}") from None
    except sa.exc.IntegrityError as error:
        raise OperationError("the catalog copy cannot be loaded: its rows contradict each "
                             f"other ({' '.join(str(error.orig).split())[:200]})") from None
    finally:
        catalog.dispose()
    if embedded:
        (staging / CATALOG_FILE).chmod(PRIVATE_FILE_MODE)
    config = _config(request.home, final_url, loaded)
    write_config(config, staging)
    return RecoverResult(
        home=request.home, copy_key="", copy_created_at=loaded.created_at,
        counts=loaded.counts, recovered_store=recovered,
        stores_needing_keys=needing, ca_fingerprint=fingerprint, database_url=final_url,
        master_key_source="passphrase" if passphrase else "file")


def _payload_lines(handle: BinaryIO, header: CopyHeader, keys: RecoveryKeys) -> Iterator[bytes]:
    reader = IteratorReader(open_payload(handle, header, keys.escrow))
    try:
        with gzip.GzipFile(fileobj=reader, mode="rb") as lines:
            yield from lines
    except (OSError, EOFError, zlib.error) as error:
        raise DamagedDump(f"the copy's payload is not valid gzip: {error}") from None


def _write_keys(keys_dir: Path, master_key: MasterKey, request: RecoverRequest) -> str:
    """Write the kit's keys (re-encrypted under the new master key) and a new server
    certificate from the kit's CA, in :class:`KeyStore`'s layout; return the CA
    fingerprint."""
    kit = request.keys
    server_key, server_certificate = ca.issue_server_certificate(
        kit.ca_key, kit.ca_certificate,
        *keystore.server_names(request.hostnames, request.ip_addresses))
    contents = {
        keystore.ESCROW_KEY: _encrypted(master_key, keystore.ESCROW_KEY, kit.escrow),
        keystore.ESCROW_PUBLIC: public_key_pem(kit.escrow.public_key()),
        keystore.SIGNING_KEY: _encrypted(master_key, keystore.SIGNING_KEY, kit.signing),
        keystore.SIGNING_PUBLIC: public_key_pem(kit.signing.public_key()),
        keystore.CA_KEY: _encrypted(master_key, keystore.CA_KEY, kit.ca_key),
        keystore.CA_CERTIFICATE: ca.certificate_pem(kit.ca_certificate),
        keystore.SERVER_KEY: _encrypted(master_key, keystore.SERVER_KEY, server_key),
        keystore.SERVER_CERTIFICATE: ca.certificate_pem(server_certificate),
    }
    for retired in kit.retired_signing:  # keeps reports signed before a rotation checkable
        name = (f"{keystore.RETIRED_DIR}/{keystore.RETIRED_SIGNING_PREFIX}"
                f"{signing_fingerprint(retired)}{keystore.RETIRED_SIGNING_SUFFIX}")
        contents[name] = public_key_pem(retired)
    for name, data in contents.items():
        mode = PRIVATE_FILE_MODE if name.endswith(".enc") else PUBLIC_FILE_MODE
        ensure_private_directory((keys_dir / name).parent)
        write_new_file(keys_dir / name, data, mode)
    written = KeyStore(keys_dir, master_key)
    # read back what a daemon will read: a mistake here must fail now, not at the first drill
    if written.escrow_private_key().public_key().public_bytes_raw() != \
            kit.escrow.public_key().public_bytes_raw():
        raise OperationError("the escrow key did not read back as written")
    written.signing_private_key()
    written.ca_private_key()
    return written.ca_fingerprint()


def _encrypted(master_key: MasterKey, name: str, key) -> bytes:
    # the context KeyStore documents for each key file: keystore:<file name>
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return master_key.encrypt(der, f"keystore:{name}")


def _check_database_is_free(url: str) -> None:
    """A PostgreSQL catalog to recover into must be new, or migrated and empty."""
    catalog = Catalog(url)
    try:
        if schema_version(catalog.engine) is None:
            return
        with catalog.read_session() as session:
            used = any(session.scalar(sa.select(sa.func.count()).select_from(model))
                       for model in (Department, Store, System))
    except sa.exc.DBAPIError as error:
        raise OperationError(f"cannot use the catalog database {display_url(url)}: "
                             f"{' '.join(str(error.orig).split())}") from None
    finally:
        catalog.dispose()
    if used:
        raise UserError(f"the catalog database {display_url(url)} already holds a centre: "
                        "recover into a new, empty database")


def _fix_stores(session, request: RecoverRequest, master_key: MasterKey
                ) -> tuple[str, list[str]]:
    """Give the store recovered from its keys; return its name and the S3 stores that
    still need theirs."""
    rows = list(session.scalars(sa.select(Store).order_by(Store.name)))
    if request.store_name:
        matches = [row for row in rows if row.name == request.store_name]
        if not matches:
            raise UserError(f"the catalog copy has no store named {request.store_name!r} "
                            f"(it has: {', '.join(row.name for row in rows) or 'none'})")
    else:
        wanted = request.source_url.rstrip("/")
        matches = [row for row in rows if row.url.rstrip("/") == wanted]
        if len(matches) != 1:
            raise UserError(
                f"the catalog copy names {'no' if not matches else 'more than one'} store "
                f"at {wanted} (its stores: {', '.join(row.name for row in rows)}): say "
                "which one this is with --store NAME")
    source = matches[0]
    if source.kind == "s3" and request.secret_access_key is None:
        # read through another way (a local mirror, say): its keys are to be re-entered
        needing = [row.name for row in rows if row.kind == "s3"]
        return source.name, needing
    if source.kind == "s3":
        source.access_key_id = request.access_key_id
        source.secret_encrypted = master_key.encrypt(
            request.secret_access_key.reveal().encode(), secret_context(source.name))
        if request.source_endpoint and request.source_endpoint != source.endpoint:
            log.info("store %s: endpoint %s -> %s", source.name, source.endpoint,
                     request.source_endpoint)
            source.endpoint = request.source_endpoint
    if request.store_name and source.url.rstrip("/") != request.source_url.rstrip("/"):
        source.url = request.source_url
    needing = [row.name for row in rows if row.kind == "s3" and row is not source]
    return source.name, needing


def _config(home: Path, database_url: str, loaded: LoadResult) -> Config:
    settings = {name: value for name, value in loaded.settings.items()
                if name in _KNOWN_SETTINGS and name in Config.__dataclass_fields__}
    dropped = sorted(set(loaded.settings) - set(settings))
    if dropped:
        log.warning("settings in the catalog copy that this drd does not know were left "
                    "out: %s", ", ".join(dropped))
    return Config(home=home, database_url=database_url, **settings)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items())

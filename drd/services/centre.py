"""Creating a DR centre's home (``drd init``) and opening what it holds.

A home is initialised all or nothing: keys and the embedded catalog are made in a
staging directory inside the home and moved into place only when everything worked;
the configuration file is written last, and its presence is what marks the home as
initialised. A PostgreSQL catalog migrates in one transaction.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from drd.catalog import Catalog, migrate
from drd.catalog.engine import display_url
from drd.config import (
    CATALOG_FILE,
    KEYS_DIR,
    Config,
    is_initialised,
    load_config,
    sqlite_url,
    write_config,
)
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import (
    MasterKey,
    create_master_key,
    load_master_key,
    passphrase_from_environment,
)
from drd.errors import UserError
from drd.fsutil import ensure_private_directory
from drd.secrets import url_password


@dataclass(frozen=True, repr=False)
class InitResult:
    home: Path
    created: bool
    database_url: str
    schema_revision: str
    ca_fingerprint: str
    master_key_source: str  # "file" or "passphrase"

    def __repr__(self) -> str:
        return f"InitResult({self.as_dict()!r})"

    def as_dict(self) -> dict:
        return {
            "home": str(self.home),
            "created": self.created,
            "database_url": display_url(self.database_url),
            "schema_revision": self.schema_revision,
            "ca_fingerprint": self.ca_fingerprint,
            "master_key": self.master_key_source,
        }


def initialise(home: Path, database_url: str | None = None,
               hostnames: tuple[str, ...] = (), ip_addresses: tuple[str, ...] = ()
               ) -> InitResult:
    """Create (or, when it exists, upgrade) a centre's home.

    A new home gets a master key (from ``DRD_MASTER_PASSPHRASE`` or a systemd
    credential when given, else a random 0600 key file), the escrow and signing keys,
    the CA with a server certificate, the configuration and a migrated catalog.
    An existing home only has its catalog migrated to the current schema.

    Raises :class:`UserError` when the home holds keys but no configuration (a
    damaged or foreign directory), cannot be created, or ``database_url`` carries a
    password; :class:`~drd.errors.OperationError` when the database cannot be
    reached. On any failure nothing new is left behind.
    """
    if database_url and url_password(database_url):
        raise UserError(
            "the database URL carries a password, which would be kept in drd.yaml in the "
            "clear: drop it from the URL and put it in libpq's password file (~/.pgpass, "
            "or the file $PGPASSFILE names), which psycopg reads"
        )
    if is_initialised(home):
        config = load_config(home)
        if database_url and database_url != config.database_url:
            raise UserError(
                f"{home} is already initialised with another catalog "
                f"({display_url(config.database_url)}); edit {home}/drd.yaml to move it"
            )
        revision = migrate(config.database_url)
        keystore = KeyStore(config.keys_dir, None)
        return InitResult(home, False, config.database_url, revision,
                          keystore.ca_fingerprint(), _master_key_source(config.keys_dir))

    if (home / KEYS_DIR).exists() or (home / CATALOG_FILE).exists():
        raise UserError(
            f"{home} holds keys or a catalog but no drd.yaml: it looks like a damaged "
            "home; move it away or choose another --home"
        )
    home_existed = home.exists()
    staging = home / f".init-{secrets.token_hex(4)}"
    try:
        ensure_private_directory(home)
        ensure_private_directory(staging)
    except OSError as error:
        raise UserError(f"cannot create the home {home}: {error.strerror}") from None
    moved: list[tuple[Path, Path]] = []
    try:
        passphrase = passphrase_from_environment()
        master_key = create_master_key(staging / KEYS_DIR, passphrase)
        keystore = KeyStore(staging / KEYS_DIR, master_key)
        keystore.create(hostnames=hostnames, ip_addresses=ip_addresses)
        final = Config(home=home, database_url=database_url or "")
        embedded = final.database_url == sqlite_url(home / CATALOG_FILE)
        staged_url = sqlite_url(staging / CATALOG_FILE) if embedded else final.database_url
        revision = migrate(staged_url)
        fingerprint = keystore.ca_fingerprint()
        if embedded:
            (staging / CATALOG_FILE).chmod(0o600)
            moved.append(_move(staging / CATALOG_FILE, home / CATALOG_FILE))
        moved.append(_move(staging / KEYS_DIR, home / KEYS_DIR))
        write_config(final)
    except BaseException:
        for source, target in reversed(moved):
            target.rename(source)
        shutil.rmtree(staging, ignore_errors=True)
        if not home_existed and not any(home.iterdir()):
            home.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return InitResult(home, True, final.database_url, revision, fingerprint,
                      "passphrase" if passphrase else "file")


def _move(source: Path, target: Path) -> tuple[Path, Path]:
    source.rename(target)
    return source, target


def _master_key_source(keys_dir: Path) -> str:
    return "file" if (keys_dir / "master.key").exists() else "passphrase"


def open_master_key(config: Config) -> MasterKey:
    """The centre's master key, from its file or from the passphrase in the environment."""
    return load_master_key(config.keys_dir, passphrase_from_environment())


def open_catalog(config: Config) -> Catalog:
    """The centre's catalog, checked to be reachable and at the current schema."""
    catalog = Catalog(config.database_url)
    catalog.check()
    return catalog

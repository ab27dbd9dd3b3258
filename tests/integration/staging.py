"""A centre with one enrolled system and a real restic repository, for the daemon's tests.

:func:`make_stage` builds, in this process and without an agent: a centre home
(``drd init``'s service), stores (each a bucket on a real SeaweedFS server, or a
directory), a policy over them, and a system ``fs1`` of department ``parks`` enrolled
directly in the catalog with a random restic password sealed to the escrow key, as
enrollment leaves it. :meth:`Stage.backup` runs real restic against **one** store's copy
of the repository (as the fan-out would with the other stores down), and
:meth:`Stage.report` records the snapshot as the agent would report it; then
:meth:`Stage.copy_all` makes the other stores identical (what a healthy fan-out does).

The repository of ``fs1`` in store S is ``<S's url>/parks/fs1`` -- what the daemon's
:func:`drd.services.repositories.open_repositories` opens.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from drd.catalog import Catalog
from drd.catalog.models import Department, Snapshot, System
from drd.config import Config, load_config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.crypto.seal import password_context, seal
from drd.devstores import SeaweedServer
from drd.recorded.catalog import record_bytes
from drd.recorded.keys import CONFIG
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.agents import AgentIdentity
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.services.protocol import SnapshotReport, StoreCopyReport
from drd.services.repositories import open_repository_store
from drd.services.snapshots import record_report
from drd.stores.base import Store
from drd.stores.url import StoreSpec

SYSTEM = "fs1"
DEPARTMENT = "parks"
POLICY = "daemon-test"


@dataclass
class StoreSetup:
    """One store of the stage: its name, region, and the server it lives on (or None)."""

    name: str
    region: str
    server: SeaweedServer | None = None
    bucket: str = ""
    directory: Path | None = None
    object_lock: bool = False


@dataclass
class Stage:
    home: Path
    config: Config
    catalog: Catalog
    master_key: MasterKey
    keystore: KeyStore
    restic: Restic
    password: Secret = field(repr=False)
    stores: dict[str, StoreSetup]
    source: Path
    system: str = SYSTEM
    department: str = DEPARTMENT
    agent_key: object = field(default=None, repr=False)
    _opened: dict = field(default_factory=dict, repr=False)

    def store_row(self, name: str):
        (row,) = store_service.store_rows(self.catalog, [name])
        return row

    def raw_store(self, name: str, **options) -> Store:
        """Store ``name`` rooted at fs1's repository, opened with the centre's keys.

        Opened once per name and options (a boto3 client costs about 0.25 s to make).
        """
        key = (name, tuple(sorted(options.items())))
        if key not in self._opened:
            self._opened[key] = open_repository_store(self.store_row(name), self.department,
                                                      self.system, self.master_key,
                                                      **options)
        return self._opened[key]

    def repository(self, name: str) -> Repository:
        """fs1's repository in store ``name``, as plain restic opens it."""
        url, env = self.raw_store(name).restic_location()
        return Repository(url=url, password=self.password, env=env, display=f"{name}/fs1")

    def init(self, name: str) -> None:
        """``restic init`` fs1's repository in store ``name``, and record its config's
        digest as enrollment does from the agent's request (:mod:`drd.recorded`)."""
        self.restic.init(self.repository(name))
        self.record(CONFIG, self.raw_store(name).read(CONFIG))

    def system_id(self) -> int:
        with self.catalog.session() as session:
            return session.scalar(sa.select(System.id).where(System.name == self.system))

    def record(self, key: str, data: bytes, source: str = "agent at enrollment") -> None:
        """Record ``data`` as what every copy of ``key`` must be (:mod:`drd.recorded`)."""
        with self.catalog.session() as session:
            record_bytes(session, self.system_id(), key, data, source=source, replace=True)

    def write_files(self, count: int = 40, size: int = 20_000, seed: str = "a") -> None:
        """Write ``count`` files of incompressible bytes into the source tree."""
        for index in range(count):
            folder = self.source / f"d{index % 5}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{seed}{index}.bin").write_bytes(secrets.token_bytes(size))

    def backup(self, store: str, *, time: dt.datetime | None = None) -> str:
        """Back up the source into store ``store`` alone; return the snapshot's full id."""
        summary = self.restic.backup(self.repository(store), [self.source],
                                     host=self.system, time=time)
        return summary.snapshot_id

    def report(self, snapshot_id: str, complete: dict[str, bool] | None = None, *,
               now: dt.datetime | None = None, files: int = 0, size: int = 0,
               tags: tuple[str, ...] = (), confirmed: bool = True) -> None:
        """Record ``snapshot_id`` as the agent reports it (default: complete everywhere;
        ``files`` and ``size`` are the agent's counts of what restic saved).

        A report is recorded ``unconfirmed``; with ``confirmed`` (the default) it is then
        made ``active`` with the copies as reported, which is what the daemon's
        confirmation step does once the stores hold it -- for tests about other things,
        which may copy it to the other stores only later. ``confirmed=False`` leaves it as
        the report alone does."""
        complete = complete if complete is not None else {name: True for name in self.stores}
        first = next(name for name, done in complete.items() if done)
        (snapshot,) = [s for s in self.restic.snapshots(self.repository(first))
                       if s.id == snapshot_id]
        with self.catalog.session() as session:
            system_id = session.scalar(sa.select(System.id).where(System.name == self.system))
        identity = AgentIdentity(system_id=system_id, system=self.system,
                                 department=self.department, token_id=0)
        record_report(self.catalog, identity, SnapshotReport(
            report_id=str(uuid.uuid4()), snapshot_id=snapshot.id, time=snapshot.time,
            hostname=snapshot.hostname, paths=list(snapshot.paths), tags=list(tags),
            tree=snapshot.tree, files=files, bytes=size, duration_seconds=1.0,
            stores={name: StoreCopyReport(complete=done, missing_objects=0 if done else 1)
                    for name, done in complete.items()}), now=now)
        if confirmed:
            with self.catalog.session() as session:
                session.execute(sa.update(Snapshot).where(
                    Snapshot.system_id == system_id, Snapshot.restic_id == snapshot.id,
                    Snapshot.status == "unconfirmed").values(status="active"))

    def sign_manifest(self, snapshot_id: str, sample_percent: float = 100) -> dict:
        """Hash the source tree, sign the manifest with an agent key (made and enrolled
        on first use) and record it for ``snapshot_id``, as the agent does after a
        backup. Returns the manifest."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from agents.manifest import build_manifest, sign_manifest, walk_sources
        from drd.crypto.pem import public_key_pem
        from drd.services.snapshots import store_manifest

        if self.agent_key is None:
            self.agent_key = Ed25519PrivateKey.generate()
            with self.catalog.session() as session:
                row = session.scalar(sa.select(System).where(System.name == self.system))
                row.agent_public_key = public_key_pem(self.agent_key.public_key()).decode()
        digests = walk_sources([str(self.source)], [], sample_percent)
        manifest = build_manifest(system=self.system, snapshot_id=snapshot_id,
                                  run_id=str(uuid.uuid4()), created=dt.datetime.now(dt.UTC),
                                  kind="paths", sources=[str(self.source)], excludes=[],
                                  sample_percent=sample_percent, digests=digests)
        signed = sign_manifest(self.agent_key, manifest)
        with self.catalog.session() as session:
            system_id = session.scalar(sa.select(System.id).where(System.name == self.system))
        identity = AgentIdentity(system_id=system_id, system=self.system,
                                 department=self.department, token_id=0)
        store_manifest(self.catalog, identity, snapshot_id, manifest, signed.signature_b64)
        return manifest

    def copy_all(self, source: str) -> int:
        """Copy every object of store ``source``'s repository that another store lacks."""
        copied = 0
        origin = self.raw_store(source)
        for name in self.stores:
            if name == source:
                continue
            target = self.raw_store(name)
            target.create_if_missing()
            present = {info.key for info in target.list()}
            for info in origin.list():
                if info.key not in present and not info.key.startswith("locks/"):
                    target.put(info.key, b"".join(origin.get(info.key)))
                    copied += 1
        return copied

    def keys(self, name: str) -> dict[str, int]:
        """Every object key (with its size) of fs1's repository in store ``name``."""
        return {info.key: info.size for info in self.raw_store(name).list()
                if not info.key.startswith("locks/")}


def make_stage(tmp_path: Path, *, stores: list[StoreSetup], database_url: str | None = None,
               policy_extra: str = "", restic_binary: str = "restic",
               min_copies: int = 2, retention: str = "{keep_last: 10}",
               object_lock_days: int = 0) -> Stage:
    """A centre with ``stores`` registered, a policy over them and ``fs1`` enrolled.

    S3 stores need ``server`` (a running SeaweedFS) and a ``bucket`` (created here, with
    Object Lock when ``object_lock``); file stores a ``directory``.
    """
    home = tmp_path / "centre"
    initialise(home, database_url or f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    config.restic_binary = restic_binary
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    keystore = KeyStore(config.keys_dir, master_key)
    shared = False
    for setup in stores:
        if setup.server is not None:
            spec = StoreSpec(name=setup.name, url=f"s3://{setup.bucket}",
                             endpoint=setup.server.endpoint, region=setup.region,
                             object_lock=setup.object_lock)
            # systems' own keys (drd.stores.credentials) on SeaweedFS need Object Lock in
            # the policy; the daemon's tests on unlocked buckets share the store's keys
            brokered = setup.object_lock and object_lock_days > 0
            shared = shared or not brokered
            store_service.add_store(catalog, master_key, spec, setup.server.access_key,
                                    setup.server.secret,
                                    credentials="auto" if brokered else "shared")
        else:
            setup.directory.mkdir(parents=True, exist_ok=True)
            shared = True
            store_service.add_store(catalog, master_key, StoreSpec(
                name=setup.name, url=f"file://{setup.directory}", region=setup.region),
                None, None)
    source = tmp_path / "source"
    source.mkdir()
    lock = f"object_lock_days: {object_lock_days}\n" if object_lock_days else ""
    if shared:
        lock += "allow_shared_credentials: true\n"
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
policy: {POLICY}
schedule: "0 3 * * *"
sources:
  - path: {source}
stores: [{", ".join(setup.name for setup in stores)}]
min_copies: {min_copies}
retention: {retention}
{lock}rpo: 2d
rto: 1h
{policy_extra}""")
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    password = Secret(secrets.token_urlsafe(32))
    sealed = seal(keystore.escrow_public_key(), password.reveal().encode(),
                  password_context(SYSTEM))
    with catalog.session() as session:
        department = Department(name=DEPARTMENT)
        session.add(department)
        session.flush()
        from drd.catalog.models import Policy
        policy_id = session.scalar(sa.select(Policy.id).where(Policy.name == POLICY))
        session.add(System(name=SYSTEM, department_id=department.id, policy_id=policy_id,
                           hostname=SYSTEM, status="enrolled",
                           enrolled_at=dt.datetime.now(dt.UTC), sealed_password=sealed))
    return Stage(home=home, config=config, catalog=catalog, master_key=master_key,
                 keystore=keystore, restic=Restic(restic_binary), password=password,
                 stores={setup.name: setup for setup in stores}, source=source)

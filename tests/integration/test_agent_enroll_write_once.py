"""An enrollment retried on write-once stores: the sealed password is stored once.

A real centre (uvicorn in a thread, as in tests/integration/test_agent_centre.py) with two
SeaweedFS Object Lock stores added with the default broker, so the agent writes with keys
of its own, create-only (``S3Store(overwritable=...)``): a second put of a key with other
bytes is refused. The first ``drd-agent enroll`` dies after it has put
``drd/escrow/password.sealed`` into every store, before the centre answers; the retry
must put the very same bytes (sealing again would make new ones, refused for good next to
a locked copy) and send them to the centre, so that the digest the catalog records, the
catalog's sealed password and every store's copy are one blob that unseals to the agent's
password.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from agents.assignment import parse_assignment
from agents.client import CentreUnreachable
from agents.enroll import ESCROW_KEY, enroll
from agents.home import AgentHome
from agents.service import fanout_target
from drd.api.app import create_app
from drd.catalog.models import RecordedObject, System
from drd.config import load_config
from drd.crypto.keystore import KeyStore
from drd.crypto.seal import password_context, unseal
from drd.restic import Restic
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.stores.url import StoreSpec
from tests.integration.test_agent_centre import Centre, FailOnce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = {"dc-a": "region-a", "region-b": "region-b"}
PREFIX = "city"


@pytest.fixture
def centre(tmp_path: Path, monkeypatch, seaweed):
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    servers = dict(zip(STORES, seaweed(len(STORES)), strict=True))
    home = tmp_path / "centre"
    initialise(home, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    for name, region in STORES.items():  # the default broker: systems get keys of their own
        server = servers[name]
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"s3://drd-{name}/{PREFIX}", endpoint=server.endpoint,
            region=region, object_lock=True), server.access_key, server.secret)
    source = tmp_path / "share"
    source.mkdir()
    (source / "a.txt").write_text("a file\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
policy: agent-test
schedule: "0 3 * * *"
sources:
  - path: {source}
stores: [{", ".join(STORES)}]
min_copies: 2
retention: {{keep_daily: 7}}
object_lock_days: 1
rpo: 2d
rto: 1h
""")
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    keystore = KeyStore(config.keys_dir, master_key)
    served = Centre(home, catalog, keystore, create_app(catalog, master_key, config),
                    tmp_path / "vault")
    served.start()
    served.servers = servers
    yield served
    served.stop()
    catalog.dispose()


def stored_copy(centre, store: str) -> bytes:
    """The sealed password in ``store``, read with the store's own keys."""
    server = centre.servers[store]
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key)
    key = f"{PREFIX}/parks/fs1/{ESCROW_KEY}"
    versions = client.list_object_versions(Bucket=f"drd-{store}", Prefix=key)["Versions"]
    assert len(versions) == 1, versions  # put once: the retry added no version
    return client.get_object(Bucket=f"drd-{store}", Key=key)["Body"].read()


def test_an_enrollment_retried_on_write_once_stores_stores_one_sealed_password(
        centre, tmp_path: Path, restic_binary: str) -> None:
    home = AgentHome(tmp_path / "agent")
    token = centre.token()
    restic = Restic(restic_binary, cache_dir=tmp_path / "cache")
    transport = FailOnce()  # the first POST /v1/agent/enroll never reaches the centre
    with pytest.raises(CentreUnreachable):
        enroll(home, centre.url, token, restic=restic, target_factory=fanout_target,
               transport=transport)
    assert not home.is_enrolled()
    kept = home.pending_dir / "password.sealed"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    first = {name: stored_copy(centre, name) for name in STORES}
    assert set(first.values()) == {kept.read_bytes()}

    result = enroll(home, centre.url, token, restic=restic, target_factory=fanout_target,
                    transport=transport)
    assert result.resumed and result.repository == "reused" and home.is_enrolled()
    assert home.pending() is None
    assignment = parse_assignment(home.load_assignment())
    for store in assignment.stores:  # the agent's own create-only keys, not the store's
        assert store.write_once
        assert store.access_key_id != centre.servers[store.name].access_key

    with centre.catalog.read_session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        recorded = session.scalar(sa.select(RecordedObject).where(
            RecordedObject.system_id == system.id, RecordedObject.key == ESCROW_KEY))
        sealed = system.sealed_password
    for name in STORES:
        copy = stored_copy(centre, name)
        assert copy == first[name] == sealed
        assert (hashlib.sha256(copy).hexdigest(), len(copy)) == (recorded.sha256,
                                                                 recorded.size)
    password = unseal(centre.keystore.escrow_private_key(), sealed, password_context("fs1"))
    assert password.decode() == home.password().reveal()


def test_a_kept_blob_is_reused_only_for_the_escrow_key_it_was_sealed_to(tmp_path: Path):
    home = AgentHome(tmp_path / "agent")
    home.ensure()
    home.pending_dir.mkdir(mode=0o700)
    old_key, new_key = b"\x01" * 32, b"\x02" * 32
    assert home.pending_sealed_password(old_key) is None  # nothing sealed yet
    home.keep_pending_sealed_password(b"sealed to the old key", old_key)
    assert home.pending_sealed_password(old_key) == b"sealed to the old key"
    assert home.pending_sealed_password(new_key) is None  # the centre's key changed
    home.keep_pending_sealed_password(b"sealed to the new key", new_key)
    assert home.pending_sealed_password(new_key) == b"sealed to the new key"
    assert home.pending_sealed_password(old_key) is None
    # a crash between the two writes leaves no blob beside another key's name
    (home.pending_dir / "password.sealed").unlink()
    assert home.pending_sealed_password(new_key) is None
    assert stat.S_IMODE((home.pending_dir / "password.sealed-to").stat().st_mode) == 0o600

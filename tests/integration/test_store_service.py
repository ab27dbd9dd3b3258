"""Registering and checking stores (drd.services.stores) on a real catalog.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture) with real filesystem stores
and a real S3 server (SeaweedFS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from drd.catalog import Catalog, migrate
from drd.catalog.models import AuditEntry
from drd.catalog.models import Store as StoreRow
from drd.crypto.masterkey import MasterKey
from drd.errors import UserError
from drd.secrets import Secret
from drd.services import stores
from drd.stores.url import StoreSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(database_url: str) -> Catalog:
    migrate(database_url)
    with Catalog(database_url) as catalog:
        yield catalog


def test_an_s3_store_is_registered_with_its_secret_encrypted(catalog: Catalog, seaweed
                                                             ) -> None:
    (server,) = seaweed(1)
    master_key = MasterKey.generate()
    spec = StoreSpec("dc-a", "s3://drd-service/city", endpoint=server.endpoint,
                     region="region-a", object_lock=True)
    result = stores.add_store(catalog, master_key, spec, server.access_key,
                              Secret(server.secret_key))
    assert result.object_lock is True
    (row,) = stores.store_rows(catalog)
    assert row.secret_encrypted and server.secret_key.encode() not in row.secret_encrypted
    assert master_key.decrypt(row.secret_encrypted, "store:dc-a").decode() == server.secret_key
    assert server.secret_key not in repr(stores.describe(row))
    with catalog.session() as session:
        (entry,) = session.scalars(sa.select(AuditEntry)).all()
    assert (entry.action, entry.target) == ("store.add", "dc-a")
    assert server.secret_key not in repr(entry.details)
    (health,) = stores.check_stores([row], master_key)
    assert health.ok and health.check.object_lock


def test_a_store_that_fails_its_check_is_not_registered(catalog: Catalog, seaweed) -> None:
    (server,) = seaweed(1)
    spec = StoreSpec("dc-a", "s3://drd-service/city", endpoint=server.endpoint, region="r")
    with pytest.raises(Exception) as refused:
        stores.add_store(catalog, MasterKey.generate(), spec, server.access_key,
                         Secret("not-the-secret-key"))
    assert refused.value.exit_status == 1
    assert stores.store_rows(catalog) == []


def test_one_bad_store_does_not_stop_the_check_of_the_others(catalog: Catalog,
                                                             tmp_path: Path) -> None:
    master_key = MasterKey.generate()
    for name in ("fs-a", "fs-b"):
        stores.add_store(catalog, master_key, StoreSpec(name, f"file://{tmp_path / name}",
                                                        region="r"), None, None)
    with catalog.session() as session:  # a row whose secret another centre encrypted
        session.add(StoreRow(name="foreign", kind="s3", url="s3://foreign/p",
                             endpoint="http://127.0.0.1:9", region="r", object_lock=False,
                             access_key_id="AKID",
                             secret_encrypted=MasterKey.generate().encrypt(b"x",
                                                                           "store:foreign")))
    (tmp_path / "fs-b").rename(tmp_path / "fs-b-gone")
    health = {h.name: h for h in stores.check_stores(stores.store_rows(catalog), master_key)}
    assert health["fs-a"].ok
    assert not health["fs-b"].ok and "fs-b" in health["fs-b"].error
    assert not health["foreign"].ok and "decrypted" in health["foreign"].error


def test_names_and_duplicates_are_refused_before_anything_is_written(
        catalog: Catalog, tmp_path: Path) -> None:
    master_key = MasterKey.generate()
    with pytest.raises(UserError, match="not a valid"):
        stores.add_store(catalog, master_key, StoreSpec("Bad_Name", f"file://{tmp_path}/x",
                                                        region="r"), None, None)
    stores.add_store(catalog, master_key, StoreSpec("fs", f"file://{tmp_path}/x", region="r"),
                     None, None)
    with pytest.raises(UserError, match="exists already"):
        stores.add_store(catalog, master_key, StoreSpec("fs", f"file://{tmp_path}/y",
                                                        region="r"), None, None)
    assert not (tmp_path / "y").exists()
    assert [row.name for row in stores.store_rows(catalog)] == ["fs"]

"""Keyed checks on real components: ``restic check`` of one SeaweedFS store alone, with the
escrowed password (audited, never logged), before and after a pack is corrupted."""

from __future__ import annotations

import logging
import secrets

import boto3
import pytest
import sqlalchemy as sa

from drd.catalog.models import AuditEntry
from drd.errors import UserError
from drd.keyed_check import run_keyed_check
from drd.services.alerts import list_alerts
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def keyed_check(stage, store: str):
    return run_keyed_check(stage.catalog, stage.master_key, stage.keystore, stage.config,
                           stage.system, store)


def test_keyed_check_passes_then_finds_a_corrupt_pack(tmp_path, seaweed, restic_binary,
                                                      caplog):
    caplog.set_level(logging.DEBUG)
    (server,) = seaweed(1)
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("dc-a", "region-a", server, "check-a"),
                               StoreSetup("far", "region-b", server, "check-b")])
    stage.init("dc-a")
    stage.write_files(10)
    stage.report(stage.backup("dc-a"))
    stage.copy_all("dc-a")

    with pytest.raises(UserError, match="no store named 'nope'"):
        keyed_check(stage, "nope")
    good = keyed_check(stage, "dc-a")
    assert good.ok and good.ran and good.errors == [], good.errors
    assert good.as_dict()["store"] == "dc-a"

    # bit rot: the smallest pack (the tree pack) replaced by as many random bytes
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="region-a",
                      aws_access_key_id=server.access_key,
                      aws_secret_access_key=server.secret_key)
    packs = [item for item in s3.list_objects_v2(Bucket="check-a",
                                                 Prefix="parks/fs1/data/")["Contents"]]
    pack = min(packs, key=lambda item: item["Size"])
    original = s3.get_object(Bucket="check-a", Key=pack["Key"])["Body"].read()
    s3.put_object(Bucket="check-a", Key=pack["Key"], Body=secrets.token_bytes(pack["Size"]))

    bad = keyed_check(stage, "dc-a")
    assert not bad.ok and bad.ran
    assert any("ciphertext verification failed" in line or "decrypting" in line
               for line in bad.errors), bad.errors
    (alert,) = list_alerts(stage.catalog)
    assert (alert.kind, alert.system, alert.store) == ("check_failed", "fs1", "dc-a")
    assert keyed_check(stage, "far").ok  # the other store alone is sound

    s3.put_object(Bucket="check-a", Key=pack["Key"], Body=original)
    assert keyed_check(stage, "dc-a").ok
    assert list_alerts(stage.catalog) == []

    with stage.catalog.session() as session:
        unseals = list(session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "escrow.unseal")))
    assert len(unseals) == 4
    assert {entry.details["reason"] for entry in unseals} == {"restic check on dc-a",
                                                              "restic check on far"}
    password = stage.password.reveal()
    argv_lines = [record.getMessage() for record in caplog.records
                  if record.getMessage().startswith("running (")]
    assert sum("'check'" in line for line in argv_lines) == 4  # every argv that ran is logged
    for record in caplog.records:
        assert password not in record.getMessage()
        assert password not in str(record.args)

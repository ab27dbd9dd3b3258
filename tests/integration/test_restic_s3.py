"""The restic runner against real restic and an S3 repository in SeaweedFS."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pytest

from drd.restic import (
    Repository,
    Restic,
    ResticRepositoryMissing,
    ResticStoreUnavailable,
    ResticWrongPassword,
)
from drd.secrets import Secret

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "s3-integration-password-51d0"


def s3_repository(server, bucket: str, prefix: str, *, secret_key: str | None = None,
                  password: str = PASSWORD) -> Repository:
    return Repository(
        url=Secret(f"s3:{server.endpoint}/{bucket}/{prefix}"),
        password=Secret(password),
        env={
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": Secret(secret_key or server.secret_key),
        },
        display=f"seaweed/{bucket}/{prefix}",
    )


def test_core_cycle_on_s3(seaweed, restic_binary: str, tmp_path: Path):
    (server,) = seaweed(count=1)
    restic = Restic(restic_binary, cache_dir=tmp_path / "cache")
    repository = s3_repository(server, "drd-test", "finance/web-1")
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n")
    (source / "sub" / "b.bin").write_bytes(os.urandom(1024 * 1024))

    with pytest.raises(ResticRepositoryMissing):
        restic.snapshots(repository)
    assert restic.init(repository)  # creates the bucket

    events = []
    first = restic.backup(repository, [source], tags=["s3"], progress=events.append)
    assert len(first.snapshot_id) == 64 and first.files_new == 2 and events
    dump = restic.backup_stdin(repository, b"CREATE TABLE t (x int);\n", "app.sql")

    snapshots = restic.snapshots(repository)
    assert {s.id for s in snapshots} == {first.snapshot_id, dump.snapshot_id}
    assert restic.snapshots(repository, tags=["s3"])[0].paths == (str(source),)

    target = tmp_path / "restored"
    restored = restic.restore(repository, first.snapshot_id, target, verify=True)
    assert restored.files_verified == 2
    restored_root = target / str(source).lstrip("/")
    for name in ("a.txt", "sub/b.bin"):
        assert filecmp.cmp(source / name, restored_root / name, shallow=False)

    assert restic.check(repository, read_data=True).ok

    forgotten = restic.forget(repository, [dump.snapshot_id], prune=True)
    assert forgotten.removed == (dump.snapshot_id,)
    assert [s.id for s in restic.snapshots(repository)] == [first.snapshot_id]
    assert restic.check(repository).ok

    wrong_password = s3_repository(server, "drd-test", "finance/web-1", password="nope-nope")
    with pytest.raises(ResticWrongPassword):
        restic.snapshots(wrong_password)

    wrong_key = s3_repository(server, "drd-test", "finance/web-1",
                              secret_key="not-the-secret-key-0000")
    with pytest.raises(ResticStoreUnavailable) as raised:
        restic.snapshots(wrong_key)
    text = str(raised.value) + " ".join(raised.value.stderr_tail)
    assert "not-the-secret-key-0000" not in text and server.secret_key not in text
    assert "seaweed/drd-test/finance/web-1" in str(raised.value)

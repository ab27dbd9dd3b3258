"""A system owner's commands through the API (``drd --server URL ...``), on real parts:
``drd serve`` over HTTPS with the centre's own CA, restic, two SeaweedFS servers.

The owner's ``drd`` runs in a subprocess with no centre home at all (a fresh $HOME, no
DRD_HOME): everything it learns comes through the API with the owner's token, and the
centre's CA is pinned by its fingerprint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from agents.client import ca_fingerprint
from drd.catalog.models import AuditEntry, Department
from tests.integration import test_restore
from tests.integration.test_restore import restored, tree_state
from tests.integration.test_serve import ca_context, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# the restore tests' stage (a tree backed up twice into two stores), built for this module
servers = test_restore.servers
stage = test_restore.stage


def centre_cli(stage, *args: str) -> subprocess.CompletedProcess:
    """``drd`` on the centre (its home), e.g. to make tokens."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    return subprocess.run([sys.executable, "-m", "drd.cli.main", "--home", str(stage.home),
                           *args], env=environment, capture_output=True, text=True,
                          timeout=120, check=True)


@pytest.fixture(scope="module")
def centre(stage, tmp_path_factory):
    with serving(stage.home, tmp_path_factory.mktemp("serve"), "--no-scheduler",
                 "--workers", "0", verify=ca_context(stage.home),
                 env={"DRD_RESTIC": stage.config.restic_binary}) as server:
        with stage.catalog.session() as session:
            session.add(Department(name="schools"))  # the stranger owns its systems
        server.fingerprint = ca_fingerprint((stage.home / "keys" / "ca.crt.pem").read_bytes())
        server.tokens = {
            role: centre_cli(stage, "token", "create", "--name", f"{role}-token", *options
                             ).stdout.strip()
            for role, options in {
                "owner": ("--role", "owner", "--system", "fs1"),
                "stranger": ("--role", "owner", "--department", "schools"),
                "operator": ("--role", "operator"),
            }.items()}
        yield server


def owner(centre, tmp_path: Path, *args: str, token: str = "owner", check: int | None = 0,
          fingerprint: str | None = None) -> subprocess.CompletedProcess:
    """``drd --server ...`` as a user with nothing of the centre on their machine."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    environment.update(HOME=str(tmp_path / "owner-home"), DRD_TOKEN=centre.tokens[token])
    result = subprocess.run(
        [sys.executable, "-m", "drd.cli.main", "--server", centre.base_url,
         "--ca-fingerprint", fingerprint or centre.fingerprint, *args],
        env=environment, capture_output=True, text=True, timeout=300)
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    return result


def test_an_owner_restores_through_the_api_byte_for_byte_and_is_audited(stage, centre,
                                                                          tmp_path):
    target = tmp_path / "restored"
    summary = json.loads(owner(centre, tmp_path, "restore", "fs1", "--target", str(target),
                               "--json").stdout)
    assert summary["snapshot"] == stage.new and summary["store"] == "dc-a"
    assert summary["target"] == str(target)
    assert tree_state(restored(stage, target)) == stage.new_state
    link = restored(stage, target) / "etc-link"
    assert link.is_symlink() and os.readlink(link) == "/etc"
    assert os.listdir(target) == [stage.source.parts[1]]  # no staging left behind
    with stage.catalog.session() as session:
        actors = session.scalars(sa.select(AuditEntry.actor).where(
            AuditEntry.action == "system.restore")).all()
    assert "token:owner-token" in actors
    # the centre's scratch copy goes once the stream ended (just after the last byte)
    deadline = time.monotonic() + 10
    while any((stage.home / "restores").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any((stage.home / "restores").iterdir())


def test_an_owner_restores_an_older_snapshot_and_one_folder(stage, centre, tmp_path):
    between = (stage.times[0] + (stage.times[1] - stage.times[0]) / 2).isoformat()
    target = tmp_path / "older"
    summary = json.loads(owner(centre, tmp_path, "restore", "fs1", "--at", between,
                               "--target", str(target), "--json").stdout)
    assert summary["snapshot"] == stage.old
    assert tree_state(restored(stage, target)) == stage.old_state
    folder = tmp_path / "folder"
    owner(centre, tmp_path, "restore", "fs1", "--include", str(stage.source / "docs" / "deep"),
          "--target", str(folder))
    assert set(tree_state(restored(stage, folder))) == {
        "docs", "docs/deep", "docs/deep/er", "docs/deep/er/data.bin", "docs/deep/notes.md",
        "docs/deep/new.txt"}


def test_an_owner_sees_status_and_snapshots_and_asks_for_a_backup(stage, centre, tmp_path):
    status = json.loads(owner(centre, tmp_path, "status", "--json").stdout)
    assert [system["name"] for system in status["systems"]] == ["fs1"]
    assert status["verdict"] in ("ok", "warning", "critical")
    table = owner(centre, tmp_path, "status").stdout
    assert "fs1" in table and "parks" in table
    snapshots = json.loads(owner(centre, tmp_path, "snapshots", "fs1", "--json").stdout)
    assert [snapshot["id"] for snapshot in snapshots] == [stage.old, stage.new]
    assert json.loads(owner(centre, tmp_path, "snapshots", "--json").stdout) == snapshots
    said = owner(centre, tmp_path, "backup-now", "fs1").stderr
    assert "backup of fs1 requested" in said


def test_what_the_token_may_not_do_is_refused_and_nothing_is_written(stage, centre,
                                                                     tmp_path):
    target = tmp_path / "never"
    refused = owner(centre, tmp_path, "restore", "fs1", "--target", str(target),
                    token="operator", check=2)
    assert "may not restore" in refused.stderr
    refused = owner(centre, tmp_path, "restore", "fs1", "--target", str(target),
                    token="stranger", check=2)
    assert "may not see" in refused.stderr
    assert not target.exists()
    assert owner(centre, tmp_path, "snapshots", "fs1", token="stranger", check=2).returncode
    wrong = owner(centre, tmp_path, "status", fingerprint="0" * 64, check=2)
    assert "not the one of --ca-fingerprint" in wrong.stderr
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")
    assert "not empty" in owner(centre, tmp_path, "restore", "fs1", "--target", str(busy),
                                check=2).stderr
    assert os.listdir(busy) == ["keep.txt"]
    assert "works on the centre's home" in owner(centre, tmp_path, "store", "list",
                                                 check=2).stderr

"""``drd restore`` and ``drd-agent restore`` on real components: restic, two SeaweedFS
servers (one store on each), the real commands in subprocesses.

One module-wide stage: a tree with files, nested directories, a symbolic link to
``/etc``, an empty file and a file with odd characters in its name is backed up, changed
and backed up again (an hour apart); each test restores into a directory of its own and
compares the restored tree with the source as it was (names, types, contents, link
targets, modes). The test that stops a store's server runs last.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import secrets
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from agents.home import AgentConfig, AgentHome, identity_key_pem
from drd.catalog.models import AuditEntry, System
from drd.catalog.models import Store as StoreRow
from drd.cli.main import main
from drd.crypto.pem import public_key_pem
from drd.devstores import start_many_in
from drd.secrets import Secret
from drd.services.agents import AgentIdentity, assignment_for
from drd.services.restore import RestoreInterrupted, RestoreRequest
from drd.services.restore.centre import (
    load_snapshots,
    policy_stores,
    restore_system,
    store_health,
)
from drd.services.restore.plan import choose_point, order_stores
from drd.services.restore.staging import promote
from tests.conftest import _postgres_schema_url
from tests.integration.conftest import _need_weed
from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
ODD_NAME = "-odd ü *?[x] \\ 'q\" $HOME.txt"


def build_tree(root: Path) -> None:
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "report.txt").write_text("quarterly figures\n" * 300)
    (root / "docs" / "deep" / "er" / "data.bin").write_bytes(secrets.token_bytes(300_000))
    (root / "docs" / "deep" / "notes.md").write_text("# notes\n")
    (root / "empty").write_bytes(b"")
    (root / ODD_NAME).write_text("odd\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "docs" / "report.txt", 0o640)
    os.symlink("/etc", root / "etc-link")
    os.symlink("docs/report.txt", root / "report-link")


def change_tree(root: Path) -> None:
    (root / "docs" / "report.txt").write_text("revised figures\n" * 500)
    (root / "empty").unlink()
    (root / "docs" / "deep" / "new.txt").write_text("added later\n")
    (root / "report-link").unlink()
    os.symlink("docs/deep/notes.md", root / "report-link")


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): type, mode, content or target."""
    state = {}
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory) / name
            info = path.lstat()
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                state[relative] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[relative] = ("dir", stat.S_IMODE(info.st_mode))
            else:
                state[relative] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return state


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    _need_weed()
    started = start_many_in([(tmp_path_factory.mktemp("seaweed"), f"restore-{index}")
                             for index in range(2)])
    yield started
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def stage(tmp_path_factory, servers, restic_binary):
    base = tmp_path_factory.mktemp("restore")
    made = make_stage(base, restic_binary=restic_binary,
                      stores=[StoreSetup("dc-a", "region-a", servers[0], "restore-a"),
                              StoreSetup("far", "region-b", servers[1], "restore-b")])
    made.init("dc-a")
    build_tree(made.source)
    made.old_state = tree_state(made.source)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    made.times = (now - dt.timedelta(hours=2), now - dt.timedelta(hours=1))
    made.old = made.backup("dc-a", time=made.times[0])
    made.report(made.old)
    change_tree(made.source)
    made.new_state = tree_state(made.source)
    made.new = made.backup("dc-a", time=made.times[1])
    made.report(made.new)
    made.copy_all("dc-a")
    made.base = base
    return made


def drd(stage, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    environment["DRD_RESTIC"] = stage.config.restic_binary
    result = subprocess.run([sys.executable, "-m", "drd.cli.main", "--home", str(stage.home),
                             *args], env=environment, capture_output=True, text=True,
                            timeout=300)
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    return result


def refused(stage, capsys, *args: str) -> str:
    """Run drd in this process (faster than a subprocess, for input it must refuse):
    assert exit status 2 and return what it said on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_status:
        main(["--home", str(stage.home), *args])
    assert exit_status.value.code == 2, capsys.readouterr()
    return capsys.readouterr().err


def unseal_count(stage) -> int:
    with stage.catalog.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "escrow.unseal"))


def restored(stage, target: Path) -> Path:
    """Where the source lands in ``target`` (restic keeps its absolute path)."""
    return target / stage.source.relative_to("/")


def test_latest_restores_byte_for_byte_links_as_links_and_is_audited(stage):
    target = stage.base / "latest"
    result = drd(stage, "restore", "fs1", "--target", str(target), "--json")
    summary = json.loads(result.stdout)
    assert set(summary) >= {"system", "snapshot", "time", "store", "attempts", "files",
                            "bytes", "seconds", "target"}
    assert summary["system"] == "fs1" and summary["snapshot"] == stage.new
    assert summary["store"] == "dc-a"  # both healthy: the policy's order
    assert [a["store"] for a in summary["attempts"]] == ["dc-a"]
    assert summary["target"] == str(target)
    assert tree_state(restored(stage, target)) == stage.new_state
    files = [v for v in stage.new_state.values() if v[0] == "file"]
    assert summary["files"] == len(files)
    assert summary["bytes"] == sum(len(v[2]) for v in files)
    link = restored(stage, target) / "etc-link"
    assert link.is_symlink() and os.readlink(link) == "/etc"
    # nothing but the restored tree in the target: no staging or cache left behind
    assert os.listdir(target) == [stage.source.parts[1]]
    with stage.catalog.session() as session:
        entries = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "system.restore")).all()
    (entry,) = [e for e in entries if e.details["directory"] == str(target)]
    assert entry.target == "fs1" and entry.actor.startswith("cli:")
    assert entry.details["snapshot"] == stage.new and entry.details["store"] == "dc-a"
    assert entry.details["outcome"] == "done"


def test_at_restores_the_older_snapshot_as_it_was(stage, capsys):
    between = (stage.times[0] + dt.timedelta(minutes=30)).isoformat()
    target = stage.base / "at"
    summary = json.loads(drd(stage, "restore", "fs1", "--at", between, "--target",
                             str(target), "--json").stdout)
    assert summary["snapshot"] == stage.old
    assert tree_state(restored(stage, target)) == stage.old_state
    # an age: 90 minutes ago lies between the two backups
    again = stage.base / "at-relative"
    summary = json.loads(drd(stage, "restore", "fs1", "--at", "90m ago", "--target",
                             str(again), "--json").stdout)
    assert summary["snapshot"] == stage.old
    assert "no good snapshot at or before" in refused(stage, capsys, "restore", "fs1", "--at",
                                                      "2020-01-01", "--target",
                                                      str(stage.base / "never"))
    assert "in the future" in refused(stage, capsys, "restore", "fs1", "--at", "2999-01-01",
                                      "--target", str(stage.base / "never"))
    assert not (stage.base / "never").exists()


def test_include_restores_only_that_subtree(stage, capsys):
    target = stage.base / "include"
    deep = stage.source / "docs" / "deep"
    summary = json.loads(drd(stage, "restore", "fs1", "--snapshot", stage.old[:10],
                             "--include", str(deep), "--target", str(target),
                             "--json").stdout)
    assert summary["snapshot"] == stage.old
    state = tree_state(restored(stage, target))
    assert set(state) == {"docs", "docs/deep", "docs/deep/er", "docs/deep/er/data.bin",
                          "docs/deep/notes.md"}
    assert {k: v for k, v in state.items() if k.startswith("docs/deep")} == \
        {k: v for k, v in stage.old_state.items() if k.startswith("docs/deep")}
    odd = stage.base / "include-odd"
    drd(stage, "restore", "fs1", "--include", str(stage.source / ODD_NAME), "--target",
        str(odd), "--verify")
    assert tree_state(restored(stage, odd)) == {ODD_NAME: stage.new_state[ODD_NAME]}

    for include, says in (("docs", "absolute"), (f"{stage.source}/../etc", "'..'"),
                          (f"{stage.source}/no-such", "is not in the snapshot")):
        assert says in refused(stage, capsys, "restore", "fs1", "--include", include,
                               "--target", str(stage.base / "include-bad"))
        assert not (stage.base / "include-bad").exists()


def test_a_non_empty_target_is_refused_unless_overwrite_and_links_there_are_replaced(
        stage, capsys):
    target = stage.base / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    unsealed = unseal_count(stage)
    said = refused(stage, capsys, "restore", "fs1", "--target", str(target))
    assert "is not empty" in said and "--overwrite" in said
    assert unseal_count(stage) == unsealed  # refused before the password was unsealed
    assert os.listdir(target) == ["keep.txt"]
    file_target = stage.base / "a-file"
    file_target.write_text("x")
    assert "not a directory" in refused(stage, capsys, "restore", "fs1", "--target",
                                        str(file_target))
    # a link in the target where the snapshot has a directory: replaced, not written through
    outside = stage.base / "outside"
    outside.mkdir()
    restored(stage, target).mkdir(parents=True)
    os.symlink(outside, restored(stage, target) / "docs")
    (restored(stage, target) / "report-link").write_text("a file where a link was\n")
    drd(stage, "restore", "fs1", "--target", str(target), "--overwrite")
    assert os.listdir(outside) == []
    assert tree_state(restored(stage, target)) == stage.new_state
    assert (target / "keep.txt").read_text() == "mine\n"


def test_an_interrupted_restore_leaves_no_trace(stage):
    target = stage.base / "interrupted"
    seen = []

    def stop_once_restoring() -> bool:
        return bool(seen) and seen[-1].kind == "restoring"

    with pytest.raises(RestoreInterrupted):
        restore_system(stage.catalog, stage.master_key, stage.keystore, stage.config, "fs1",
                       RestoreRequest(target=target), actor="test", on_event=seen.append,
                       should_stop=stop_once_restoring)
    assert not target.exists()  # it made the target, and took it away again


def test_the_agent_restores_its_own_system_only(stage):
    home = AgentHome(stage.base / "agent")
    home.ensure()
    with stage.catalog.session() as session:
        system_id = session.scalar(sa.select(System.id).where(System.name == "fs1"))
    identity = AgentIdentity(system_id=system_id, system="fs1", department="parks",
                             token_id=0)
    escrow = public_key_pem(stage.keystore.escrow_public_key()).decode()
    document = assignment_for(stage.catalog, identity, stage.master_key,
                              escrow).model_dump(mode="json")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    home.install(ca_pem=b"", identity_key_pem=identity_key_pem(Ed25519PrivateKey.generate()),
                 password=stage.password, agent_token=Secret("agent-token-for-the-test"),
                 assignment=document)
    # a centre that does not answer: the cached assignment serves
    home.write_config(AgentConfig(server="http://127.0.0.1:9", ca_file=str(home.ca_file),
                                  system="fs1", department="parks", hostname="fs1",
                                  enrolled_at=dt.datetime.now(dt.UTC).isoformat()))
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    environment.update(DRD_AGENT_HOME=str(home.root), DRD_RESTIC=stage.config.restic_binary)

    def agent(*args: str, check: int) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "drd-agent"), "restore", *args], env=environment,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == check, (args, result.stdout, result.stderr)
        return result

    target = stage.base / "agent-restore"
    summary = json.loads(agent("fs1", "--at", stage.times[0].isoformat(), "--target",
                               str(target), "--json", check=0).stdout)
    assert summary["snapshot"] == stage.old and summary["store"] == "dc-a"
    assert tree_state(restored(stage, target)) == stage.old_state
    latest = stage.base / "agent-latest"
    assert json.loads(agent("--target", str(latest), "--store", "far", "--json",
                            check=0).stdout)["store"] == "far"
    assert tree_state(restored(stage, latest)) == stage.new_state
    other = agent("fs2", "--target", str(stage.base / "agent-other"), check=2)
    assert "its own system only" in other.stderr
    assert not (stage.base / "agent-other").exists()
    assert stage.password.reveal() not in other.stderr


def test_the_catalogs_health_picks_the_store_on_postgresql(tmp_path, servers, restic_binary,
                                                         postgres_url):
    """restore_system in this process on a PostgreSQL catalog: a store the daemon's probe
    found down, and one whose copy is missing, come after a healthy one."""
    url, drop = _postgres_schema_url(postgres_url)
    try:
        pg = make_stage(tmp_path, restic_binary=restic_binary, database_url=url,
                        stores=[StoreSetup("dc-a", "region-a", servers[0], "pg-a"),
                                StoreSetup("dc-b", "region-a", servers[0], "pg-b"),
                                StoreSetup("far", "region-b", servers[1], "pg-far")])
        pg.init("dc-a")
        build_tree(pg.source)
        snapshot = pg.backup("dc-a")
        pg.report(snapshot, {"dc-a": True, "dc-b": False, "far": True})
        pg.copy_all("dc-a")
        with pg.catalog.session() as session:
            session.execute(sa.update(StoreRow).where(StoreRow.name == "dc-a")
                            .values(reachable=False, checked_at=dt.datetime.now(dt.UTC)))
            session.execute(sa.update(StoreRow).where(StoreRow.name != "dc-a")
                            .values(reachable=True, checked_at=dt.datetime.now(dt.UTC)))
        names = policy_stores(pg.catalog, "fs1")
        point = choose_point(load_snapshots(pg.catalog, "fs1"))
        assert [h.name for h in order_stores(store_health(pg.catalog, "fs1", names, point))] \
            == ["far", "dc-b", "dc-a"]
        events = []
        result = restore_system(pg.catalog, pg.master_key, pg.keystore, pg.config, "fs1",
                                RestoreRequest(target=tmp_path / "r"), actor="test:pg",
                                on_event=events.append)
        assert result.store == "far" and len(result.attempts) == 1
        assert [e.kind for e in events] == ["attempt", "restoring", "moving", "done"]
        assert tree_state(tmp_path / "r" / pg.source.relative_to("/")) == \
            tree_state(pg.source)
        with pg.catalog.session() as session:
            (entry,) = session.scalars(sa.select(AuditEntry).where(
                AuditEntry.action == "system.restore")).all()
            assert entry.actor == "test:pg" and entry.details["store"] == "far"
        pg.catalog.dispose()
    finally:
        drop()


def test_read_only_directories_are_moved_and_merged_by_a_plain_user(tmp_path_factory):
    """restic restores directory modes; a 0555 directory must still move into the target
    and merge with one there -- checked as an unprivileged user (root ignores modes)."""
    base = Path(tempfile.mkdtemp(prefix="drd-restore-perm-"))
    try:
        os.chmod(base, 0o777)
        staging, target = base / "target" / ".drd-restore-x", base / "target"
        (staging / "srv" / "ro" / "inner").mkdir(parents=True)
        (staging / "srv" / "ro" / "inner" / "file").write_text("new\n")
        (staging / "srv" / "fresh-ro").mkdir()
        (target / "srv" / "ro").mkdir(parents=True)
        (target / "srv" / "ro" / "mine").write_text("kept\n")
        for directory in (staging / "srv" / "ro" / "inner", staging / "srv" / "ro",
                          staging / "srv" / "fresh-ro", target / "srv" / "ro"):
            os.chmod(directory, 0o555)
        as_root = os.geteuid() == 0
        if as_root:
            for root, dirs, files in os.walk(base):
                for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
                    os.lchown(name, 65534, 65534)
            os.setegid(65534)
            os.seteuid(65534)
        try:
            promote(staging, target)
        finally:
            if as_root:
                os.seteuid(0)
                os.setegid(0)
        assert not staging.exists()
        assert (target / "srv" / "ro" / "inner" / "file").read_text() == "new\n"
        assert (target / "srv" / "ro" / "mine").read_text() == "kept\n"
        for directory in ("srv/ro", "srv/ro/inner", "srv/fresh-ro"):
            assert stat.S_IMODE((target / directory).stat().st_mode) == 0o555, directory
    finally:
        for root, dirs, _files in os.walk(base):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_dead_store_falls_back_to_the_next_one(stage, servers):
    """Runs last in this module: it stops dc-a's server for good."""
    servers[0].kill()
    target, only = stage.base / "fallback", stage.base / "only-dead"
    # both at once: restic waits about 13 s on a dead S3 server before it gives up
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        fallback = pool.submit(drd, stage, "restore", "fs1", "--target", str(target), "--json")
        dead = pool.submit(drd, stage, "restore", "fs1", "--store", "dc-a", "--target",
                           str(only), "--json", check=1)
        result, failed = fallback.result(), dead.result()
    summary = json.loads(result.stdout)
    assert summary["store"] == "far"
    assert [(a["store"], a["ok"]) for a in summary["attempts"]] == [("dc-a", False),
                                                                    ("far", True)]
    assert "connection refused" in summary["attempts"][0]["error"]
    assert "store dc-a failed" in result.stderr
    assert tree_state(restored(stage, target)) == stage.new_state
    assert os.listdir(target) == [stage.source.parts[1]]  # no mix, no leftovers

    document = json.loads(failed.stdout)
    assert document["store"] is None and document["attempts"][0]["store"] == "dc-a"
    assert "no store could restore fs1" in failed.stderr
    assert not only.exists()
    with stage.catalog.session() as session:
        outcomes = {entry.details["directory"]: entry.details["outcome"] for entry in
                    session.scalars(sa.select(AuditEntry).where(
                        AuditEntry.action == "system.restore"))}
    assert outcomes[str(target)] == "done" and outcomes[str(only)] == "failed"

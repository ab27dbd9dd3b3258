"""``drd restore`` when the store it reads from dies in the middle: restic retries a dead
S3 server for minutes, so drd's watchdog notices that nothing moves, probes the store,
stops restic and starts over from the next store into a clean staging directory
(issue 7 point 1). Real restic, two SeaweedFS servers, the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.staging import StoreSetup, make_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = 40
FILE_SIZE = 4 << 20  # 160 MiB in all: a restore that lasts long enough to be cut


def test_a_store_dying_mid_restore_hands_over_to_the_next_one(tmp_path, seaweed,
                                                              restic_binary):
    first, second = seaweed(2)
    stage = make_stage(tmp_path, restic_binary=restic_binary,
                       stores=[StoreSetup("dc-a", "region-a", first, "midway-a"),
                               StoreSetup("far", "region-b", second, "midway-b")])
    stage.init("dc-a")
    contents = {f"f{index:02d}.bin": os.urandom(FILE_SIZE) for index in range(FILES)}
    for name, content in contents.items():
        (stage.source / name).write_bytes(content)
    snapshot = stage.backup("dc-a")
    stage.report(snapshot)
    stage.copy_all("dc-a")

    target = tmp_path / "target"
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_", "RESTIC_"))}
    environment["DRD_RESTIC"] = restic_binary
    restore = subprocess.Popen(
        [sys.executable, "-m", "drd.cli.main", "--home", str(stage.home), "restore", "fs1",
         "--target", str(target), "--json"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # dc-a (the healthiest: the policy's first) dies once restic has written a byte
        deadline = time.monotonic() + 120
        while not any(path.is_file() and path.stat().st_size
                      for path in target.rglob("*.bin")):
            assert restore.poll() is None, restore.communicate()
            assert time.monotonic() < deadline, "the restore never started writing"
            time.sleep(0.02)
        first.kill()
        out, err = restore.communicate(timeout=300)
    finally:
        if restore.poll() is None:
            restore.kill()
    assert restore.returncode == 0, err
    summary = json.loads(out)
    assert [(attempt["store"], attempt["ok"]) for attempt in summary["attempts"]] == \
        [("dc-a", False), ("far", True)], summary
    assert summary["store"] == "far" and summary["snapshot"] == snapshot
    assert "store dc-a failed" in err
    restored = target / stage.source.relative_to("/")
    assert sorted(path.name for path in restored.iterdir()) == sorted(contents)
    for name, content in contents.items():
        assert (restored / name).read_bytes() == content, name
    assert os.listdir(target) == [stage.source.parts[1]]  # no staging, no mix

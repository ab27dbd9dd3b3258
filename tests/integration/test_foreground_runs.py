"""Runs made by hand are recorded like the daemon's: ``drd replicate``, ``drd verify`` and
``drd retention run`` each leave one finished JobRun per system (and store)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from drd.catalog.models import Job, JobRun
from tests.integration.staging import StoreSetup, make_stage
from tests.integration.test_replication import drd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_foreground_runs_are_recorded(tmp_path, capsys, restic_binary):
    stage = make_stage(tmp_path, restic_binary=restic_binary, stores=[
        StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
        StoreSetup("dc-b", "region-b", directory=tmp_path / "b")])
    stage.init("dc-a")
    stage.write_files(3)
    stage.report(stage.backup("dc-a"), {"dc-a": True, "dc-b": False})
    home = str(stage.home)
    assert drd(capsys, "replicate", "--home", home, "--json")[0] == 0
    assert drd(capsys, "verify", "--home", home, "--full", "--json")[0] == 0
    assert drd(capsys, "retention", "run", "fs1", "--home", home, "--json")[0] == 0
    with stage.catalog.session() as session:
        runs = session.execute(sa.select(Job.name, JobRun.outcome, JobRun.bytes_processed,
                                         JobRun.finished_at)
                               .join(Job, JobRun.job_id == Job.id).order_by(Job.name)).all()
    assert [(name, outcome) for name, outcome, _, _ in runs] == [
        ("replicate:fs1", "succeeded"), ("retention:fs1", "succeeded"),
        ("verify:fs1:dc-a", "succeeded"), ("verify:fs1:dc-b", "succeeded")]
    assert all(finished is not None for *_, finished in runs)
    assert runs[0].bytes_processed > 0  # what replication copied to dc-b
    stage.catalog.dispose()

"""System locks: retention alone on its system, the other kinds together, on SQLite and
PostgreSQL; a dead holder frees its lock; a worker hands a busy item back for later."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from drd.catalog import Catalog, migrate
from drd.catalog.models import Department, System
from drd.daemon.locks import SystemBusy, system_lock, systems_locked

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(database_url):
    migrate(database_url)
    catalog = Catalog(database_url)
    with catalog.session() as session:
        department = Department(name="parks")
        session.add(department)
        session.flush()
        session.add_all([System(name="fs1", department_id=department.id, status="enrolled"),
                         System(name="fs2", department_id=department.id, status="enrolled")])
    yield catalog
    catalog.dispose()


def test_exclusive_and_shared_exclude_each_other_and_shared_ones_share(catalog):
    with system_lock(catalog, 1, "fs1", exclusive=False):
        with system_lock(catalog, 1, "fs1", exclusive=False):
            pass  # two shared holders
        with pytest.raises(SystemBusy, match="'fs1' is busy"):
            with system_lock(catalog, 1, "fs1", exclusive=True, wait=0.6):
                pass
        with system_lock(catalog, 2, "fs2", exclusive=True):
            pass  # another system is not affected
    with system_lock(catalog, 1, "fs1", exclusive=True):
        with pytest.raises(SystemBusy, match="retention is running"):
            with systems_locked(catalog, None, exclusive=False, wait=0):
                pass
    with systems_locked(catalog, ["fs1", "fs2"], exclusive=True, wait=0):
        pass  # everything was released


def test_a_holder_that_dies_frees_its_lock(catalog, database_url):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from drd.catalog import Catalog
        from drd.daemon.locks import system_lock
        with system_lock(Catalog({database_url!r}), 1, "fs1", exclusive=True):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemBusy):
            with system_lock(catalog, 1, "fs1", exclusive=False):
                pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with system_lock(catalog, 1, "fs1", exclusive=True):
                break
        except SystemBusy:
            assert time.monotonic() < deadline, "the dead holder's lock was not freed"
            time.sleep(0.2)


def test_a_worker_hands_back_an_item_whose_system_is_busy(tmp_path, database_url):
    import datetime as dt
    import threading

    import sqlalchemy as sa

    from drd.catalog.models import Job, WorkItem
    from drd.catalog.types import utcnow
    from drd.daemon import queue
    from drd.daemon.jobs import sync_jobs
    from drd.daemon.workers import JobResult, RunningItems, Worker
    from tests.integration.staging import StoreSetup, make_stage

    stage = make_stage(tmp_path, database_url=database_url, stores=[
        StoreSetup("dc-a", "region-a", directory=tmp_path / "a"),
        StoreSetup("dc-b", "region-b", directory=tmp_path / "b")])
    ran = []
    with stage.catalog.session() as session:
        sync_jobs(session, utcnow())
        queue.enqueue(session, session.scalar(sa.select(Job).where(
            Job.name == "verify:fs1:dc-a")), "manual")
        system_id = session.scalar(sa.select(System.id).where(System.name == "fs1"))
    worker = Worker("w", catalog=stage.catalog, daemon_id="d", config=stage.config,
                    master_key=stage.master_key, keystore=stage.keystore,
                    stopping=threading.Event(), running=RunningItems(),
                    handlers={"verify": lambda context: ran.append(1) or JobResult("succeeded")})
    claimed = queue.claim(stage.catalog, "d", dt.timedelta(seconds=30))
    with system_lock(stage.catalog, system_id, "fs1", exclusive=True):  # retention runs
        worker.run_item(claimed)
    assert ran == []
    with stage.catalog.session() as session:
        (item,) = session.scalars(sa.select(WorkItem))
        assert (item.state, item.attempts, item.claimed_by) == ("queued", 0, None)
        assert item.not_before > utcnow() + dt.timedelta(seconds=20)
    stage.catalog.dispose()

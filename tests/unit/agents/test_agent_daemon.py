"""The daemon's decisions, without running its loop: rescheduling, back up now, one run at
a time. The centre and the backup are stand-ins; the scheduler is APScheduler's own."""

from __future__ import annotations

import copy
import json
import threading
from datetime import UTC, datetime

import pytest

from agents import daemon as daemon_module
from agents.assignment import parse_assignment
from agents.backup import BackupResult
from agents.daemon import BACKUP_JOB, AgentDaemon, missed_run
from agents.home import AgentConfig, AgentHome
from agents.service import BackupOutcome, HeartbeatAnswer
from agents.spool import DeliveryResult
from drd.errors import OperationError
from policies.cron import cron_trigger
from tests.unit.agents.test_agent_assignment import DOCUMENT


def enrolled(tmp_path, schedule: str = "0 * * * *") -> AgentHome:
    home = AgentHome(tmp_path / "agent")
    home.ensure()
    document = copy.deepcopy(DOCUMENT)
    document["policy"]["schedule"] = schedule
    home.save_assignment(document)
    home.write_config(AgentConfig(server="http://centre.test", ca_file="", system="fs1",
                                  department="parks", hostname="h", enrolled_at="now"))
    return home


class FakeBackup:
    """Counts runs; the first one can be held open to test overlapping requests."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, should_stop) -> BackupOutcome:
        self.runs += 1
        self.started.set()
        self.release.wait(10)
        result = BackupResult(run_id=str(self.runs), started=datetime.now(UTC))
        return BackupOutcome(result=result, delivery=DeliveryResult(), assignment_fresh=False)


class FakeClient:
    def close(self) -> None:
        pass


def test_a_new_schedule_from_the_centre_reschedules_the_backup(tmp_path, monkeypatch):
    home = enrolled(tmp_path)
    daemon = AgentDaemon(home, backup=FakeBackup())
    daemon.add_jobs()
    changed = copy.deepcopy(DOCUMENT)
    changed["policy"]["schedule"] = "30 2 * * *"
    changed["policy_version"] = 4
    monkeypatch.setattr(daemon_module, "make_client", lambda home, config: FakeClient())
    monkeypatch.setattr(daemon_module, "send_heartbeat", lambda home, client, **_:
                        HeartbeatAnswer(backup_now=False, policy_version=4))
    monkeypatch.setattr(daemon_module, "refresh_assignment",
                        lambda home, client: parse_assignment(changed))
    daemon.heartbeat_job()
    assert daemon.schedule == "30 2 * * *" and daemon.policy_version == 4
    trigger = daemon.scheduler.get_job(BACKUP_JOB).trigger
    assert str(trigger.fields[5]) == "2" and str(trigger.fields[6]) == "30"  # hour, minute


def test_backup_now_makes_the_backup_due_at_once(tmp_path, monkeypatch):
    daemon = AgentDaemon(enrolled(tmp_path), backup=FakeBackup())
    daemon.add_jobs()
    monkeypatch.setattr(daemon_module, "make_client", lambda home, config: FakeClient())
    monkeypatch.setattr(daemon_module, "send_heartbeat", lambda home, client, **_:
                        HeartbeatAnswer(backup_now=True, policy_version=3))
    before = datetime.now(UTC)
    daemon.heartbeat_job()
    due = daemon.scheduler.get_job(BACKUP_JOB).next_run_time
    assert due is not None and before <= due <= datetime.now(UTC)


def test_a_request_during_a_run_runs_once_more_after_it(tmp_path):
    backup = FakeBackup()
    daemon = AgentDaemon(enrolled(tmp_path), backup=backup)
    worker = threading.Thread(target=daemon.backup_job)
    worker.start()
    assert backup.started.wait(5)
    daemon.request_backup()
    daemon.backup_job()  # the scheduler firing meanwhile: refused, remembered
    backup.release.set()
    worker.join(10)
    assert backup.runs == 2 and daemon._idle.is_set()


def test_an_unreachable_centre_is_logged_once(tmp_path, monkeypatch, caplog):
    daemon = AgentDaemon(enrolled(tmp_path), backup=FakeBackup())
    monkeypatch.setattr(daemon_module, "make_client", lambda home, config: FakeClient())

    def down(home, client, **_):
        raise OperationError("cannot reach the centre")

    monkeypatch.setattr(daemon_module, "send_heartbeat", down)
    for _ in range(3):
        daemon.heartbeat_job()
    assert caplog.text.count("heartbeat failed") == 1


def test_an_unusable_schedule_is_refused_at_start(tmp_path):
    home = enrolled(tmp_path)
    document = json.loads((home.root / "assignment.json").read_text())
    document["policy"]["schedule"] = "0 3 1 * 1"  # both day fields: cron_trigger refuses
    home.save_assignment(document)
    with pytest.raises(OperationError):
        AgentDaemon(home)


def test_a_run_missed_while_the_agent_was_down_is_caught_up_once():
    trigger = cron_trigger("0 3 * * *")
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    assert missed_run(trigger, None, now)  # never backed up
    assert missed_run(trigger, datetime(2026, 12, 1, 3, 0, tzinfo=UTC), now)  # 2 Dec 3:00
    assert not missed_run(trigger, datetime(2026, 12, 2, 3, 0, 0, 200_000, tzinfo=UTC), now)
    assert not missed_run(trigger, datetime(2026, 12, 2, 9, 0, tzinfo=UTC), now)


def test_at_start_a_missed_backup_is_due_at_once(tmp_path):
    home = enrolled(tmp_path, schedule="0 3 * * *")
    daemon = AgentDaemon(home, backup=FakeBackup())
    daemon.add_jobs()
    assert daemon.scheduler.get_job(BACKUP_JOB).next_run_time <= datetime.now(UTC)
    home.record_backup({"started": datetime.now(UTC), "ok": True})
    later = AgentDaemon(home, backup=FakeBackup())
    later.add_jobs()
    # no explicit first run: the scheduler takes it from the trigger when it starts
    assert getattr(later.scheduler.get_job(BACKUP_JOB), "next_run_time", None) is None

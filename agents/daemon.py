"""``drd-agent run``: the agent daemon, on APScheduler 3.

Two jobs in a :class:`~apscheduler.schedulers.blocking.BlockingScheduler` (UTC):

- ``backup``: the policy's schedule (:func:`policies.cron.cron_trigger`), from the
  assignment cached in the home, so backups run while the centre is down. A run the
  schedule called for while the agent was not running is caught up once at start.
  ``coalesce=True`` and ``max_instances=1``: runs missed while the agent was down (within
  ``misfire_grace_time``) are caught up once, and never two at a time. A "back up now"
  that arrives during a run starts one more run right after it.
- ``heartbeat`` (every ``heartbeat_seconds``, first at start): delivers the spool, tells
  the centre the agent is alive, starts a run when the centre asks for one
  (``backup_now``), and refreshes the assignment when the policy version changed,
  rescheduling ``backup`` when the schedule did.

Stopping (SIGTERM or SIGINT): no new run starts; a running backup may finish for
``stop_grace_seconds``, then restic is stopped with SIGINT (so it removes its lock; the
``after`` commands still run); then :meth:`AgentDaemon.run` returns and the process exits
0. A second signal stops the running backup at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agents.assignment import keys_version
from agents.home import AgentHome
from agents.service import (
    BackupOutcome,
    backup_system,
    cached_assignment,
    make_client,
    make_restic,
    refresh_assignment,
    send_heartbeat,
)
from drd.errors import DrdError, OperationError
from policies.cron import cron_trigger

logger = logging.getLogger(__name__)

BACKUP_JOB = "backup"
HEARTBEAT_JOB = "heartbeat"
DEFAULT_HEARTBEAT_SECONDS = 60.0
DEFAULT_MISFIRE_GRACE_SECONDS = 3600
DEFAULT_STOP_GRACE_SECONDS = 60.0


def missed_run(trigger, last_started: datetime | None, now: datetime) -> bool:
    """Whether the schedule called for a run since ``last_started`` (pure): a system
    never backed up, or one whose schedule fired after its last run began."""
    if last_started is None:
        return True
    following = trigger.get_next_fire_time(None, last_started + timedelta(seconds=1))
    return following is not None and following <= now


class _StopRequested(BaseException):
    """Raised in the main thread by the first SIGTERM/SIGINT, to leave the scheduler."""


class AgentDaemon:
    """The agent's scheduler and its jobs.

    Args:
        home: an enrolled home.
        heartbeat_seconds: between heartbeats.
        misfire_grace_seconds: how late a scheduled backup may still start.
        stop_grace_seconds: how long a running backup may go on after a stop signal.
        backup: runs one backup (default :func:`agents.service.backup_system`); gets
            ``should_stop``.

    Raises (constructor): UserError when not enrolled; OperationError when the cached
        assignment is missing, damaged or has an unusable schedule.
    """

    def __init__(
        self,
        home: AgentHome,
        *,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        misfire_grace_seconds: int = DEFAULT_MISFIRE_GRACE_SECONDS,
        stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS,
        backup: Callable[..., BackupOutcome] | None = None,
    ) -> None:
        self.home = home
        self.config = home.require_enrolled()
        self.heartbeat_seconds = heartbeat_seconds
        self.misfire_grace_seconds = misfire_grace_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self._backup = backup or (lambda **options: backup_system(self.home, **options))
        assignment = cached_assignment(home)
        self.schedule = assignment.policy.schedule
        self.policy_version = assignment.policy_version
        self.keys_version = keys_version(assignment)
        self._trigger(self.schedule)  # refuse an unusable schedule before starting
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._idle = threading.Event()
        self._idle.set()
        self._centre_reachable: bool | None = None
        self._restic_version: str | None = None
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": misfire_grace_seconds},
        )
        self.runs = 0

    # -- the loop ------------------------------------------------------------------------

    def add_jobs(self) -> None:
        """Add the ``backup`` and ``heartbeat`` jobs (the first heartbeat at once).

        A backup the schedule called for while the agent was not running (or one never
        made) is caught up once, at start.
        """
        trigger = self._trigger(self.schedule)
        catch_up = {}
        now = datetime.now(UTC)
        if missed_run(trigger, self._last_run_started(), now):
            logger.info("a scheduled backup was missed while the agent was not running: "
                        "backing up now")
            catch_up["next_run_time"] = now
        self.scheduler.add_job(self.backup_job, trigger, id=BACKUP_JOB,
                               name="scheduled backup", replace_existing=True, **catch_up)
        self.scheduler.add_job(self.heartbeat_job, IntervalTrigger(
            seconds=self.heartbeat_seconds, timezone=UTC), id=HEARTBEAT_JOB,
            name="heartbeat", next_run_time=datetime.now(UTC), replace_existing=True)

    def run(self) -> None:
        """Schedule the jobs and block until a stop signal; then stop cleanly."""
        self.add_jobs()
        logger.info("drd-agent running for system %s (schedule %r, heartbeat every %gs)",
                    self.config.system, self.schedule, self.heartbeat_seconds)
        previous = {}
        try:
            for number in (signal.SIGTERM, signal.SIGINT):
                previous[number] = signal.signal(number, self._first_signal)
            self.scheduler.start()
        except _StopRequested:
            pass
        finally:
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, self._second_signal)
            self.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)

    def stop(self) -> None:
        """Stop scheduling; let a running backup finish within the grace, else stop it."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if not self._idle.is_set():
            logger.info("stopping: waiting up to %gs for the running backup to finish",
                        self.stop_grace_seconds)
            if not self._idle.wait(self.stop_grace_seconds):
                logger.warning("stopping: the backup is still running; stopping restic")
                self._cancel.set()
                self._idle.wait()
        logger.info("drd-agent stopped")

    def _first_signal(self, number: int, _frame) -> None:
        logger.info("received %s: stopping", signal.Signals(number).name)
        raise _StopRequested()

    def _second_signal(self, number: int, _frame) -> None:
        logger.warning("received %s again: stopping the running backup now",
                       signal.Signals(number).name)
        self._cancel.set()

    # -- jobs ----------------------------------------------------------------------------

    def backup_job(self) -> None:
        """Run a backup now (and once more if asked again meanwhile)."""
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
            self._idle.clear()
        try:
            while not self._cancel.is_set():
                self._again = False
                self._run_one()
                with self._lock:
                    if not self._again:
                        break
        finally:
            with self._lock:
                self._running = False
                self._idle.set()

    def _run_one(self) -> None:
        self.runs += 1
        try:
            outcome = self._backup(should_stop=self._cancel.is_set)
        except DrdError as error:
            logger.error("backup did not run: %s", error)
            return
        result = outcome.result
        if result.ok:
            logger.info("backup %s done: %d snapshot(s), %d file(s), %.1fs; reports: "
                        "%d delivered, %d spooled", result.run_id, len(result.snapshots),
                        sum(s.files for s in result.snapshots), result.duration_seconds,
                        outcome.delivery.delivered, outcome.delivery.remaining)
        else:
            logger.error("backup %s failed: %s", result.run_id, "; ".join(result.problems))

    def request_backup(self) -> None:
        """Start a backup as soon as possible (after the running one, if any)."""
        with self._lock:
            if self._running:
                self._again = True
                return
        job = self.scheduler.get_job(BACKUP_JOB)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    def heartbeat_job(self) -> None:
        """Heartbeat; pick up ``backup_now`` and a new policy version."""
        try:
            client = make_client(self.home, self.config)
        except DrdError as error:
            logger.error("heartbeat: %s", error)
            return
        try:
            answer = send_heartbeat(self.home, client, restic_version=self._restic())
            self._reachable(True)
            policy_changed = answer.policy_version is not None and \
                answer.policy_version != self.policy_version
            keys_changed = answer.keys_version is not None and \
                answer.keys_version != self.keys_version
            if policy_changed or keys_changed:
                self._refresh(client)
            if answer.backup_now:
                logger.info("the centre asks for a backup now")
                self.request_backup()
        except OperationError as error:
            self._reachable(False, error)
        finally:
            client.close()

    def _refresh(self, client) -> None:
        assignment = refresh_assignment(self.home, client)
        logger.info("policy %s is now at version %d", assignment.policy.name,
                    assignment.policy_version)
        self.policy_version = assignment.policy_version
        self.keys_version = keys_version(assignment)
        if assignment.policy.schedule != self.schedule:
            try:
                trigger = self._trigger(assignment.policy.schedule)
            except OperationError as error:
                logger.error("keeping schedule %r: %s", self.schedule, error)
                return
            self.scheduler.reschedule_job(BACKUP_JOB, trigger=trigger)
            logger.info("backup schedule changed from %r to %r", self.schedule,
                        assignment.policy.schedule)
            self.schedule = assignment.policy.schedule

    def _reachable(self, reachable: bool, error: Exception | None = None) -> None:
        """Log the centre going away and coming back once each, not every heartbeat."""
        if reachable and self._centre_reachable is False:
            logger.info("the centre is reachable again")
        elif not reachable and self._centre_reachable is not False:
            logger.warning("heartbeat failed (backups go on; reports are spooled): %s", error)
        self._centre_reachable = reachable

    def _restic(self) -> str:
        if self._restic_version is None:
            try:
                self._restic_version = str(make_restic(self.home).version())
            except DrdError:
                return "unknown"
        return self._restic_version

    def _last_run_started(self) -> datetime | None:
        state = self.home.last_backup() or {}
        try:
            started = datetime.fromisoformat(str(state.get("started")))
        except ValueError:
            return None
        return started if started.utcoffset() is not None else None

    def _trigger(self, expression: str):
        try:
            return cron_trigger(expression)
        except ValueError as error:
            raise OperationError(f"the policy's schedule is unusable: {error}") from None

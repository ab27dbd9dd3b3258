"""The daemon inside ``drd serve``: leadership, the scheduler, workers and heartbeats.

``Daemon(config, catalog, master_key, keystore).start()`` registers the daemon in the
catalog, starts ``config.workers`` worker threads, and a control thread that:

- every second tries to lead (:mod:`drd.daemon.leader`); the daemon that leads runs the
  :class:`~drd.daemon.scheduler.Scheduler`, and stops it if it loses the lead;
- every ``lease_seconds / 3`` renews the leases of the items its workers hold, and the
  daemon's own heartbeat row.

:meth:`Daemon.stop` stops claiming, tells running jobs to stop at their next checkpoint,
waits for them (at most ``timeout`` seconds), hands back what they did not finish,
releases the lead and records the clean stop. A daemon killed instead (``kill -9``)
leaves its items running with a lease that lapses: another daemon, or this one
restarted, resumes them under the same run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from drd.catalog import Catalog
from drd.config import Config
from drd.daemon import leader as leadership
from drd.daemon import queue
from drd.daemon.catalog_copy import CatalogCopier
from drd.daemon.notify import Notifier, start_notifier
from drd.daemon.queue import one_line_error
from drd.daemon.scheduler import SYNC_SECONDS, Scheduler
from drd.daemon.watch import Watch
from drd.daemon.workers import Handler, RunningItems, Worker, lease_of
from drd.errors import DrdError

log = logging.getLogger("drd.daemon")

LEADER_RETRY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 5.0


class Daemon:
    """The scheduler and workers of one ``drd serve`` process.

    ``workers`` overrides ``config.workers``; ``schedule=False`` never leads (it only runs
    queued work); ``handlers`` replaces the job handlers by kind (for tests of the
    machinery).
    """

    def __init__(self, config: Config, catalog: Catalog, master_key: Any, keystore: Any, *,
                 workers: int | None = None, schedule: bool = True,
                 handlers: Mapping[str, Handler] | None = None,
                 sync_seconds: float = SYNC_SECONDS,
                 leader_retry_seconds: float = LEADER_RETRY_SECONDS) -> None:
        self.config = config
        self.catalog = catalog
        self.master_key = master_key
        self.keystore = keystore
        self.worker_count = workers if workers is not None else config.workers
        self.schedule = schedule
        self.handlers = handlers
        self.leader_retry_seconds = leader_retry_seconds
        self.id = leadership.new_daemon_id()
        self.scheduler = Scheduler(catalog, sync_seconds=sync_seconds)
        self.watch = Watch(config, catalog, master_key)  # the leader probes and alerts
        # the leader keeps a copy of the catalog in every store (docs/recovery.md)
        self.catalog_copier = CatalogCopier(config, catalog, master_key, keystore)
        self.leadership = leadership.leadership_for(catalog, config.home)
        self.stopping = threading.Event()
        self.running = RunningItems()
        self.workers: list[Worker] = []
        self.notifier: Notifier | None = None  # alert channels, on every daemon
        self._control: threading.Thread | None = None
        self._control_stop = threading.Event()
        self.is_leader = False

    def start(self) -> None:
        """Register, start the workers and the control thread. Raises
        :class:`~drd.errors.OperationError` when the catalog cannot be reached."""
        leadership.register(self.catalog, self.id)
        # APScheduler logs every run of every job at INFO: the queue's own lines say more
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        log.info("daemon %s: %d worker(s)%s", self.id, self.worker_count,
                 "" if self.schedule else ", not scheduling (--no-scheduler)")
        self.workers = [
            Worker(f"worker-{index + 1}", catalog=self.catalog, daemon_id=self.id,
                   config=self.config, master_key=self.master_key, keystore=self.keystore,
                   stopping=self.stopping, running=self.running, handlers=self.handlers)
            for index in range(self.worker_count)
        ]
        self._control = threading.Thread(target=self._control_loop, name="daemon-control",
                                         daemon=True)
        self._control.start()
        for worker in self.workers:
            worker.start()
        self.notifier = start_notifier(self.config, self.catalog)

    def _control_loop(self) -> None:
        lease = lease_of(self.config)
        renew_every = max(lease.total_seconds() / 3, 0.5)
        last_renewal = 0.0
        while not self._control_stop.is_set():
            try:
                if self.schedule and not self.stopping.is_set():
                    self._lead()
                if time.monotonic() - last_renewal >= renew_every:
                    last_renewal = time.monotonic()
                    held = self.running.ids()
                    kept = queue.heartbeat(self.catalog, self.id, held, lease)
                    self.running.mark_lost(set(held) - kept)
                    leadership.beat(self.catalog, self.id, self.is_leader)
            except DrdError as error:
                log.warning("daemon heartbeat failed: %s", one_line_error(error))
            except Exception:  # noqa: BLE001 - this thread must outlive a bug
                # without this thread leases lapse and other daemons redo running work
                log.exception("daemon control loop error (it carries on)")
            self._control_stop.wait(self.leader_retry_seconds)

    def _lead(self) -> None:
        leads = self.leadership.try_acquire()
        if leads and not self.is_leader:
            self.is_leader = True
            log.info("daemon %s leads: scheduling jobs", self.id)
            try:
                leadership.beat(self.catalog, self.id, True)
            except DrdError as error:
                log.warning("cannot record the lead: %s", one_line_error(error))
            self.scheduler.start()
            self.watch.start()
            self.catalog_copier.start()
        elif not leads and self.is_leader:
            self.is_leader = False
            log.warning("daemon %s lost the lead: no longer scheduling", self.id)
            self.scheduler.stop()
            self.watch.stop()
            self.catalog_copier.stop()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop cleanly within about ``timeout`` seconds (see the module's docstring)."""
        self.stopping.set()
        self.scheduler.stop()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(deadline - time.monotonic(), 0))
        unfinished = self.running.ids()
        self._control_stop.set()
        if self._control is not None:
            self._control.join(max(deadline - time.monotonic(), 1.0))
        self.scheduler.stop()  # in case the control thread was starting it meanwhile
        if self.notifier is not None:
            self.notifier.stop(max(deadline - time.monotonic(), 1.0))
        self.watch.stop()
        self.catalog_copier.stop()
        try:
            if unfinished:
                released = queue.release(self.catalog, self.id, unfinished)
                log.info("daemon %s: %d unfinished job(s) handed back", self.id, released)
            self.leadership.release()
            self.is_leader = False
            leadership.unregister(self.catalog, self.id)
        except DrdError as error:
            log.warning("daemon %s could not record its stop: %s", self.id,
                        one_line_error(error))
        log.info("daemon %s stopped", self.id)

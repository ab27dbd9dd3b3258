"""Workers: threads that claim queued work and run it, one item at a time each.

A worker claims an item (:func:`drd.daemon.queue.claim`), runs the handler of its kind
with a ``should_stop`` that turns True when the daemon stops or the item's lease was lost,
and records the outcome (:func:`drd.daemon.queue.complete`). A handler that raises ends
its run ``failed`` with a masked one-line error (retried with backoff, then an alert).
When the daemon stops, workers claim nothing more; a run that stopped at a checkpoint
before finishing is handed back (:func:`drd.daemon.queue.release`) and resumed by the
next claim, not lost and not counted twice.

The handlers call the services lazily (imported when a job of their kind runs):
replication, verification, retention, the keyed check, restore drills.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.config import Config
from drd.daemon import queue
from drd.daemon.locks import SystemBusy, system_lock
from drd.daemon.queue import Claim, one_line_error
from drd.errors import DrdError, OperationError

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BUSY_RETRY = dt.timedelta(seconds=30)
"""How long an item whose system is locked by a conflicting run waits before the next claim."""
EXCLUSIVE_KINDS = frozenset({"retention"})
"""Kinds that run alone on their system (see :mod:`drd.daemon.locks`)."""
PROGRESS_SECONDS = 5.0


@dataclass
class JobContext:
    """What a handler gets: the daemon's means, the claimed item, when to stop, and
    ``progress`` (a :class:`~drd.restic.ProgressEvent` callback that records the run's
    progress on its work item, at most every few seconds)."""

    catalog: Catalog
    master_key: Any
    keystore: Any
    config: Config
    claim: Claim
    should_stop: Callable[[], bool]
    progress: Callable[[Any], None] | None = None
    secrets: list[Any] = field(default_factory=list)


class ProgressRecorder:
    """Writes a run's progress into its work item's ``checkpoint`` (objects and bytes
    done of the total, and when), at most every ``interval`` seconds, so that operators
    see how far a long run got. Called from the service's threads; never raises."""

    def __init__(self, catalog: Catalog, daemon_id: str, item_id: int,
                 interval: float = PROGRESS_SECONDS) -> None:
        self.catalog = catalog
        self.daemon_id = daemon_id
        self.item_id = item_id
        self.interval = interval
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        now = time.monotonic()
        with self._lock:
            done = getattr(event, "files_done", 0) >= getattr(event, "total_files", 1)
            if now - self._last < self.interval and not done:
                return
            self._last = now
        checkpoint = {"objects_done": getattr(event, "files_done", None),
                      "objects_total": getattr(event, "total_files", None),
                      "bytes_done": getattr(event, "bytes_done", None),
                      "bytes_total": getattr(event, "total_bytes", None),
                      "at": dt.datetime.now(dt.UTC).isoformat()}
        try:
            queue.save_checkpoint(self.catalog, self.daemon_id, self.item_id, checkpoint)
        except DrdError as error:
            log.debug("progress of item %d not recorded: %s", self.item_id,
                      one_line_error(error))


@dataclass(frozen=True)
class JobResult:
    """How a run ended: ``outcome`` (succeeded, failed, partial), bytes read or copied,
    a masked one-line ``error``."""

    outcome: str
    bytes_processed: int | None = None
    error: str | None = None
    retry: bool = True


Handler = Callable[[JobContext], JobResult]


def _collect_errors(document: Any, found: list[str], where: str = "") -> None:
    if len(found) >= 3:
        return
    if isinstance(document, dict):
        label = document.get("store") or document.get("system") or where
        for key, value in document.items():
            if key in ("error", "errors", "problems") and value:
                texts = value if isinstance(value, (list, tuple)) else [value]
                found.extend(f"{label}: {text}" if label else str(text)
                             for text in texts[:3 - len(found)])
            elif isinstance(value, (dict, list)):
                _collect_errors(value, found, str(label or ""))
    elif isinstance(document, list):
        for value in document:
            _collect_errors(value, found, where)


def _report_error(report: Any) -> str | None:
    """The first few errors a service's report names (``as_dict()``, searched for
    ``error``/``errors`` entries, each labelled with its store or system)."""
    found: list[str] = []
    try:
        _collect_errors(report.as_dict(), found)
    except AttributeError:
        return None
    return "; ".join(found) or None


def result_of(report: Any, bytes_attribute: str | None = None) -> JobResult:
    """A service's report as a :class:`JobResult`: ``partial`` when it ``stopped`` early
    (asked to); ``succeeded`` when ``report.ok``; otherwise ``partial`` when it processed
    bytes, else ``failed``."""
    processed = getattr(report, bytes_attribute, None) if bytes_attribute else None
    if getattr(report, "stopped", False):
        # a run that stopped part-way is not done, whatever its ``ok`` says
        return JobResult("partial", processed, "stopped before the end; it resumes on the "
                         "next claim")
    if report.ok:
        return JobResult("succeeded", processed)
    error = one_line_error(_report_error(report) or "the run reported problems "
                           "(see the job's report in the log)")
    return JobResult("partial" if processed else "failed", processed, error)


def _unavailable(what: str, error: ImportError) -> OperationError:
    return OperationError(f"{what} is not available in this drd ({error})")


def run_replicate(context: JobContext) -> JobResult:
    """A replication pass of the claimed system, with the confirmation of its reported
    snapshots (:mod:`drd.confirmation`) before it -- a report the stores bear out counts
    within seconds of being claimed, whatever the pass then copies -- and again after it,
    when some still wait (the pass may have copied their snapshots to more stores)."""
    try:
        from drd.confirmation.run import confirm_reports
        from drd.replication.run import replicate
    except ImportError as error:
        raise _unavailable("replication", error) from None
    system = context.claim.system
    confirmed = confirm_reports(context.catalog, context.master_key, system)
    report = replicate(context.catalog, context.master_key, context.config,
                       systems=[system], stores=None,
                       progress=context.progress,
                       should_stop=context.should_stop)
    if confirmed.waiting and not context.should_stop():
        confirm_reports(context.catalog, context.master_key, system)
    return result_of(report, "bytes_copied")


def run_verify(context: JobContext) -> JobResult:
    try:
        from drd.verification import verify
    except ImportError as error:
        raise _unavailable("verification", error) from None
    report = verify(context.catalog, context.master_key, context.config,
                    systems=[context.claim.system], stores=[context.claim.store], full=False,
                    budget_bytes=None, progress=context.progress,
                    should_stop=context.should_stop)
    result = result_of(report, "bytes_read")
    if result.outcome != "succeeded" and not report.stopped and only_losses(report):
        # a lost object stays lost however often the budget is read again: the damage
        # alert is the news, and the next scheduled run looks again
        return dataclasses.replace(result, retry=False)
    return result


def only_losses(report: Any) -> bool:
    """True when all a verification report found wrong is lost objects (no read errors,
    nothing that waits for healing)."""
    runs = getattr(report, "runs", [])
    return bool(runs) and all(not run.errors and not run.unhealed for run in runs) \
        and any(run.lost for run in runs)


def run_retention_job(context: JobContext) -> JobResult:
    try:
        from drd.retention.run import run_retention
    except ImportError as error:
        raise _unavailable("retention", error) from None
    report = run_retention(context.catalog, context.master_key, context.keystore,
                           context.config, context.claim.system, actor="scheduler")
    return result_of(report)


def run_check(context: JobContext) -> JobResult:
    try:
        from drd.keyed_check import run_keyed_check
    except ImportError as error:
        raise _unavailable("the keyed check", error) from None
    report = run_keyed_check(context.catalog, context.master_key, context.keystore,
                             context.config, context.claim.system, context.claim.store,
                             actor="scheduler")
    return result_of(report)


def run_drill(context: JobContext) -> JobResult:
    """One scheduled drill of the claimed system, from the store next in rotation. A
    failed drill is a ``failed`` run that is not retried (the ``drill_failed`` alert is
    the news; the next slot drills the next store); a store that cannot be drilled is a
    failed drill like any other, never skipped."""
    try:
        from restore_drills.run import run_drill as drill
    except ImportError as error:
        raise _unavailable("restore drills", error) from None
    outcome = drill(context.catalog, context.master_key, context.keystore, context.config,
                    context.config.home, context.claim.system, actor="scheduler",
                    trigger="scheduler", should_stop=context.should_stop)
    restored = (outcome.report.get("restore") or {}).get("bytes")
    if outcome.passed:
        return JobResult("succeeded", restored)
    reasons = outcome.report.get("reasons") or ["the drill failed"]
    return JobResult("failed", restored,
                     one_line_error(f"drill {outcome.id} from {outcome.report['store']}: "
                                    f"{reasons[0]}"), retry=False)


HANDLERS: Mapping[str, Handler] = {
    "replicate": run_replicate,
    "verify": run_verify,
    "retention": run_retention_job,
    "check": run_check,
    "drill": run_drill,
}


class RunningItems:
    """The items this daemon's workers hold, for the heartbeat to renew; an item whose
    lease was lost gets its ``lost`` event set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, threading.Event] = {}

    def add(self, item_id: int) -> threading.Event:
        with self._lock:
            event = self._items[item_id] = threading.Event()
            return event

    def remove(self, item_id: int) -> None:
        with self._lock:
            self._items.pop(item_id, None)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._items)

    def mark_lost(self, item_ids) -> None:
        with self._lock:
            for item_id in item_ids:
                event = self._items.get(item_id)
                if event is not None:
                    event.set()


class Worker(threading.Thread):
    """One worker thread of a daemon; stops claiming when ``stopping`` is set."""

    def __init__(self, name: str, *, catalog: Catalog, daemon_id: str, config: Config,
                 master_key: Any, keystore: Any, stopping: threading.Event,
                 running: RunningItems, handlers: Mapping[str, Handler] | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__(name=name, daemon=True)
        self.catalog = catalog
        self.daemon_id = daemon_id
        self.config = config
        self.master_key = master_key
        self.keystore = keystore
        self.stopping = stopping
        self.running = running
        self.handlers = handlers if handlers is not None else HANDLERS
        self.poll_seconds = poll_seconds
        self.lease = lease_of(config)
        self.current: int | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                claimed = queue.claim(self.catalog, self.daemon_id, self.lease)
            except DrdError as error:
                log.warning("%s: cannot claim work: %s", self.name, one_line_error(error))
                self.stopping.wait(self.poll_seconds * 5)
                continue
            except Exception:  # noqa: BLE001 - a worker must outlive a bug
                log.exception("%s: claiming failed", self.name)
                self.stopping.wait(self.poll_seconds * 5)
                continue
            if claimed is None:
                self.stopping.wait(self.poll_seconds)
                continue
            try:
                self.run_item(claimed)
            except DrdError as error:
                # the catalog went away while recording: the lease lapses and the item
                # is resumed by the next claim
                log.warning("%s: cannot record job %s: %s", self.name, claimed.job_name,
                            one_line_error(error))
            except Exception:  # noqa: BLE001 - a worker must outlive a bug
                log.exception("%s: recording job %s failed", self.name, claimed.job_name)

    def run_item(self, claimed: Claim) -> None:
        """Run one claimed item and record its outcome (or hand it back on a stop)."""
        lost = self.running.add(claimed.item_id)
        self.current = claimed.item_id
        log.info("%s: running %s (%s, attempt %d%s)", self.name, claimed.job_name,
                 claimed.reason, claimed.attempts, ", resumed" if claimed.resumed else "")

        def should_stop() -> bool:
            return self.stopping.is_set() or lost.is_set()

        context = JobContext(catalog=self.catalog, master_key=self.master_key,
                             keystore=self.keystore, config=self.config, claim=claimed,
                             should_stop=should_stop,
                             progress=ProgressRecorder(self.catalog, self.daemon_id,
                                                       claimed.item_id))
        try:
            handler = self.handlers.get(claimed.kind)
            if handler is None:
                raise OperationError(f"no handler for jobs of kind {claimed.kind!r}")
            with self._system_lock(claimed):
                result = handler(context)
        except SystemBusy as busy:
            queue.release(self.catalog, self.daemon_id, [claimed.item_id],
                          not_before=utcnow() + BUSY_RETRY)
            log.info("%s: job %s waits: %s", self.name, claimed.job_name, busy)
            return
        except Exception as error:  # noqa: BLE001 - a job runner is an edge
            if not isinstance(error, DrdError):
                log.error("%s: job %s raised %s", self.name, claimed.job_name,
                          type(error).__name__, exc_info=True)
            result = JobResult("failed", None, one_line_error(error, context.secrets))
        finally:
            self.running.remove(claimed.item_id)
            self.current = None
        if lost.is_set():
            log.warning("%s: job %s lost its lease; another daemon resumes it", self.name,
                        claimed.job_name)
            return
        if self.stopping.is_set() and result.outcome != "succeeded" and result.retry:
            queue.release(self.catalog, self.daemon_id, [claimed.item_id])
            log.info("%s: job %s stopped at a checkpoint; it resumes on the next claim",
                     self.name, claimed.job_name)
            return
        state = queue.complete(self.catalog, self.daemon_id, claimed.item_id, result.outcome,
                               result.bytes_processed, result.error, retry=result.retry)
        log.info("%s: job %s %s (%s bytes)%s", self.name, claimed.job_name, result.outcome,
                 result.bytes_processed if result.bytes_processed is not None else "no",
                 "" if state in ("done", "failed") else f"; item {state}")


    def _system_lock(self, claimed: Claim):
        """The system's lock: exclusive for retention, shared for the other kinds."""
        if claimed.system_id is None:
            return contextlib.nullcontext()
        return system_lock(self.catalog, claimed.system_id, claimed.system or "?",
                           exclusive=claimed.kind in EXCLUSIVE_KINDS)


def lease_of(config: Config) -> dt.timedelta:
    """How long a claim lasts without a renewal: ``lease_seconds`` from ``drd.yaml``."""
    return dt.timedelta(seconds=config.lease_seconds)

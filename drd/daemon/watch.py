"""The leader's watch: probe the stores, evaluate the alert rules, reconcile systems' keys.

:class:`Watch` runs :func:`drd.alerting.evaluate.run_rules` every ``rules_interval``
seconds (``alerts.rules`` in ``drd.yaml``) in a thread of its own while the daemon leads,
and starts :func:`drd.alerting.probe.probe_stores` every ``probe_interval`` and
:func:`drd.credentials.reconcile.reconcile` every
:data:`~drd.credentials.reconcile.RECONCILE_SECONDS` (making, rotating and disabling
systems' own store keys; ``credential_rotation_days`` in ``drd.yaml``) in short-lived
threads of their own, so that a slow store never delays the rules (``rpo_breached`` above
all). A failed pass is logged and tried again at the next interval: it never stops the
daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from drd.alerting import rules
from drd.alerting.evaluate import run_rules
from drd.alerting.probe import probe_stores
from drd.alerting.rules import RuleSettings
from drd.catalog import Catalog
from drd.credentials.reconcile import (
    LEADER_ISSUE_BUDGET,
    RECONCILE_SECONDS,
    determine_brokers,
    reconcile,
)
from drd.credentials.retention import ensure_default_retention
from drd.daemon.queue import one_line_error
from drd.errors import DrdError

log = logging.getLogger("drd.alerts.watch")

TICK_SECONDS = 1.0
# how often stores whose credential broker is not known yet are probed for it
BROKERS_SECONDS = 600.0


class Watch:
    """Probe and rules on their intervals, in a thread, between :meth:`start` and
    :meth:`stop` (both safe to call again). Without a master key stores are not probed.

    One loop at most: a loop still stuck in a pass when :meth:`stop` gave up waiting is
    told to carry on by the next :meth:`start`, not joined by a second one.
    """

    def __init__(self, config: Any, catalog: Catalog, master_key: Any,
                 probe: Callable[[Catalog, Any], object] = probe_stores) -> None:
        self.config, self.catalog, self.master_key = config, catalog, master_key
        self.probe = probe
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None  # the loop, until it has ended
        self._probe_thread: threading.Thread | None = None
        self._keys_thread: threading.Thread | None = None
        self._next_brokers = 0.0
        self._stop = threading.Event()

    def start(self) -> None:
        with self._lock:
            self._stop.clear()  # a loop still running (or stuck) carries on
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="alert-watch",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("alert watch still in a pass after %g s; it ends after it",
                            timeout)
        keys = self._keys_thread
        if keys is not None and keys is not threading.current_thread():
            # a pass writes the catalog: let it end before whoever stopped us closes it
            keys.join(timeout)

    @property
    def running(self) -> bool:
        """Whether a loop thread is alive (a stopped one may still be ending a pass)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _settings(self) -> RuleSettings:
        try:
            return rules.rule_settings(self.config)
        except ValueError as error:
            log.error("alert rules use their defaults: %s", error)
            return RuleSettings()

    def _stopping(self) -> bool:
        """True, and the loop is forgotten, when it is to end (under the lock, so that a
        :meth:`start` either un-stops this loop or starts a new one, never both)."""
        with self._lock:
            if not self._stop.is_set():
                return False
            if self._thread is threading.current_thread():
                self._thread = None
            return True

    def _loop(self) -> None:
        try:
            settings = self._settings()
            next_probe = next_rules = next_keys = time.monotonic()
            while not self._stopping():
                if self.master_key is not None and time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + settings.probe_interval
                    self._start_probe()
                if self.master_key is not None and time.monotonic() >= next_keys:
                    next_keys = time.monotonic() + RECONCILE_SECONDS
                    self._start_keys()
                if not self._stop.is_set() and time.monotonic() >= next_rules:
                    next_rules = time.monotonic() + settings.rules_interval
                    self._guarded("alert rules", lambda: self._rules(settings))
                self._stop.wait(TICK_SECONDS)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _start_probe(self) -> None:
        """Probe in a thread of its own, unless the last probe is still running (it ends
        within the probe's deadline plus the catalog's time)."""
        if self._probe_thread is not None and self._probe_thread.is_alive():
            return
        self._probe_thread = threading.Thread(
            target=self._guarded, name="alert-probe", daemon=True,
            args=("store probe", lambda: self.probe(self.catalog, self.master_key)))
        self._probe_thread.start()

    def _start_keys(self) -> None:
        """Reconcile systems' keys in a thread of its own, unless the last pass still runs."""
        if self._keys_thread is not None and self._keys_thread.is_alive():
            return
        self._keys_thread = threading.Thread(
            target=self._guarded, name="credentials", daemon=True,
            args=("credential reconciliation", self._keys))
        self._keys_thread.start()

    def _keys(self) -> None:
        if time.monotonic() >= self._next_brokers:  # slow to probe: every few minutes
            self._next_brokers = time.monotonic() + BROKERS_SECONDS
            determine_brokers(self.catalog, self.master_key)
        ensure_default_retention(self.catalog, self.master_key)
        days = int(getattr(self.config, "credential_rotation_days", 0) or 0)
        done = reconcile(self.catalog, self.master_key,
                         rotate_after=timedelta(days=days) if days > 0 else None,
                         issue_budget=LEADER_ISSUE_BUDGET)
        if done.changed:
            log.info("credentials: %d made, %d rotated, %d disabled, %d confirmed",
                     done.issued, done.superseded, done.disabled, done.confirmed)

    def _rules(self, settings: RuleSettings) -> None:
        done = run_rules(self.catalog, settings)
        if done.raised or done.resolved:
            log.info("alert rules: %d raised, %d resolved", len(done.raised),
                     len(done.resolved))

    @staticmethod
    def _guarded(what: str, work: Callable[[], object]) -> None:
        try:
            work()
        except DrdError as error:
            log.warning("%s failed (tried again later): %s", what, one_line_error(error))
        except Exception:  # noqa: BLE001 - the daemon must outlive a bug in a pass
            log.exception("%s failed (tried again later)", what)

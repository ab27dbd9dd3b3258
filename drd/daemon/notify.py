"""The notifier thread: tells the alert channels, apart from the jobs.

Every daemon runs one (when ``drd.yaml`` names channels). Every
:data:`NOTIFY_SECONDS` it queues due notices (:func:`drd.alerting.notifier.enqueue`) and
sends what is due (:func:`drd.alerting.notifier.deliver_due`); claims in the catalog keep
each notice to one daemon. A channel that is down costs this thread its timeout, never a
job: jobs only write alert rows. Nothing here raises: a pass that fails is logged and the
next one tries again.
"""

from __future__ import annotations

import logging
import threading

from drd.alerting.notifier import deliver_due, enqueue
from drd.alerting.settings import AlertSettings, alert_settings
from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.config import Config
from drd.daemon.queue import one_line_error
from drd.errors import DrdError, UserError

log = logging.getLogger("drd.alerts.notify")

NOTIFY_SECONDS = 3.0


class Notifier:
    """A daemon thread running notifier passes until :meth:`stop`."""

    def __init__(self, catalog: Catalog, settings: AlertSettings,
                 interval: float | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.interval = interval or NOTIFY_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alert-notifier", daemon=True)

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def run_once(self) -> None:
        """One pass: queue what is due, send what is due. Raises nothing."""
        try:
            enqueue(self.catalog, self.settings, utcnow())
            deliver_due(self.catalog, self.settings, utcnow())
        except DrdError as error:
            log.warning("alert notifier pass failed: %s", one_line_error(error))
        except Exception:  # noqa: BLE001 - a notifier bug must not end the thread
            log.exception("alert notifier error (it carries on)")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the pass in progress (a send ends within its channel's timeout)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def start_notifier(config: Config, catalog: Catalog) -> Notifier | None:
    """Start the notifier of ``config``'s channels; None when it names none."""
    try:
        settings = alert_settings(config.alerts, centre_url=config.public_url)
    except ValueError as error:
        raise UserError(f"alert settings: {error}") from None
    if not settings.channels:
        return None
    log.info("alert channels: %s", ", ".join(
        f"{channel.name} ({channel.type})" for channel in settings.channels))
    return Notifier(catalog, settings).start()

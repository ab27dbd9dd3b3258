"""Where restic writes: the system's repository in every store, through one endpoint.

A *target* is a context manager that yields the :class:`~drd.restic.Repository` restic
runs against, and afterwards says which stores hold everything (:meth:`outcome`):

- :class:`FanoutTarget` (backups and enrollment): the fan-out endpoint
  (:mod:`agents.fanout`) serves restic's REST protocol on 127.0.0.1 and writes every
  object to all of the policy's stores; the run is durable when ``min_copies`` stores
  acknowledged every object.
- :class:`DirectTarget`: restic straight at one store (reading snapshots, and tests).

:func:`open_stores` opens the assignment's stores rooted at the system's repository
(``<store url>/<repository_path>``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from drd.restic import Repository
from drd.secrets import Secret
from drd.stores import Store, StoreError, open_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreState:
    """What one store holds after a run: ``complete`` when it has every object written."""

    complete: bool
    missing_objects: int = 0
    missing: tuple[str, ...] = ()
    error: str | None = None

    def as_report(self) -> dict[str, Any]:
        """The contract's per-store entry of a SnapshotReport."""
        return {"complete": self.complete, "missing_objects": self.missing_objects,
                "missing": list(self.missing)}


@dataclass(frozen=True)
class TargetOutcome:
    """Per-store states of a run, and whether the run is durable (``min_copies`` met)."""

    durable: bool
    stores: dict[str, StoreState] = field(default_factory=dict)
    min_copies: int = 1

    def complete_stores(self) -> list[str]:
        return [name for name, state in self.stores.items() if state.complete]

    def describe_shortfall(self) -> str:
        """Why the run is not durable, for a message."""
        complete = self.complete_stores()
        lacking = [f"{name} ({state.error or f'{state.missing_objects} objects missing'})"
                   for name, state in self.stores.items() if not state.complete]
        return (f"only {len(complete)} of {len(self.stores)} stores hold every object, "
                f"the policy needs {self.min_copies}; lacking: {', '.join(lacking) or '-'}")


class Target(Protocol):
    """A place restic writes to: ``with target as repository: ...``; then ``outcome()``.

    ``can_be_durable()`` may be asked during the run: False once the run can no longer
    end durable, whatever restic does next (restic is then better stopped than left to
    retry every refused upload, about 50 s in restic 0.14).
    """

    def __enter__(self) -> Repository: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def outcome(self) -> TargetOutcome: ...

    def can_be_durable(self) -> bool: ...


# what a system may replace (and delete) in its repository: restic's lock files
OVERWRITABLE = ("locks/",)


def open_stores(assignment) -> list[Store]:
    """The assignment's stores, each rooted at the system's repository, in order.

    Raises:
        UserError: a store the agent cannot open (bad URL, no keys).
    """
    return [open_store(store.spec(assignment.repository_path), store.access_key_id,
                       store.secret_access_key, **_options(store))
            for store in assignment.stores]


def _options(store) -> dict:
    """What a brokered store asks of the agent's writes: create-only outside ``locks/``,
    and no lock headers where the bucket locks by default."""
    options: dict = {}
    if store.write_once:
        options["overwritable"] = OVERWRITABLE
    if store.locked_by_bucket:
        options["locked_by_bucket"] = True
    return options


class FanoutTarget:
    """The policy's stores behind the fan-out endpoint, for one run.

    Args:
        stores: the stores, rooted at the repository (:func:`open_stores`).
        password: the repository password.
        min_copies, object_lock_days: from the policy.
        display: how the repository is named in messages.
    """

    def __init__(self, stores: Sequence[Store], password: Secret, *, min_copies: int,
                 object_lock_days: int, display: str) -> None:
        self._stores = list(stores)
        self._password = password
        self._min_copies = min_copies
        self._object_lock_days = object_lock_days
        self._display = display
        self._endpoint = None
        self._report = None

    def __enter__(self) -> Repository:
        from agents.fanout import FanoutEndpoint

        self._endpoint = FanoutEndpoint(self._stores, min_copies=self._min_copies,
                                        object_lock_days=self._object_lock_days)
        self._endpoint.__enter__()
        try:
            url = self._endpoint.restic_url
            return Repository(url=url if isinstance(url, Secret) else Secret(url),
                              password=self._password,
                              display=f"{self._display} (fan-out)")
        except BaseException:
            self._endpoint.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            try:
                endpoint.__exit__(*exc_info)
            finally:
                self._report = endpoint.report()

    def can_be_durable(self) -> bool:
        """False once fewer than ``min_copies`` of the stores are healthy (see
        :attr:`agents.fanout.FanoutEndpoint.can_be_durable`)."""
        endpoint = self._endpoint
        return endpoint is None or endpoint.can_be_durable

    def outcome(self) -> TargetOutcome:
        """The endpoint's report as a :class:`TargetOutcome` (after the ``with`` block)."""
        report = self._report
        if report is None and self._endpoint is not None:
            report = self._endpoint.report()
        if report is None:
            return TargetOutcome(durable=False, min_copies=self._min_copies)
        states = {}
        for name, entry in report.as_dict().items():
            store_outcome = report.stores.get(name)
            error = getattr(store_outcome, "error", None)
            states[name] = StoreState(
                complete=bool(entry.get("complete")),
                missing_objects=int(entry.get("missing_objects", 0)),
                missing=tuple(entry.get("missing", ())),
                error=str(error) if error else None,
            )
        return TargetOutcome(durable=bool(report.durable), stores=states,
                             min_copies=self._min_copies)


class DirectTarget:
    """restic straight at one store's copy of the repository (no fan-out).

    Used to read (snapshots) from the first store that answers, and by tests that
    need a repository without the fan-out endpoint.
    """

    def __init__(self, store: Store, password: Secret, *, display: str | None = None) -> None:
        self._store = store
        self._password = password
        self._display = display or f"{store.name}"

    def __enter__(self) -> Repository:
        url, env = self._store.restic_location()
        return Repository(url=Secret(url), password=self._password, env=env,
                          display=self._display)

    def __exit__(self, *exc_info: object) -> None:
        return None

    def outcome(self) -> TargetOutcome:
        return TargetOutcome(durable=True, stores={self._store.name: StoreState(complete=True)})

    def can_be_durable(self) -> bool:
        return True


def put_everywhere(stores: Sequence[Store], key: str, data: bytes, *,
                   retain_until=None) -> dict[str, str]:
    """Put ``data`` under ``key`` in every store; one store failing does not stop the
    others. Object Lock retention is asked only of stores that support it.

    Returns:
        ``{store name: error}`` for the stores that failed (empty when all took it).
    """
    failures: dict[str, str] = {}
    for store in stores:
        try:
            retention = retain_until if retain_until is not None and store.supports_object_lock \
                else None
            store.put(key, data, length=len(data), retain_until=retention)
        except (StoreError, OSError, ValueError) as error:
            logger.warning("could not write %s to store %s: %s", key, store.name, error)
            failures[store.name] = str(error)
    return failures

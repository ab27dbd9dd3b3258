"""Keyed checks: ``restic check`` of a system's repository in one store alone.

Keyless verification (each object's SHA-256 against its name) proves every copy intact
byte for byte; ``restic check`` proves, with the password, that a store's copy is a
consistent repository: every index, tree and snapshot readable and every pack the index
names present with the right size. The daemon runs it per store on the policy's
``verification.check_schedule`` (weekly by default).

The password is unsealed from escrow for the run (an ``escrow.unseal`` audit entry),
kept in memory and handed to restic through a pipe. A check that finds errors, or
cannot run, opens an alert ``check_failed`` for that system and store; a passing check
resolves it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from drd.catalog import Catalog
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.errors import OperationError, UserError
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services.alerts import raise_alert, resolve_alert
from drd.services.escrow import unseal_password
from drd.services.repositories import (
    RepositoryStore,
    SystemRepository,
    open_repositories,
)

log = logging.getLogger("drd.keyed_check")

# error lines kept in a report and an alert (restic may print thousands)
KEPT_ERRORS = 20


@dataclass
class KeyedCheckReport:
    """The outcome of one keyed check.

    ``ok``: restic check passed. ``errors``: restic's error lines (the first
    :data:`KEPT_ERRORS`), or why the check could not run (``ran`` false then).
    """

    system: str
    store: str
    ok: bool = False
    ran: bool = False
    errors: list[str] = field(default_factory=list)
    read_data_subset: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "store": self.store, "ok": self.ok, "ran": self.ran,
                "errors": list(self.errors), "read_data_subset": self.read_data_subset,
                "seconds": round(self.seconds, 3)}


def run_keyed_check(catalog: Catalog, master_key: MasterKey, keystore: KeyStore,
                    config: Config, system: str, store: str, *, actor: str = "scheduler",
                    read_data_subset: str | None = None) -> KeyedCheckReport:
    """``restic check`` of ``system``'s repository in ``store`` alone.

    ``read_data_subset`` (restic's ``n/t``, ``p%`` or a size) also reads that share of
    the packs; by default only the structure is checked, since keyless verification
    re-reads every byte anyway.

    A failed check, or one that could not run (store down, password refused), is a
    report with ``ok`` false and an alert, not an exception.

    Raises:
        UserError: an unknown system or store, or a store the system is not kept in.
    """
    started = time.monotonic()
    repositories = open_repositories(catalog, master_key, [system], stores=[store])
    if not repositories:
        raise UserError(f"system {system!r} is not kept in store {store!r} (see its policy)")
    (repository,) = repositories
    report = check_store(catalog, keystore, config, repository, repository.store(store),
                         actor=actor, read_data_subset=read_data_subset)
    report.seconds = time.monotonic() - started
    return report


def check_store(catalog: Catalog, keystore: KeyStore, config: Config,
                repository: SystemRepository, target: RepositoryStore, *,
                actor: str = "scheduler", reason: str | None = None,
                password: Secret | None = None, alerts: bool = True,
                read_data_subset: str | None = None) -> KeyedCheckReport:
    """``restic check`` of ``repository`` in ``target`` alone, both already open.

    What :func:`run_keyed_check` does once it has opened them, for callers that have
    (retention checks the store it pruned before the others follow). The password is
    unsealed with ``reason`` (audited) unless the caller passes the one it unsealed.
    With ``alerts`` false no ``check_failed`` alert is raised or resolved: the caller
    acts on the outcome itself. Never raises for a failed check or one that could not
    run: see the report's ``ok`` and ``ran``.
    """
    started = time.monotonic()
    system, store = repository.system, target.name
    report = KeyedCheckReport(system=system, store=store, read_data_subset=read_data_subset)
    try:
        if password is None:
            password = unseal_password(catalog, keystore, system, actor=actor,
                                       reason=reason or f"restic check on {store}")
        url, env = target.store.restic_location()
        restic = Restic(config.restic_binary)
        restic_repository = Repository(url=url, password=password, env=env,
                                       display=f"{store}/{system}")
        restic.unlock(restic_repository)  # a killed run's lock would fail the check
        result = restic.check(restic_repository, read_data_subset=read_data_subset)
        report.ran = True
        report.ok = result.ok
        report.errors = list(result.errors[:KEPT_ERRORS])
    except OperationError as error:
        report.errors = [str(error)]
        log.error("restic check of %s on %s could not run: %s", system, store, error)
    report.seconds = time.monotonic() - started
    if report.ok:
        log.info("restic check of %s on %s passed (%.1f s)", system, store, report.seconds)
    if not alerts:
        return report
    with catalog.session() as session:
        if report.ok:
            resolve_alert(session, "check_failed", system_id=repository.system_id,
                          store_id=target.store_id)
        else:
            what = "found errors" if report.ran else "could not run"
            raise_alert(session, "check_failed",
                        f"restic check of {system} on {store} {what}: "
                        + (report.errors[0] if report.errors else "no detail"),
                        system_id=repository.system_id, store_id=target.store_id,
                        details={"errors": report.errors, "ran": report.ran})
    return report

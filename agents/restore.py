"""``drd-agent restore``: restore this system's own snapshots, without the centre.

The agent holds its repository password and its stores' keys (the assignment, fresh from
the centre when it answers, else the cached copy), so a department can restore while the
centre is down. It restores its own system only: naming another is refused.

The stores are tried in the policy's order (the agent has no catalog to say which is
healthiest), each after the other fails, as :func:`drd.services.restore.run_restore`
does for the centre. The snapshots are read from the first store that answers; the
agent does not know which of them the centre holds as partial, so ``latest`` and
``--at`` choose among all of the repository's snapshots (the centre chooses among good
ones only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import click

from agents.assignment import Assignment, current_assignment
from agents.home import AgentHome, resolve_agent_home
from agents.service import make_client
from agents.target import open_stores
from drd.console.restore import make_request, restore_options, run_printed
from drd.errors import UserError
from drd.restic import Repository, Restic
from drd.secrets import Secret
from drd.services.restore import (
    Candidate,
    RestoreEvent,
    RestoreRequest,
    RestoreResult,
    run_restore,
)
from drd.services.restore.plan import RestorePoint, SnapshotInfo, choose_point
from drd.stores import Store, open_store

logger = logging.getLogger(__name__)

PROBE_OPTIONS = {"retry_attempts": 1, "connect_timeout": 3.0, "read_timeout": 10.0,
                 "check_timeout": 5.0}


def restore_own_system(home: AgentHome, request: RestoreRequest, *, system: str | None = None,
                       on_event: Callable[[RestoreEvent], None] | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       use_centre: bool = True) -> RestoreResult:
    """Restore the enrolled system as ``request`` says (``system``, if given, must be it).

    Raises:
        UserError: not enrolled, another system named, a store not in the policy, bad
            input (see :func:`drd.services.restore.run_restore`).
        RestoreFailed: every store failed.
        OperationError: no usable assignment or password.
    """
    config = home.require_enrolled()
    if system is not None and system != config.system:
        raise UserError(f"this agent restores its own system only ({config.system}), not "
                        f"{system!r}: restore other systems from the centre (drd restore)")
    request = request.checked()
    assignment = _assignment(home, use_centre)
    stores = open_stores(assignment)
    names = [store.name for store in stores]
    if request.store is not None:
        if request.store not in names:
            raise UserError(f"system {config.system} is not kept in store {request.store!r} "
                            f"(its stores: {', '.join(names)})")
        stores = [store for store in stores if store.name == request.store]
    password = home.password()
    candidates = [_candidate(assignment, store, password) for store in stores]

    def point_for(restic: Restic, repository: Repository) -> RestorePoint:
        snapshots = [SnapshotInfo(id=s.id, time=s.time, paths=s.paths, tags=s.tags)
                     for s in restic.snapshots(repository)]
        return choose_point(snapshots, snapshot=request.snapshot, at=request.at)

    return run_restore(config.system, candidates, request, point_for,
                       cache_dir=home.cache_dir, on_event=on_event, should_stop=should_stop)


def _assignment(home: AgentHome, use_centre: bool) -> Assignment:
    """A fresh assignment when the centre answers (store keys may have changed), else
    the cached one."""
    client = make_client(home) if use_centre else None
    try:
        assignment, _fresh = current_assignment(home, client)
    finally:
        if client is not None:
            client.close()
    return assignment


def _candidate(assignment: Assignment, store: Store, password: Secret) -> Candidate:
    (settings,) = [entry for entry in assignment.stores if entry.name == store.name]

    def repository() -> Repository:
        url, env = store.restic_location()
        return Repository(url=Secret(url), password=password, env=env,
                          display=f"{store.name}/{assignment.system}")

    def probe() -> None:
        quick = open_store(settings.spec(assignment.repository_path), settings.access_key_id,
                           settings.secret_access_key, **PROBE_OPTIONS)
        quick.head("config")

    return Candidate(store.name, repository, probe)


@click.command("restore")
@click.option("--home", envvar="DRD_AGENT_HOME", type=click.Path(file_okay=False),
              help="Agent home (default $DRD_AGENT_HOME).")
@click.argument("system", required=False)
@restore_options
def restore_command(home: str | None, system: str | None, snapshot: str | None,
                    at: str | None, store: str | None, target: Path,
                    includes: tuple[str, ...], overwrite: bool, verify: bool,
                    as_json: bool) -> None:
    """Restore this system's snapshot into a directory (--target).

    SYSTEM, if given, must be this agent's own system. Reads from the policy's stores in
    order, each after the other fails (even mid-way), into a clean target; works while
    the centre is down (the cached assignment). Exit status 0 restored, 1 every store
    failed, 2 bad input (nothing written).
    """
    agent_home = AgentHome(resolve_agent_home(home))
    request = make_request(target=target, snapshot=snapshot, at=at, store=store,
                           includes=includes, overwrite=overwrite, verify=verify)
    run_printed(lambda console: restore_own_system(agent_home, request, system=system,
                                                   on_event=console),
                as_json=as_json)

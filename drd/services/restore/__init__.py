"""Restoring a system's snapshot into a directory: ``drd restore`` and ``drd-agent restore``.

- :mod:`~drd.services.restore.plan` (pure): ``--at``, the restore point, path checks, the
  order of the stores;
- :mod:`~drd.services.restore.staging`: the target, the staging tree, the final move;
- :mod:`~drd.services.restore.engine`: the attempts, store after store (shared by the
  centre and the agent);
- :mod:`~drd.services.restore.centre`: the centre's side (catalog, escrow, audit log).

This package imports no catalog code itself, so the agent can use the engine; import
:mod:`drd.services.restore.centre` for the centre's service.
"""

from drd.services.restore.engine import (
    Attempt,
    Candidate,
    RestoreEvent,
    RestoreFailed,
    RestoreInterrupted,
    RestoreRequest,
    RestoreResult,
    run_restore,
)
from drd.services.restore.plan import AT_HELP, parse_at

__all__ = ["AT_HELP", "Attempt", "Candidate", "RestoreEvent", "RestoreFailed",
           "RestoreInterrupted", "RestoreRequest", "RestoreResult", "parse_at", "run_restore"]

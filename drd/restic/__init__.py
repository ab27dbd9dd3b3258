"""restic, run by drd: the one place that starts a restic process.

Build a :class:`Repository` (URL, password, store keys) and call :class:`Restic`'s
methods; they return parsed values (:class:`Snapshot`, :class:`BackupSummary`, ...) and
raise :class:`ResticError` subclasses. Commands are pure tuples
(:mod:`drd.restic.commands`); parsers are pure (:mod:`drd.restic.parse`).
"""

from drd.restic.errors import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_LOCK_FAILED,
    EXIT_PARTIAL,
    EXIT_REPOSITORY_MISSING,
    EXIT_SUCCESS,
    EXIT_WRONG_PASSWORD,
    ResticError,
    ResticLocked,
    ResticNotFound,
    ResticRepositoryExists,
    ResticRepositoryMissing,
    ResticSnapshotMissing,
    ResticStopped,
    ResticStoreUnavailable,
    ResticTooOld,
    ResticUnavailable,
    ResticWrongPassword,
    SourceMissing,
)
from drd.restic.runner import Restic
from drd.restic.types import (
    BackupSummary,
    CheckResult,
    ForgetResult,
    ItemError,
    KeepRules,
    Node,
    ProgressEvent,
    PruneResult,
    Repository,
    RepositoryConfig,
    ResticVersion,
    RestoreSummary,
    Snapshot,
)
from drd.restic.version import MINIMUM_VERSION

__all__ = [
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_LOCK_FAILED",
    "EXIT_PARTIAL",
    "EXIT_REPOSITORY_MISSING",
    "EXIT_SUCCESS",
    "EXIT_WRONG_PASSWORD",
    "MINIMUM_VERSION",
    "BackupSummary",
    "CheckResult",
    "ForgetResult",
    "ItemError",
    "KeepRules",
    "Node",
    "ProgressEvent",
    "PruneResult",
    "Repository",
    "RepositoryConfig",
    "RestoreSummary",
    "Restic",
    "ResticError",
    "ResticLocked",
    "ResticNotFound",
    "ResticRepositoryExists",
    "ResticRepositoryMissing",
    "ResticSnapshotMissing",
    "ResticStopped",
    "ResticStoreUnavailable",
    "ResticTooOld",
    "ResticUnavailable",
    "ResticVersion",
    "ResticWrongPassword",
    "Snapshot",
    "SourceMissing",
]

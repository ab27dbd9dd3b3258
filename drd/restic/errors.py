"""restic's exit codes and the errors the runner raises.

restic 0.14 knows only 0 (success), 1 (fatal) and 3 (snapshot saved, some source files
unreadable). Later releases add 10 (no repository), 11 (lock failed), 12 (wrong password)
and 130 (interrupted); with 0.14 those conditions exit 1 and are recognised from stderr
instead (:func:`classify_failure`).
"""

from __future__ import annotations

from collections.abc import Sequence

from drd.errors import OperationError, UserError

EXIT_SUCCESS = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 3
EXIT_REPOSITORY_MISSING = 10
EXIT_LOCK_FAILED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTERRUPTED = 130

# How many of restic's last stderr lines an error carries.
STDERR_TAIL_LINES = 10

# Matched case-insensitively against restic's stderr.
_WRONG_PASSWORD_TEXT = ("wrong password",)
_REPOSITORY_MISSING_TEXT = ("is there a repository at the following location?",
                            "repository does not exist")
_LOCKED_TEXT = ("repository is already locked",)
_EXISTS_TEXT = ("config file already exists",)
_SNAPSHOT_MISSING_TEXT = ("no matching id found",)
# restic 0.14 adds "Is there a repository at ...?" to any failure to read the config,
# including a store that is down or refuses the keys: those are checked first.
_UNAVAILABLE_TEXT = ("connection refused", "no such host", "i/o timeout", "dial tcp",
                     "connection reset", "signaturedoesnotmatch",
                     "signature we calculated does not match", "invalidaccesskeyid",
                     "access key id you provided does not exist", "accessdenied",
                     "access denied", "x509:", "tls:")


class ResticError(OperationError):
    """restic ran and failed.

    ``command`` is the argv that ran (safe: no URL, no password), ``exit_code`` restic's
    status and ``stderr_tail`` its last stderr lines with every secret masked.
    """

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        exit_code: int | None = None,
        stderr_tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.exit_code = exit_code
        self.stderr_tail = tuple(stderr_tail)


class ResticStopped(ResticError):
    """restic was stopped before it finished because the caller's ``should_stop`` said so
    (SIGINT, so that restic removes its lock)."""


class ResticWrongPassword(ResticError):
    """The password opens no key of the repository."""


class ResticRepositoryMissing(ResticError):
    """No repository at the URL (never initialised, wrong bucket or prefix)."""


class ResticRepositoryExists(ResticError):
    """``init`` found a repository already there."""


class ResticSnapshotMissing(ResticError):
    """The snapshot asked for is not in the repository."""


class ResticStoreUnavailable(ResticError):
    """The store behind the repository is unreachable or refuses the credentials."""


class ResticLocked(ResticError):
    """Another restic process holds a lock the command needs."""


class ResticUnavailable(OperationError):
    """No usable restic binary: missing, not runnable, or too old."""


class ResticNotFound(ResticUnavailable):
    """The restic binary does not exist or cannot be run."""


class ResticTooOld(ResticUnavailable):
    """The restic binary is older than drd supports."""


class SourceMissing(UserError):
    """Some paths to back up do not exist.

    ``paths`` are the missing ones. When restic itself reported them (the path vanished
    after drd checked it), restic 0.14 has still saved a snapshot of the rest:
    ``snapshot_id`` names it, else it is ``None``.
    """

    def __init__(self, message: str, *, paths: Sequence[str], snapshot_id: str | None = None):
        super().__init__(message)
        self.paths = tuple(paths)
        self.snapshot_id = snapshot_id


def classify_failure(exit_code: int, stderr_lines: Sequence[str]) -> type[ResticError]:
    """Return the error class for a failed run from its exit code and stderr text.

    Pure. The newer exit codes win; for 0.14, which exits 1 for all of these, the
    stderr text decides. Anything unrecognised is a plain :class:`ResticError`.
    """
    by_code = {
        EXIT_WRONG_PASSWORD: ResticWrongPassword,
        EXIT_REPOSITORY_MISSING: ResticRepositoryMissing,
        EXIT_LOCK_FAILED: ResticLocked,
    }
    if exit_code in by_code:
        return by_code[exit_code]
    text = "\n".join(stderr_lines).lower()
    for needles, error_class in (
        (_WRONG_PASSWORD_TEXT, ResticWrongPassword),
        (_UNAVAILABLE_TEXT, ResticStoreUnavailable),
        (_REPOSITORY_MISSING_TEXT, ResticRepositoryMissing),
        (_LOCKED_TEXT, ResticLocked),
        (_EXISTS_TEXT, ResticRepositoryExists),
        (_SNAPSHOT_MISSING_TEXT, ResticSnapshotMissing),
    ):
        if any(needle in text for needle in needles):
            return error_class
    return ResticError


def failure_message(
    error_class: type[ResticError], subcommand: str, display: str, exit_code: int,
    stderr_tail: Sequence[str],
) -> str:
    """The message of a failed run: what failed, where, what to do, then restic's words.

    Pure. ``stderr_tail`` must already be masked.
    """
    advice = {
        ResticWrongPassword: f"the password does not open repository {display}: check that "
                             "the system's escrowed password is the one it was created with",
        ResticRepositoryMissing: f"there is no restic repository at {display}: check the "
                                 "store's URL, bucket and prefix, or initialise it",
        ResticRepositoryExists: f"a restic repository already exists at {display}",
        ResticSnapshotMissing: f"no such snapshot in repository {display}: list them with "
                               "'drd snapshots'",
        ResticStoreUnavailable: f"the store of repository {display} is unreachable or "
                                "refuses the credentials: check that it is up, its "
                                "endpoint and its keys",
        ResticLocked: f"repository {display} is locked by another restic process: wait for "
                      "it, or remove a stale lock with 'restic unlock'",
    }.get(error_class, f"restic {subcommand} failed on {display} (exit status {exit_code})")
    if error_class is not ResticError:
        advice = f"restic {subcommand}: {advice} (exit status {exit_code})"
    if stderr_tail:
        return advice + "\nrestic said:\n  " + "\n  ".join(stderr_tail)
    return advice

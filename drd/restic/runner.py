"""The restic runner: every restic command drd runs goes through :class:`Restic`.

A method builds its command with :mod:`drd.restic.commands`, runs it with
:func:`drd.restic.process.run_process`, parses the output with :mod:`drd.restic.parse`
and turns a failure into a :class:`~drd.restic.errors.ResticError` carrying restic's
last stderr lines, masked.

Secrets: the repository URL and store keys travel in the child's environment, the
password through a pipe: ``os.pipe()``, the password written and the write end closed
before restic starts, the read end inherited as ``/dev/fd/N`` and named by
``--password-file /dev/fd/N``. The password is never in argv, the environment, or on
disk. The parent's ``RESTIC_*`` and ``AWS_*`` variables are not inherited.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from os import PathLike, fspath
from pathlib import Path

from drd.errors import OperationError, UserError
from drd.restic import commands, parse
from drd.restic.errors import (
    EXIT_FATAL,
    EXIT_PARTIAL,
    EXIT_SUCCESS,
    ResticError,
    ResticNotFound,
    ResticStopped,
    SourceMissing,
    classify_failure,
    failure_message,
)
from drd.restic.process import Completed, StdinSource, run_process
from drd.restic.types import (
    BackupSummary,
    CheckResult,
    ForgetResult,
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
from drd.restic.version import INSTALL_HINT, cached_version, require_supported

logger = logging.getLogger(__name__)

# A pipe holds at least one page even when the user's pipe quota is spent; a password
# that fits is written whole before restic starts, without a writer thread.
MAX_PASSWORD_BYTES = 4096

Progress = Callable[[ProgressEvent], None]


class Restic:
    """Runs restic for drd.

    ``binary``: path or name of the restic binary (default ``$DRD_RESTIC``, else
    ``restic`` on ``PATH``); found when first needed. ``cache_dir``: restic's cache
    (``--cache-dir``), else restic's default. ``environ``: the environment restic
    inherits, cleaned (default ``os.environ`` at each run).

    Every method that opens a repository first checks, once per binary, that restic is
    at least 0.14. Every method raises :class:`ResticNotFound` when the binary is
    missing, :class:`~drd.restic.errors.ResticTooOld` when it is too old, and a
    :class:`ResticError` (or subclass: wrong password, repository missing, locked, ...)
    when restic fails.
    """

    def __init__(
        self,
        binary: str | PathLike[str] | None = None,
        *,
        cache_dir: str | PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._requested = fspath(binary) if binary is not None else None
        self._cache_dir = cache_dir
        self._environ = environ
        self._binary: str | None = None

    @property
    def binary(self) -> str:
        """The restic binary's path.

        Raises:
            ResticNotFound: it does not exist or is not executable.
        """
        if self._binary is None:
            wanted = self._requested or self._parent_env().get("DRD_RESTIC") or "restic"
            if os.sep in wanted:
                found = wanted if os.path.isfile(wanted) and os.access(wanted, os.X_OK) else None
            else:
                found = shutil.which(wanted, path=self._parent_env().get("PATH"))
            if found is None:
                raise ResticNotFound(f"restic not found at {wanted}: {INSTALL_HINT}")
            self._binary = found
        return self._binary

    def version(self) -> ResticVersion:
        """The binary's version (``restic version``), asked once per binary file.

        Raises:
            ResticNotFound, OperationError: the binary cannot run or its answer is not
                a restic version line.
        """
        binary = self.binary
        return cached_version(binary, lambda: self._detect_version(binary))

    def init(self, repository: Repository) -> str | None:
        """Create a repository (``init`` makes the S3 bucket if missing).

        Returns the new repository's id as restic prints it (10 hex digits in 0.14),
        or ``None`` if restic printed none.

        Raises:
            ResticRepositoryExists: there is one already.
        """
        completed = self._run(repository, commands.init_command())
        return parse.parse_init_output(completed.messages)

    def config(self, repository: Repository) -> RepositoryConfig:
        """The repository's config (full id, format version); also proves the password."""
        completed = self._run(repository, commands.cat_config_command())
        return self._parsed(completed, parse.parse_repository_config, completed.stdout_text)

    def backup(
        self,
        repository: Repository,
        paths: Sequence[str | PathLike[str]],
        *,
        excludes: Iterable[str] = (),
        tags: Iterable[str] = (),
        host: str | None = None,
        progress: Progress | None = None,
        time: datetime | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> BackupSummary:
        """Back up ``paths`` and return the summary, with the snapshot's full id.

        ``time`` dates the snapshot instead of now (whole seconds). ``should_stop`` is
        asked a few times a second; when it returns True restic is stopped (no snapshot)
        and :class:`~drd.restic.errors.ResticStopped` raised.

        ``progress`` gets a :class:`ProgressEvent` per restic ``status`` message; if it
        raises, restic is stopped (no snapshot) and the exception propagates.

        Exit status 3 (some files could not be read) is not an error: the snapshot
        exists, and the summary has ``partial=True`` and the unreadable items in
        ``errors``. The caller decides whether a partial snapshot is good enough.

        Raises:
            SourceMissing: a path does not exist. Checked before running; if a path
                vanishes during the run, restic 0.14 still saves a snapshot of the
                rest, named in the error's ``snapshot_id``.
            ResticError: restic failed.
        """
        path_list = [fspath(path) for path in paths]
        missing = [path for path in path_list if not os.path.lexists(path)]
        if missing:
            raise SourceMissing(
                f"cannot back up to {repository.display}: {_listing(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not exist; fix the policy's "
                "sources or restore the missing paths",
                paths=missing,
            )
        command = commands.backup_command(path_list, tuple(excludes), tuple(tags), host,
                                          time=time)
        return self._backup(repository, command, progress=progress, should_stop=should_stop)

    def backup_stdin(
        self,
        repository: Repository,
        stream: StdinSource,
        filename: str,
        *,
        tags: Iterable[str] = (),
        host: str | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> BackupSummary:
        """Back up the bytes of ``stream`` as one file ``/filename`` in a snapshot.

        ``stream`` is a binary file object (read in 1 MiB chunks), ``bytes``, or an
        iterable of ``bytes`` chunks. Its end of data ends the file. If reading it raises,
        restic is stopped before it sees end of data, so no snapshot of a truncated
        stream is saved; the error is raised as an :class:`OperationError`.

        To back up a command's output safely (a database dump), pass a generator that
        yields the command's stdout and, at the end, raises if the command failed: then
        a failed dump leaves no snapshot behind.

        Raises:
            OperationError: the stream raised (the original exception is the cause).
            ResticError: restic failed.
        """
        command = commands.backup_command(tags=tuple(tags), host=host, stdin_filename=filename)
        return self._backup(repository, command, progress=progress, stdin=stream,
                            should_stop=should_stop)

    def snapshots(
        self,
        repository: Repository,
        *,
        tags: Iterable[str] = (),
        host: str | None = None,
        paths: Iterable[str | PathLike[str]] = (),
        snapshot_ids: Iterable[str] = (),
    ) -> list[Snapshot]:
        """The repository's snapshots, oldest first, filtered as
        :func:`~drd.restic.commands.snapshots_command` describes. Ids that match nothing
        are left out (restic only warns about them)."""
        command = commands.snapshots_command(tuple(tags), host, tuple(paths),
                                             tuple(snapshot_ids))
        completed = self._run(repository, command)
        return self._parsed(completed, parse.parse_snapshots, completed.stdout_text)

    def restore(
        self,
        repository: Repository,
        snapshot_id: str,
        target: str | PathLike[str],
        *,
        includes: Iterable[str] = (),
        verify: bool = False,
        progress: Progress | None = None,
        keep_going: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> RestoreSummary:
        """Restore a snapshot (full id, unique prefix or ``latest``) into ``target``.

        Files land in ``target/<path as backed up>``. With ``verify``, restic re-reads
        every restored file against its blob hashes and fails on a mismatch.
        ``progress`` gets restic's restore ``status`` messages; restic 0.14 prints none,
        so it is simply never called there.

        With ``keep_going``, a restore whose only failures are per-file errors (a
        damaged pack: "ignoring error for PATH") returns them in ``file_errors`` instead
        of raising, so that a drill can name the files affected. restic skips the
        verification after such errors (``verify_seconds`` is then None). ``should_stop``:
        as for :meth:`backup`.

        Raises:
            ResticSnapshotMissing: no such snapshot.
            ResticError: restic failed (including a failed verification, unless it
                was per-file errors and ``keep_going``).
        """
        command = commands.restore_command(snapshot_id, target, tuple(includes), verify)

        def accept(completed: Completed) -> bool:
            if completed.exit_code == EXIT_SUCCESS:
                return True
            return keep_going and completed.exit_code == EXIT_FATAL and any(
                parse.restore_file_error(line) for line in completed.stderr)

        completed = self._run(repository, command, progress=progress, accept=accept,
                              should_stop=should_stop)
        return parse.parse_restore_output(snapshot_id, Path(target), verify, completed.messages,
                                          completed.stderr, completed.started_at,
                                          completed.finished_at)

    def ls(self, repository: Repository, snapshot_id: str, *,
           should_stop: Callable[[], bool] | None = None) -> list[Node]:
        """The files, directories and links of a snapshot (``restic ls --json``), in
        restic's order (depth first, by name).

        Raises:
            ResticSnapshotMissing: no such snapshot.
            ResticError: restic failed.
        """
        completed = self._run(repository, commands.ls_command(snapshot_id),
                              should_stop=should_stop)
        return self._parsed(completed, parse.parse_ls, completed.messages)

    def check(
        self,
        repository: Repository,
        *,
        read_data: bool = False,
        read_data_subset: str | None = None,
    ) -> CheckResult:
        """Check the repository's structure and, optionally, its data.

        A repository with errors is a result, not an exception: ``ok=False`` with
        restic's error lines, because the verifier records and reports it. Failing to
        check at all (wrong password, store unreachable, locked) raises.

        Raises:
            ResticError: the check could not run.
        """
        command = commands.check_command(read_data, read_data_subset)
        completed = self._run(repository, command, accept=lambda c: (
            c.exit_code == EXIT_SUCCESS or parse.check_found_errors(c.stderr_tail)))
        if completed.exit_code == EXIT_SUCCESS:
            return CheckResult(ok=True, read_data=read_data, read_data_subset=read_data_subset)
        errors = parse.check_errors(completed.stderr)
        logger.warning("restic check found errors in %s: %s", repository.display,
                       "; ".join(errors[:5]))
        return CheckResult(ok=False, errors=errors, read_data=read_data,
                           read_data_subset=read_data_subset)

    def forget(
        self,
        repository: Repository,
        snapshot_ids: Iterable[str] = (),
        *,
        prune: bool = False,
        keep: KeepRules | None = None,
    ) -> ForgetResult:
        """Forget snapshots by id (drd's own retention) or by restic's ``keep`` rules,
        and with ``prune`` remove the data only they used.

        Forgetting an id that is already gone is not an error: it is reported in the
        result's ``missing``.

        Raises:
            UserError: both ids and rules, or neither.
            ResticError: restic failed.
        """
        ids = tuple(snapshot_ids)
        command = commands.forget_command(ids, prune, keep)
        completed = self._run(repository, command)
        ignored = [
            found for found in (parse.ignored_snapshot_id(line) for line in completed.stderr)
            if found is not None
        ]
        return self._parsed(completed, parse.parse_forget, completed.stdout_text, ids, ignored)

    def unlock(self, repository: Repository) -> None:
        """Remove stale locks (left by a restic that was killed, e.g. with its daemon).

        Run it before an exclusive operation (check, prune): restic itself treats a
        stale lock as live for 30 minutes. A lock of a restic still running stays.
        """
        self._run(repository, commands.unlock_command())

    def prune(self, repository: Repository, *, max_unused: str | None = None) -> PruneResult:
        """Remove the data that no snapshot uses any more (after :meth:`forget`).

        restic takes an exclusive lock for it: a backup running against the same
        repository makes it fail with :class:`~drd.restic.errors.ResticLocked`.

        Raises:
            UserError: a bad ``max_unused``.
            ResticError: restic failed (a repository with missing data refuses to prune).
        """
        completed = self._run(repository, commands.prune_command(max_unused))
        return parse.parse_prune_output(completed.stdout_text.splitlines())

    # -- internals -------------------------------------------------------------------

    def _backup(
        self,
        repository: Repository,
        command: tuple[str, ...],
        *,
        progress: Progress | None,
        stdin: StdinSource | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> BackupSummary:
        completed = self._run(
            repository, command, progress=progress, stdin=stdin, should_stop=should_stop,
            accept=lambda c: c.exit_code in (EXIT_SUCCESS, EXIT_PARTIAL) or _all_vanished(c),
        )
        vanished = _vanished(completed)
        if completed.exit_code not in (EXIT_SUCCESS, EXIT_PARTIAL):
            raise SourceMissing(
                f"cannot back up to {repository.display}: {_listing(vanished)} vanished "
                "before restic read them; no snapshot was saved",
                paths=vanished,
            )
        item_errors = [
            parse.parse_item_error(message.data)
            for message in (*completed.messages, *completed.stderr_messages)
            if message.type == "error"
        ]
        summary_data = next(
            (m.data for m in completed.messages if m.type == "summary"), None
        )
        if summary_data is None:
            raise OperationError(
                f"restic backup to {repository.display} ended without a summary "
                f"(exit status {completed.exit_code}); restic said:\n  "
                + "\n  ".join(completed.stderr_tail)
            )
        summary = self._parsed(
            completed, parse.parse_backup_summary, summary_data,
            partial=completed.exit_code == EXIT_PARTIAL, errors=item_errors,
        )
        summary = replace(summary, snapshot_id=self._full_snapshot_id(repository, summary))
        if summary.partial:
            logger.warning(
                "restic backup to %s saved snapshot %s without %d unreadable item(s): %s",
                repository.display, summary.short_id, len(item_errors),
                "; ".join(f"{e.item}: {e.message}" for e in item_errors[:5]),
            )
        if vanished:
            raise SourceMissing(
                f"backup to {repository.display}: {_listing(vanished)} vanished before "
                f"restic read {'it' if len(vanished) == 1 else 'them'}; snapshot "
                f"{summary.short_id} was saved without {'it' if len(vanished) == 1 else 'them'}",
                paths=vanished,
                snapshot_id=summary.snapshot_id,
            )
        return summary

    def _full_snapshot_id(self, repository: Repository, summary: BackupSummary) -> str:
        """restic 0.14 reports the short id; newer releases the full one."""
        if len(summary.snapshot_id) == 64:
            return summary.snapshot_id
        matches = [
            snapshot.id
            for snapshot in self.snapshots(repository, snapshot_ids=(summary.snapshot_id,))
            if snapshot.id.startswith(summary.snapshot_id)
        ]
        if len(matches) != 1:
            raise OperationError(
                f"restic saved snapshot {summary.snapshot_id} in {repository.display} but "
                f"'restic snapshots' lists {len(matches)} snapshots with that id"
            )
        return matches[0]

    def _run(
        self,
        repository: Repository | None,
        command: tuple[str, ...],
        *,
        progress: Progress | None = None,
        stdin: StdinSource | None = None,
        accept: Callable[[Completed], bool] = lambda c: c.exit_code == EXIT_SUCCESS,
        should_stop: Callable[[], bool] | None = None,
    ) -> Completed:
        binary = self.binary
        if repository is None:
            return self._execute(commands.restic_argv(binary, command), None, (), None, None)
        require_supported(self.version(), binary)
        password = repository.password.reveal().encode()
        if len(password) > MAX_PASSWORD_BYTES:
            raise UserError(f"the password of {repository.display} is longer than "
                            f"{MAX_PASSWORD_BYTES} bytes")
        read_end, write_end = os.pipe()
        try:
            try:
                _write_all(write_end, password)
            finally:
                os.close(write_end)
            argv = commands.restic_argv(binary, command, password_fd=read_end,
                                        cache_dir=self._cache_dir)
            completed = self._execute(argv, repository, (read_end,), stdin, progress,
                                      should_stop)
        finally:
            os.close(read_end)
        if completed.stopped and not accept(completed):
            raise ResticStopped(f"restic {command[0]} on {repository.display} was stopped "
                                "before it finished", command=completed.command,
                                exit_code=completed.exit_code,
                                stderr_tail=completed.stderr_tail)
        if completed.stdin_error is not None:
            raise OperationError(
                f"reading the data to back up to {repository.display} failed: "
                f"{completed.stdin_error}; restic was stopped and saved no snapshot"
            ) from completed.stdin_error
        if not accept(completed):
            error_class = classify_failure(completed.exit_code, completed.stderr_tail)
            raise error_class(
                failure_message(error_class, command[0], repository.display,
                                completed.exit_code, completed.stderr_tail),
                command=completed.command,
                exit_code=completed.exit_code,
                stderr_tail=completed.stderr_tail,
            )
        return completed

    def _execute(
        self,
        argv: tuple[str, ...],
        repository: Repository | None,
        pass_fds: tuple[int, ...],
        stdin: StdinSource | None,
        progress: Progress | None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Completed:
        display = repository.display if repository is not None else "-"
        logger.info("running %s (repository %s)", argv, display)

        def on_status(message: parse.Message) -> None:
            progress(parse.parse_progress(message.data))

        try:
            completed = run_process(
                argv,
                env=commands.restic_environment(self._parent_env(), repository),
                pass_fds=pass_fds,
                stdin=stdin,
                on_status=on_status if progress is not None else None,
                secrets=repository.secrets() if repository is not None else (),
                should_stop=should_stop,
            )
        except (FileNotFoundError, PermissionError) as error:
            raise ResticNotFound(f"restic not found at {argv[0]}: {error.strerror}; "
                                 f"{INSTALL_HINT}") from error
        logger.debug("restic %s (repository %s) exited with status %d",
                    _subcommand(argv), display, completed.exit_code)
        return completed

    def _detect_version(self, binary: str) -> ResticVersion:
        completed = self._run(None, commands.version_command())
        if completed.exit_code != EXIT_SUCCESS:
            raise ResticError(
                f"'{binary} version' failed (exit status {completed.exit_code}): "
                + " ".join(completed.stderr_tail),
                command=completed.command, exit_code=completed.exit_code,
                stderr_tail=completed.stderr_tail,
            )
        try:
            return parse.parse_version(completed.stdout_text)
        except ValueError as error:
            raise OperationError(f"{binary} does not look like restic: {error}; "
                                 f"{INSTALL_HINT}") from error

    def _parsed(self, completed: Completed, parser, *args, **kwargs):
        """``parser(*args)``, with a ValueError turned into an OperationError."""
        try:
            return parser(*args, **kwargs)
        except ValueError as error:
            raise OperationError(
                f"could not understand the output of {completed.command}: {error}"
            ) from error

    def _parent_env(self) -> Mapping[str, str]:
        return self._environ if self._environ is not None else os.environ


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _subcommand(argv: Sequence[str]) -> str:
    """The subcommand in a full argv (the first word that is not a global option)."""
    words = iter(argv[1:])
    for word in words:
        if word in ("--password-file", "--cache-dir"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return "?"


def _vanished(completed: Completed) -> list[str]:
    return [path for path in map(parse.missing_source, completed.stderr) if path]


def _all_vanished(completed: Completed) -> bool:
    """restic 0.14 exits 1 when every source path is missing."""
    return bool(_vanished(completed)) and any(
        "all target directories/files do not exist" in line for line in completed.stderr_tail
    )


def _listing(paths: Sequence[str]) -> str:
    return ", ".join(paths)

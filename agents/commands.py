"""The policy's own commands: ``before``/``after`` hooks and command sources (dumps).

Commands are argument lists, never shell strings. They run with the agent's environment
minus ``RESTIC_*``, ``AWS_*`` and ``DRD_*`` (a dump has no business with the repository
password or store keys), stdin from ``/dev/null``, in the agent's working directory.

:func:`run_hook` runs a hook to completion. :class:`CommandOutput` runs a command source
and is what restic reads as stdin: it yields the command's stdout, hashes it on the way
(for the manifest: the dump is read once), and *raises at the end* if the command failed,
so that restic is stopped before it sees end of data and saves no snapshot of a
truncated dump (see :meth:`drd.restic.Restic.backup_stdin`).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from drd.errors import OperationError
from drd.secrets import mask

logger = logging.getLogger(__name__)

_STRIPPED_PREFIXES = ("RESTIC_", "AWS_", "DRD_")
TAIL_LINES = 5
TERMINATE_GRACE_SECONDS = 5.0
_READ_CHUNK = 1 << 20


class CommandFailed(OperationError):
    """A hook or a command source failed (could not start, or a non-zero exit)."""


class RunCancelled(OperationError):
    """The run was cancelled (the agent is stopping)."""


def command_environment(parent: Mapping[str, str]) -> dict[str, str]:
    """The environment for the policy's commands: ``parent`` without secrets (pure)."""
    return {name: value for name, value in parent.items()
            if not name.startswith(_STRIPPED_PREFIXES)}


def describe(argv: Sequence[str]) -> str:
    """A command for messages: its words joined, shortened when long (pure)."""
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


def run_hook(argv: Sequence[str], *, stage: str, env: Mapping[str, str],
             timeout: float | None = None) -> None:
    """Run a ``before``/``after`` command and wait for it.

    Args:
        argv: the command.
        stage: ``"before"`` or ``"after"``, for messages.
        env: its environment (see :func:`command_environment`).
        timeout: seconds before it is killed (None: no limit).

    Raises:
        CommandFailed: it could not start, timed out, or exited non-zero; the message
            has its last stderr lines.
    """
    logger.info("running %s command: %s", stage, describe(argv))
    try:
        completed = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                                   env=dict(env), timeout=timeout, check=False)
    except OSError as error:
        raise CommandFailed(f"{stage} command {describe(argv)} could not start: "
                            f"{error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{stage} command {describe(argv)} took longer than "
                            f"{timeout:g} s and was killed") from None
    for line in _lines(completed.stdout):
        logger.info("%s command: %s", stage, line)
    if completed.returncode != 0:
        raise CommandFailed(f"{stage} command {describe(argv)} failed (exit status "
                            f"{completed.returncode})" + _said(_lines(completed.stderr)))


class CommandOutput:
    """A command source's stdout, as an iterable of chunks for ``backup_stdin``.

    Iterate it once. ``size`` and ``sha256`` describe what was yielded; after a
    successful iteration they describe the whole output. Iteration raises
    :class:`CommandFailed` at the end if the command exited non-zero (or could not
    start), and :class:`RunCancelled` as soon as ``should_stop()`` is true. Call
    :meth:`terminate` afterwards in any case (it is safe from any thread, and kills a
    command that is still running because restic stopped reading).
    """

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str],
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.argv = tuple(argv)
        self._env = dict(env)
        self._should_stop = should_stop
        self._digest = hashlib.sha256()
        self.size = 0
        self._process: subprocess.Popen | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stderr_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        logger.info("running command source: %s", describe(self.argv))
        try:
            with self._lock:
                # a session of its own: terminate() reaches the command's children too
                # (a shell's pipeline would otherwise hold stdout open after it is gone)
                self._process = subprocess.Popen(
                    list(self.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=self._env, start_new_session=True)
        except OSError as error:
            raise CommandFailed(f"command {describe(self.argv)} could not start: "
                                f"{error.strerror or error}") from None
        process = self._process
        self._stderr_thread = threading.Thread(target=self._drain_stderr, args=(process,),
                                               name="command-stderr", daemon=True)
        self._stderr_thread.start()
        while True:
            if self._should_stop():
                raise RunCancelled(f"the run was cancelled while {describe(self.argv)} ran")
            chunk = process.stdout.read1(_READ_CHUNK)
            if not chunk:
                break
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk
        status = process.wait()
        self._stderr_thread.join()
        if status != 0:
            raise CommandFailed(f"command {describe(self.argv)} failed (exit status {status})"
                                + _said(list(self._stderr_tail)))

    def terminate(self) -> None:
        """Stop the command and everything it started (SIGTERM, then SIGKILL after
        :data:`TERMINATE_GRACE_SECONDS`), reap it, close its pipes. Idempotent."""
        with self._lock:
            process = self._process
        if process is None:
            return
        # returncode is set once the command was reaped; its group id may be reused by
        # then, so only a command not yet reaped (running, or a zombie) is signalled
        if process.returncode is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(TERMINATE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
        process.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                logger.debug("command %s: %s", self.argv[0], line)


def _signal_group(process: subprocess.Popen, number: int) -> None:
    """Signal the command's process group (its session), if any of it is left."""
    try:
        os.killpg(process.pid, number)
    except (ProcessLookupError, PermissionError):
        pass


def _lines(data: bytes) -> list[str]:
    return [line.rstrip() for line in data.decode("utf-8", "replace").splitlines()
            if line.strip()][-TAIL_LINES:]


def _said(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    return "; it said: " + mask(" | ".join(lines))


def environment() -> dict[str, str]:
    """The commands' environment built from this process's."""
    return command_environment(os.environ)

"""The one place that starts restic: a child process with its output read line by line.

stdout is read on the calling thread, so ``status`` messages reach a progress callback
as they arrive; stderr is drained by a second thread (so neither pipe can fill up and
stall restic) and, for ``backup --stdin``, a third thread feeds stdin from the caller's
stream. Every stderr line is masked before it is kept or logged.

If anything goes wrong on our side -- the progress callback raises, the stdin source
raises, the thread is interrupted -- restic is stopped (SIGINT, then SIGKILL) before
the exception propagates, so no restic is left running and, for a stdin backup, no
snapshot of truncated data is saved.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from drd.restic.errors import STDERR_TAIL_LINES
from drd.restic.parse import (
    MAX_KEPT_LINES,
    Message,
    parse_exit_error,
    parse_item_error,
    parse_line,
)
from drd.secrets import Secret, mask

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30.0
WATCH_SECONDS = 0.2
"""How often a run's ``should_stop`` is asked."""
STDIN_CHUNK_BYTES = 1 << 20

# What can be piped into restic's stdin: a binary file object, bytes, or an iterable
# of byte chunks.
StdinSource = BinaryIO | bytes | bytearray | Iterable[bytes]


@dataclass
class Completed:
    """A finished restic run.

    ``messages``: stdout lines (JSON messages and text) except ``status`` and
    ``verbose_status``; ``stderr``: the first :data:`MAX_KEPT_LINES` stderr lines, masked;
    ``stderr_tail``: the last few, masked; ``stderr_messages``: JSON messages on stderr
    (``error``, ``exit_error``), at most :data:`MAX_KEPT_LINES`; ``stdin_error``: what
    the stdin source raised, if it did.
    """

    command: tuple[str, ...]
    exit_code: int
    messages: list[Message] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    stderr_messages: list[Message] = field(default_factory=list)
    stdin_error: BaseException | None = None
    stopped: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    """``time.monotonic()`` when the process was started and when it had exited."""

    @property
    def stdout_text(self) -> str:
        return "\n".join(message.text for message in self.messages)


class _StderrReader(threading.Thread):
    def __init__(self, stream: BinaryIO, secrets: Sequence[Secret | str]) -> None:
        super().__init__(name="restic-stderr", daemon=True)
        self._stream = stream
        self._secrets = secrets
        self.lines: list[str] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.messages: list[Message] = []

    def run(self) -> None:
        for raw in self._stream:
            line = mask(raw.decode("utf-8", "replace").rstrip("\r\n"), self._secrets)
            message = parse_line(line)
            if message.type is not None:
                if len(self.messages) < MAX_KEPT_LINES:
                    self.messages.append(message)
                line = _readable(message)
            elif not line.strip():
                continue
            if len(self.lines) < MAX_KEPT_LINES:
                self.lines.append(line)
            self.tail.append(line)
            logger.debug("restic stderr: %s", line)


def _readable(message: Message) -> str:
    """A JSON message on stderr as a line a person can read in an error message."""
    if message.type == "exit_error":
        return parse_exit_error(message.data) or message.text
    if message.type == "error":
        error = parse_item_error(message.data)
        return f"error: {error.item}: {error.message}" if error.item else error.message
    return message.text


class _StdinFeeder(threading.Thread):
    def __init__(self, process: subprocess.Popen, source: StdinSource) -> None:
        super().__init__(name="restic-stdin", daemon=True)
        self._process = process
        self._source = source
        self.error: BaseException | None = None

    def run(self) -> None:
        pipe = self._process.stdin
        try:
            for chunk in _chunks(self._source):
                pipe.write(chunk)
        except BrokenPipeError:
            return  # restic stopped reading; its exit status says why
        except BaseException as error:  # handed to the caller
            self.error = error
            # stop restic while stdin is still open: it must not see EOF and save a
            # snapshot of what it got so far
            _stop(self._process)
            return
        try:
            pipe.close()
        except BrokenPipeError:
            pass


def _chunks(source: StdinSource) -> Iterable[bytes]:
    if isinstance(source, bytes | bytearray):
        yield bytes(source)
        return
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(STDIN_CHUNK_BYTES):
            yield chunk
        return
    for chunk in source:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"stdin chunks must be bytes, not {type(chunk).__name__}")
        yield chunk


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # SIGINT, not SIGTERM: restic 0.14 removes its lock only on SIGINT (a SIGTERM leaves a
    # stale lock that blocks the next check or prune until 'restic unlock')
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _watch(process: subprocess.Popen, should_stop: Callable[[], bool],
           finished: threading.Event, stopped: threading.Event) -> None:
    while not finished.wait(WATCH_SECONDS):
        try:
            stop = should_stop()
        except Exception:  # noqa: BLE001 - a broken predicate must not leave restic running
            logger.exception("should_stop raised; restic is stopped")
            stop = True
        if stop:
            if process.poll() is not None:
                return  # it ended on its own: nothing was cut short
            stopped.set()
            _stop(process)
            return


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    pass_fds: Sequence[int] = (),
    stdin: StdinSource | None = None,
    on_status: Callable[[Message], None] | None = None,
    secrets: Sequence[Secret | str] = (),
    should_stop: Callable[[], bool] | None = None,
) -> Completed:
    """Run ``argv`` to completion and return what it printed and its exit status.

    ``pass_fds`` are inherited by the child under the same numbers; ``stdin`` is piped
    in (else stdin is ``/dev/null``); ``on_status`` gets each ``status`` message from
    stdout; ``secrets`` are masked out of every stderr line. ``should_stop`` is asked
    every :data:`WATCH_SECONDS` from a thread of its own (restic may print nothing for
    a long time): once it returns True, restic is stopped and ``Completed.stopped`` set.

    Raises:
        OSError: the binary could not be started (``FileNotFoundError``,
            ``PermissionError``).
        BaseException: whatever ``on_status`` raised, after restic was stopped.
    """
    command = tuple(argv)
    started_at = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        pass_fds=tuple(pass_fds),
    )
    stderr_reader = _StderrReader(process.stderr, secrets)
    stderr_reader.start()
    feeder = None
    if stdin is not None:
        feeder = _StdinFeeder(process, stdin)
        feeder.start()
    watcher = None
    finished = threading.Event()
    stopped = threading.Event()
    if should_stop is not None:
        watcher = threading.Thread(target=_watch, args=(process, should_stop, finished,
                                                        stopped), daemon=True)
        watcher.start()
    messages: list[Message] = []
    try:
        for raw in process.stdout:
            message = parse_line(raw.decode("utf-8", "replace"), time.monotonic())
            if message.type == "status":
                if on_status is not None:
                    on_status(message)
            elif message.type == "verbose_status":
                logger.debug("restic: %s", message.text)
            elif message.text:
                messages.append(message)
        exit_code = process.wait()
        finished_at = time.monotonic()
    except BaseException:
        _stop(process)
        raise
    finally:
        if feeder is not None:
            # a source that blocks forever would keep the feeder in read(); do not hang
            # with it once restic is gone
            feeder.join(STOP_GRACE_SECONDS)
            if feeder.is_alive():
                logger.warning("the stdin source of %s is still blocked; left behind", command)
            if process.stdin and not process.stdin.closed:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    pass
        finished.set()
        if watcher is not None:
            watcher.join(STOP_GRACE_SECONDS + 5 * WATCH_SECONDS)
            if watcher.is_alive():
                logger.warning("the should_stop of %s did not return; left behind", command)
        stderr_reader.join()
        process.stdout.close()
        process.stderr.close()
    return Completed(
        command=command,
        exit_code=exit_code,
        messages=messages,
        stderr=stderr_reader.lines,
        stderr_tail=list(stderr_reader.tail),
        stderr_messages=stderr_reader.messages,
        stdin_error=feeder.error if feeder is not None else None,
        stopped=stopped.is_set(),
        started_at=started_at,
        finished_at=finished_at,
    )

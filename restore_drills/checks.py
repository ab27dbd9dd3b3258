"""The checks a drill runs against a restored tree.

Each check ends in a :class:`CheckOutcome` (passed, and a one-line detail a report shows).
The comparisons are pure (:func:`count_check`, :func:`compare_manifest`); reading the tree
(:func:`restored_files`, :func:`file_sha256`), the negative control and the application
checks touch the sandbox, and nothing else.

Paths are the snapshot's: ``/srv/share/a.txt`` lives at ``<restored>/srv/share/a.txt``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.durations import parse_duration
from policies.sampling import in_sample

_READ_CHUNK = 1 << 20
SHOWN_PATHS = 5
"""Paths named in a check's one-line detail (all of them go to the report's list)."""
OUTPUT_LIMIT = 64 * 1024
"""Bytes of an application check's output kept (the rest is read and dropped)."""
# what an application check inherits: enough to run a program, nothing secret
_CHECK_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class CheckOutcome:
    """A check's result: ``passed`` and a one-line ``detail``."""

    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class RestoredFile:
    size: int
    mtime_ns: int


def restored_files(root: Path) -> dict[str, RestoredFile]:
    """Every regular file under ``root``, by its path in the snapshot (``/`` + relative).
    Symbolic links are not followed (restic restores them as links)."""
    found: dict[str, RestoredFile] = {}
    if not root.is_dir():
        return found
    for directory, _, names in os.walk(root):
        for name in names:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            if stat.S_ISREG(info.st_mode):
                relative = os.path.relpath(full, root)
                found["/" + relative] = RestoredFile(info.st_size, info.st_mtime_ns)
    return found


def file_sha256(root: Path, path: str) -> str | None:
    """SHA-256 (hex) of the restored file at snapshot path ``path``, None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(root / path.lstrip("/"), "rb", buffering=0) as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def whole_error_path(path: str, reason: str, known: Iterable[str]) -> str:
    """The file a restic restore error is about (pure). restic prints ``PATH: REASON``
    and either may hold ``": "``; the longest known path that the text starts with
    wins, else restic's text up to the first ``": "`` (``path``)."""
    text = f"{path}: {reason}"
    matches = [candidate for candidate in known if text.startswith(candidate + ": ")]
    return max(matches, key=len) if matches else path


def _named(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    more = len(paths) - SHOWN_PATHS
    return shown + (f" and {more} more" if more > 0 else "")


def count_check(restored: Mapping[str, RestoredFile], expected: Mapping[str, int]
                ) -> tuple[CheckOutcome, CheckOutcome, list[str]]:
    """File count and bytes of the restored tree against what the snapshot holds (pure).

    Returns the ``file_count`` and ``bytes`` outcomes and the expected files that are
    missing or have another size (sorted).
    """
    missing = sorted(path for path in expected if path not in restored)
    resized = sorted(path for path, size in expected.items()
                     if path in restored and restored[path].size != size)
    files, want_files = len(restored), len(expected)
    total = sum(entry.size for entry in restored.values())
    want_bytes = sum(expected.values())
    count_ok = files == want_files and not missing
    count_detail = f"{files} files restored, {want_files} expected"
    if missing:
        count_detail += f"; missing: {_named(missing)}"
    bytes_ok = total == want_bytes and not resized
    bytes_detail = f"{total} bytes restored, {want_bytes} expected"
    if resized:
        bytes_detail += f"; another size: {_named(resized)}"
    return (CheckOutcome(count_ok, count_detail), CheckOutcome(bytes_ok, bytes_detail),
            sorted(set(missing) | set(resized)))


# -- the manifest --------------------------------------------------------------------------


@dataclass
class ManifestComparison:
    """What comparing restored files with the agent's manifests found.

    ``checked``: files compared; ``differ``: content differs (corruption); ``missing``:
    in the manifest and the selection but not restored; ``changed``: the file's mtime
    differs from the manifest's, so it changed between restic reading it and the agent
    hashing it (not corruption; not counted against the drill); ``matched``: entries
    that matched, for the negative control to pick from.
    """

    checked: int = 0
    differ: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    matched: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differ and not self.missing

    def outcome(self) -> CheckOutcome:
        if self.checked == 0 and not self.missing:
            return CheckOutcome(False, "no file of the manifests was among the restored "
                                       "files: nothing could be compared")
        parts = [f"{self.checked} files compared with the agent's manifest"]
        if self.differ:
            parts.append(f"{len(self.differ)} differ: {_named(self.differ)}")
        if self.missing:
            parts.append(f"{len(self.missing)} not restored: {_named(self.missing)}")
        if self.changed:
            parts.append(f"{len(self.changed)} changed while the backup ran (not judged)")
        return CheckOutcome(self.ok, "; ".join(parts))


def manifest_entries(manifests: Iterable[Mapping[str, Any]], sample_percent: float,
                     selected: Mapping[str, int] | None) -> list[Mapping[str, Any]]:
    """The manifest entries a drill compares (pure): those in the drill's
    ``sample_percent`` sample and, for a partial restore, among the ``selected`` files.
    Sorted by path."""
    entries = []
    for manifest in manifests:
        for entry in manifest.get("files") or ():
            path = entry.get("path")
            if not isinstance(path, str) or not in_sample(path, sample_percent):
                continue
            if selected is not None and path not in selected:
                continue
            entries.append(entry)
    return sorted(entries, key=lambda entry: entry["path"])


def compare_manifest(entries: Iterable[Mapping[str, Any]],
                     restored: Mapping[str, RestoredFile],
                     digest: Callable[[str], str | None]) -> ManifestComparison:
    """Compare each entry's size and SHA-256 with the restored file (``digest(path)``
    reads it). A file whose restored mtime differs from the entry's ``mtime_ns`` changed
    during the backup and is only counted in ``changed``."""
    result = ManifestComparison()
    for entry in entries:
        path = entry["path"]
        found = restored.get(path)
        if found is None:
            result.missing.append(path)
            continue
        mtime = entry.get("mtime_ns")
        if mtime is not None and found.mtime_ns != mtime:
            result.changed.append(path)
            continue
        result.checked += 1
        if found.size != entry.get("size") or digest(path) != entry.get("sha256"):
            result.differ.append(path)
        else:
            result.matched.append(entry)
    return result


def negative_control(root: Path, matched: Sequence[Mapping[str, Any]],
                     restored: Mapping[str, RestoredFile]) -> CheckOutcome:
    """Prove that the manifest check can fail: change one byte of a restored file that
    matched its manifest entry (the smallest non-empty one, so that it is quick), check
    that the comparison now reports it, then change the byte back and check that it
    matches again (the application checks run on the tree afterwards)."""
    candidates = sorted((entry for entry in matched if (entry.get("size") or 0) > 0),
                        key=lambda entry: (entry["size"], entry["path"]))
    if not candidates:
        return CheckOutcome(False, "no restored non-empty file matched the manifest: the "
                                   "control has nothing to change, so the manifest check "
                                   "is not proven able to fail")
    entry = candidates[0]
    path = entry["path"]
    target = root / path.lstrip("/")
    offset = entry["size"] // 2
    info = os.lstat(target)

    def digest(name: str) -> str | None:
        return file_sha256(root, name)

    try:
        os.chmod(target, stat.S_IMODE(info.st_mode) | stat.S_IWUSR)
        _flip_byte(target, offset)
    except OSError as error:
        return CheckOutcome(False, f"could not change a byte of {path}: {error.strerror}")
    caught = None
    try:
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        caught = compare_manifest([entry], restored, digest)
    except OSError as error:
        problem = f"could not check the changed {path}: {error.strerror}"
    else:
        problem = None
    try:
        # the application checks run on this tree next: it must be as restored
        _flip_byte(target, offset)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.chmod(target, stat.S_IMODE(info.st_mode))
    except OSError as error:
        return CheckOutcome(False, f"could not change the byte of {path} back: "
                                   f"{error.strerror}")
    if problem is not None or caught is None:
        return CheckOutcome(False, problem or f"could not check the changed {path}")
    restored_again = compare_manifest([entry], restored, digest)
    if caught.differ != [path]:
        return CheckOutcome(False, f"a byte changed in {path} was NOT caught by the "
                                   "manifest check")
    if not restored_again.ok:
        return CheckOutcome(False, f"{path} did not match again after the control "
                                   "changed its byte back")
    return CheckOutcome(True, f"a byte changed in {path} (offset {offset}) was caught; "
                              "changed back, it matches again")


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b", buffering=0) as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


# -- application checks -----------------------------------------------------------------


def check_argv(command: Sequence[str], restored: Path) -> list[str]:
    """The check's argv with ``{restored}`` replaced by the restored tree's root (pure)."""
    return [argument.replace("{restored}", str(restored)) for argument in command]


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return parse_duration(str(value)).total_seconds()


def run_application_check(check: Mapping[str, Any], restored: Path) -> CheckOutcome:
    """Run one of the policy's application checks against the restored tree.

    The command runs without a shell, in the restored tree, with a minimal environment
    (no store keys, no passwords), and must end with ``expect_exit`` (and print
    ``expect_stdout``, when set, without surrounding whitespace) within ``timeout``.
    """
    argv = check_argv(check["command"], restored)
    timeout = _seconds(check.get("timeout") or 300)
    expect_exit = int(check.get("expect_exit") or 0)
    expect_stdout = check.get("expect_stdout")
    environment = {name: os.environ[name] for name in _CHECK_ENV if name in os.environ}
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    started = time.monotonic()
    try:
        # a session of its own: a timeout stops the command and everything it started
        process = subprocess.Popen(argv, cwd=restored, env=environment,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as error:
        return CheckOutcome(False, f"could not run {argv[0]}: {error.strerror or error}")
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return CheckOutcome(False, f"timed out after {timeout:g} s")
    seconds = time.monotonic() - started
    stdout = out[:OUTPUT_LIMIT].decode("utf-8", "replace").strip()
    stderr = err[:OUTPUT_LIMIT].decode("utf-8", "replace").strip()
    problems = []
    if process.returncode != expect_exit:
        problems.append(f"exit {process.returncode} (expected {expect_exit})")
    if expect_stdout is not None and stdout != expect_stdout:
        problems.append(f"stdout {_short(stdout)!r} (expected {_short(expect_stdout)!r})")
    if problems:
        tail = stderr.splitlines()[-1] if stderr else ""
        return CheckOutcome(False, "; ".join(problems) + (f"; stderr: {_short(tail)}"
                                                          if tail else ""))
    shown = f", stdout {_short(stdout)!r}" if expect_stdout is not None else ""
    return CheckOutcome(True, f"exit {process.returncode}{shown} in {seconds:.2f} s")


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

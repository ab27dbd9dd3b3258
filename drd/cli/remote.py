"""``drd --server URL ...``: a system owner's commands through the centre's API.

Owners need no account on the centre's machine: with ``--server`` (or ``DRD_SERVER``),
``drd status``, ``drd snapshots``, ``drd backup-now`` and ``drd restore`` call the API
with the owner's token instead of opening the catalog, and see what the token may see.

The token comes from ``DRD_TOKEN``, ``--token-file FILE`` or ``--token`` (the last is
visible to other users of the machine in the process list: prefer the others). An
``https`` centre is trusted through its own CA only: ``--ca-cert FILE`` (the PEM the
administrator handed out) or ``--ca-fingerprint SHA256`` (the CA's fingerprint, which
``drd serve`` logs: the CA is fetched from ``/v1/ca.pem`` and pinned if it matches).
``http`` is for local tests only (``drd serve --insecure-http``).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from agents.client import (
    CentreClient,
    CentreRefused,
    ca_fingerprint,
    describe_answer,
    pinned_ssl_context,
    send_request,
)
from drd import __version__
from drd.console.progress import human_bytes
from drd.errors import OperationError, UserError
from drd.secrets import Secret, mask

REMOTE_COMMANDS = frozenset({"status", "snapshots", "backup-now", "restore"})
"""The subcommands that work with ``--server``; the others need the centre's home."""

TIMEOUT = httpx.Timeout(120.0, connect=10.0)
# the centre restores before it sends: no limit on waiting for it (its own watchdog ends
# a restore from a dead store), only on connecting
RESTORE_TIMEOUT = httpx.Timeout(None, connect=10.0)
PAGE_LIMIT = 500
_FINGERPRINT = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class RemoteOptions:
    """What ``--server``, the token and the CA options said."""

    server: str
    token: Secret
    ca_cert: Path | None = None
    ca_fingerprint: str | None = None

    @classmethod
    def parse(cls, server: str, token: str | None, token_file: str | None,
              ca_cert: str | None, fingerprint: str | None) -> RemoteOptions:
        """Check the options; raise :class:`UserError` naming the one that is wrong."""
        parts = urlsplit(server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise UserError(f"--server: {server!r} is not an https:// URL of a drd centre")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise UserError("--server: plain http is for a centre on this machine only "
                            "(drd serve --insecure-http); the token would cross the network "
                            "in the clear")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise UserError(f"--server: give the centre's base URL only "
                            f"({parts.scheme}://{parts.netloc})")
        if token_file is not None:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as error:
                raise UserError(f"--token-file: cannot read {token_file}: "
                                f"{error.strerror}") from None
        if not token or not token.strip():
            raise UserError("no token: set DRD_TOKEN (or --token-file FILE) to the token "
                            "an administrator made with 'drd token create --role owner'")
        if fingerprint is not None:
            fingerprint = fingerprint.strip().lower().replace(":", "")
            fingerprint = fingerprint.removeprefix("sha256")
            if not _FINGERPRINT.match(fingerprint):
                raise UserError("--ca-fingerprint: expected the CA's SHA-256 as 64 hex "
                                "digits (drd serve logs it)")
        if parts.scheme == "https" and ca_cert is None and fingerprint is None:
            raise UserError("an https centre is trusted through its own CA: give --ca-cert "
                            "FILE (or DRD_CA_CERT) or --ca-fingerprint SHA256 (or "
                            "DRD_CA_FINGERPRINT)")
        return cls(server=f"{parts.scheme}://{parts.netloc}", token=Secret(token.strip()),
                   ca_cert=Path(ca_cert) if ca_cert else None, ca_fingerprint=fingerprint)


class RemoteCentre:
    """The owner's calls to one centre (errors as :mod:`agents.client` raises them, with
    the centre's refusals of the caller's input turned into :class:`UserError`)."""

    def __init__(self, options: RemoteOptions,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = options.server
        self._token = options.token
        verify: Any = True
        if self.server.startswith("https://"):
            verify = pinned_ssl_context(self._ca_pem(options, transport))
        self._http = httpx.Client(
            base_url=self.server, verify=verify, timeout=TIMEOUT, transport=transport,
            follow_redirects=False,
            headers={"User-Agent": f"drd/{__version__}", "Accept": "application/json",
                     "Authorization": f"Bearer {self._token.reveal()}"})

    def __enter__(self) -> RemoteCentre:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    @staticmethod
    def _ca_pem(options: RemoteOptions, transport: httpx.BaseTransport | None) -> bytes:
        if options.ca_cert is not None:
            try:
                return options.ca_cert.read_bytes()
            except OSError as error:
                raise UserError(f"--ca-cert: cannot read {options.ca_cert}: "
                                f"{error.strerror}") from None
        pem = CentreClient.fetch_ca_pem(options.server, transport=transport)
        if ca_fingerprint(pem) != options.ca_fingerprint:
            raise UserError(f"the CA that {options.server} serves is not the one of "
                            f"--ca-fingerprint (it is {ca_fingerprint(pem)}): wrong server?")
        return pem

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params or None).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, json=body).json()

    def pages(self, path: str, cursor: str | None = None, **params: Any
              ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list (from ``cursor``), following ``next``."""
        while True:
            page = self.get(path, limit=PAGE_LIMIT, **params,
                            **({"cursor": cursor} if cursor else {}))
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    @contextlib.contextmanager
    def stream_post(self, path: str, body: Any) -> Iterator[httpx.Response]:
        """A POST whose answer is streamed (a restore); refusals as :meth:`post`."""
        request = self._http.build_request("POST", path, json=body,
                                           timeout=RESTORE_TIMEOUT)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise OperationError(f"the centre at {self.server} did not answer in time "
                                 f"(POST {path})") from None
        except httpx.TransportError as error:
            raise OperationError(f"cannot reach the centre at {self.server}: "
                                 f"{mask(str(error), [self._token.reveal()])}") from None
        try:
            if response.status_code >= 400:
                response.read()
                raise _refusal("POST", path, response)
            yield response
        finally:
            response.close()

    def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return send_request(self._http, self.server, method, path,
                                secrets=(self._token,), **options)
        except CentreRefused as refused:
            if _callers_fault(refused.status):
                raise UserError(str(refused)) from None
            raise


def _refusal(method: str, path: str, response: httpx.Response) -> Exception:
    """The error for an error answer: the caller's input (4xx) or the centre (5xx)."""
    reason = f"the centre refused {method} {path} (HTTP {response.status_code}): " \
             f"{describe_answer(response)}"
    return UserError(reason) if _callers_fault(response.status_code) else OperationError(reason)


def _callers_fault(status: int) -> bool:
    """A refusal of what the caller asked (exit 2), rather than a centre that cannot
    serve it now (5xx, or 429: busy; exit 1)."""
    return status < 500 and status != 429


def system_path(name: str, *rest: str) -> str:
    """``/v1/systems/{name}/...`` with the name quoted."""
    return "/".join(["/v1/systems", quote(name, safe=""), *rest])




class _ResponseReader(io.RawIOBase):
    """A streamed response's body as a readable file, for :mod:`tarfile`."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as error:
                raise OperationError(f"the centre's stream broke off ({error}): "
                                     "try again") from None
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


def restore_through_api(options: RemoteOptions, system: str, *, target: Path,
                        snapshot: str | None, at: str | None, store: str | None,
                        includes: tuple[str, ...], overwrite: bool, verify: bool,
                        as_json: bool) -> None:
    """``drd --server URL restore SYSTEM ...``: the centre restores (as ``drd restore``
    does: healthiest store first, falling back) and streams the tree; it is extracted
    into a staging directory inside ``target``, checked against the centre's summary, and
    moved into place. A failure leaves the target as it was."""
    from drd.console import output
    from drd.services.restore.engine import RestoreRequest
    from drd.services.restore.staging import make_staging, prepare_target, promote, remove_tree

    if snapshot is not None and at is not None:
        raise UserError("give --snapshot or --at, not both")
    # the same checks of --include as a local restore, before anything is asked
    includes = RestoreRequest(target=target, includes=includes).checked().includes
    body = {"snapshot": snapshot, "at": at, "store": store, "include": list(includes),
            "verify": verify}
    created = prepare_target(target, overwrite=overwrite)
    staging = make_staging(target)
    try:
        with RemoteCentre(options) as centre:
            if not as_json:
                output.say(f"restoring {system} on the centre {centre.server} ...")
            summary, files, size = _receive(centre, system_path(system, "restore"), body,
                                            staging, bar=not as_json and output.is_terminal())
        if (files, size) != (summary["files"], summary["bytes"]):
            raise OperationError(f"the centre sent {files} files ({size} bytes), its summary "
                                 f"says {summary['files']} ({summary['bytes']}): try again")
        promote(staging, target)
    except BaseException:
        remove_tree(staging)
        if created:
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    summary["target"] = str(target)
    if as_json:
        output.emit_json(summary)
        return
    failed = [attempt for attempt in summary.get("attempts", []) if not attempt.get("ok")]
    output.echo(f"restored {system} snapshot {summary['snapshot'][:12]} ({summary['time']}) "
                f"from store {summary['store']}"
                + (f" after {len(failed)} failed store(s)" if failed else ""))
    output.echo(f"{files} files, {human_bytes(size)}, into {target}")


def _receive(centre: RemoteCentre, path: str, body: dict[str, Any], staging: Path, *,
             bar: bool) -> tuple[dict[str, Any], int, int]:
    """POST the restore and extract the streamed tree into ``staging``; return the
    centre's summary and the files and bytes received (a progress bar if ``bar``)."""
    from drd.console.progress import ProgressBar
    from drd.restic import ProgressEvent
    from drd.services.restore.remote import extract

    with centre.stream_post(path, body) as response:
        summary = _summary(response)
        progress = ProgressBar("restore", unit="files") if bar else None
        done = ProgressEvent(total_files=summary["files"], total_bytes=summary["bytes"])

        def arrived(size: int) -> None:
            nonlocal done
            files, received = done.files_done + 1, done.bytes_done + size
            done = ProgressEvent(
                percent_done=received / done.total_bytes if done.total_bytes else 0.0,
                files_done=files, total_files=done.total_files, bytes_done=received,
                total_bytes=done.total_bytes)
            if progress is not None:
                progress(done)

        try:
            files, size = extract(_ResponseReader(response), staging, on_file=arrived)
        finally:
            if progress is not None:
                progress.finish()
    return summary, files, size


def _summary(response: httpx.Response) -> dict[str, Any]:
    """The restore's summary from ``X-Drd-Restore``; OperationError if it is not one."""
    try:
        summary = json.loads(response.headers["X-Drd-Restore"])
        if not all(isinstance(summary[key], int) for key in ("files", "bytes")) or \
                not all(isinstance(summary[key], str) for key in ("snapshot", "time", "store")):
            raise ValueError("fields missing")
    except (KeyError, ValueError, TypeError):
        raise OperationError("the centre's answer has no restore summary (X-Drd-Restore): "
                             "is this a drd centre of this version?") from None
    return summary

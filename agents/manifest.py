"""Manifests: the content digests an agent records for each snapshot, signed.

A restore drill compares restored files against the manifest, so the manifest must list
what restic saved: the files of the path sources, minus what the policy excludes (matched
as restic matches, :mod:`agents.excludes`), regular files only (restic keeps symlinks as
links; they have no content of their own to compare). ``sample_percent`` below 100 keeps
a deterministic sample: a file is in it when the SHA-256 of its path falls in the first
``sample_percent`` of the hash space, so the same files are sampled every run.

Format (version 1; ``mtime_ns`` lets a drill tell "changed after restic read it" from
"corrupted"; ``null`` for a command's output)::

    {"version": 1, "system": "fs1", "snapshot_id": "<64 hex>", "run_id": "<uuid>",
     "created": "<RFC 3339 UTC>", "kind": "paths" | "command",
     "sources": ["/srv/share"], "excludes": ["/srv/share/**/*.tmp"],
     "sample_percent": 100, "total_files": 5204, "total_bytes": 444000000,
     "files": [{"path": "/srv/share/a.txt", "size": 12, "mtime_ns": 17...,
                "sha256": "<64 hex>"}, ...],          # sorted by path
     "unreadable": [{"path": "...", "error": "Permission denied"}]}

Signing: the signature is Ed25519 over the canonical JSON bytes,
``json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()``.

Sealing: a manifest lists every path, size and SHA-256 of a system, which restic's own
encryption hides; whoever can read a store must not read them from drd's objects
beside the repository. So the stores get the canonical bytes sealed to the centre's
escrow key (:func:`drd.crypto.seal.seal`, context ``drd-manifest:<system>:<snapshot
id>``, :func:`drd.crypto.seal.manifest_context`), as ``drd/manifests/<id>.json.sealed``;
no plaintext manifest is written to any store. The detached ``.json.sig`` beside it
signs the plaintext (the centre checks it after unsealing), and reveals nothing of it::

    {"version": 1, "algorithm": "ed25519", "key": "<sha256 hex of the raw public key>",
     "signature": "<base64 of the signature over the canonical bytes>"}

(the same signature the centre receives; not the prefixed file message of
:func:`drd.crypto.signing.sign_file`). The upload to the centre carries the plaintext
and, in ``sealed``, the sealed object's first 45 bytes, SHA-256 and size, and the
escrow key's fingerprint (:meth:`SignedManifest.seal_description`): the centre records
that digest. Agents before sealing wrote the plaintext as ``drd/manifests/<id>.json``;
the centre still reads and verifies those.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from agents.excludes import ExcludeMatcher
from drd.crypto.seal import SEAL_HEAD_SIZE, manifest_context, recipient_fingerprint, seal
from drd.crypto.signing import public_key_fingerprint, sign
from drd.recorded.keys import sealed_manifest_keys, signature_document
from policies.sampling import in_sample

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_READ_CHUNK = 1 << 20


def canonical_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes that are signed, stored and hashed (pure)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """SHA-256 (hex) of :func:`canonical_bytes`: the report's ``manifest_sha256``."""
    return hashlib.sha256(canonical_bytes(manifest)).hexdigest()


@dataclass(frozen=True)
class SignedManifest:
    """A manifest, its canonical bytes, its signature and, once :func:`seal_manifest`
    made it, the sealed object the stores get."""

    manifest: dict[str, Any] = field(repr=False)
    data: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    key_fingerprint: str = ""
    sealed: bytes | None = field(default=None, repr=False)
    sealed_to: str = ""

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def signature_b64(self) -> str:
        return base64.b64encode(self.signature).decode()

    def signature_document(self) -> bytes:
        """The ``.json.sig`` object's bytes (the centre records their digest too)."""
        return signature_document(self.key_fingerprint, self.signature_b64)

    def object_keys(self) -> tuple[str, str]:
        """Store keys of the sealed manifest and its signature."""
        return sealed_manifest_keys(self.snapshot_id)

    def stored_objects(self) -> dict[str, bytes]:
        """What the stores get, by key: the sealed manifest and the signature document.

        Raises ``ValueError`` before :func:`seal_manifest`: the plaintext is never stored.
        """
        if self.sealed is None:
            raise ValueError("the manifest is not sealed: it must not be stored as it is")
        sealed_key, signature_key = self.object_keys()
        return {sealed_key: self.sealed, signature_key: self.signature_document()}

    def seal_description(self) -> dict[str, Any]:
        """The upload's ``sealed`` member: the sealed object's head, SHA-256 and size, and
        the fingerprint of the escrow key it is sealed to."""
        if self.sealed is None:
            raise ValueError("the manifest is not sealed")
        return {"head": base64.b64encode(self.sealed[:SEAL_HEAD_SIZE]).decode(),
                "sha256": hashlib.sha256(self.sealed).hexdigest(), "size": len(self.sealed),
                "key": self.sealed_to}


def sign_manifest(key: Ed25519PrivateKey, manifest: dict[str, Any]) -> SignedManifest:
    """Sign the canonical bytes of ``manifest`` with the agent's identity key."""
    data = canonical_bytes(manifest)
    return SignedManifest(manifest=manifest, data=data, signature=sign(key, data),
                          key_fingerprint=public_key_fingerprint(key.public_key()))


def seal_manifest(signed: SignedManifest, escrow_key: X25519PublicKey,
                  system: str) -> SignedManifest:
    """``signed`` with its canonical bytes sealed to the centre's escrow key, under the
    context of ``system`` and the manifest's snapshot."""
    return replace(signed, sealed=seal(escrow_key, signed.data,
                                       manifest_context(system, signed.snapshot_id)),
                   sealed_to=recipient_fingerprint(escrow_key))


# -- collecting the files -----------------------------------------------------------------


@dataclass
class FileDigests:
    """What a walk found: sampled file entries, unreadable files, totals of all files."""

    files: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    total_files: int = 0
    total_bytes: int = 0


def walk_sources(
    sources: Sequence[str],
    excludes: Sequence[str],
    sample_percent: float,
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> FileDigests:
    """Hash the files restic backs up for ``sources`` with the (rooted) ``excludes``.

    Symbolic links are not followed (restic saves them as links); an excluded directory
    is not entered (restic does not enter it either). A file that cannot be read is
    listed in ``unreadable`` rather than failing the walk: restic reports it too.

    ``should_stop`` is asked between files; when it returns True the walk ends early
    (the caller is cancelling the run).
    """
    matcher = ExcludeMatcher(excludes)
    result = FileDigests()
    for source in sources:
        if not matcher.excluded(source):
            _walk(source, matcher, sample_percent, result, should_stop)
    result.files.sort(key=lambda entry: entry["path"])
    return result


def _walk(path: str, matcher: ExcludeMatcher, sample_percent: float, result: FileDigests,
          should_stop: Callable[[], bool]) -> None:
    stack = [path]
    while stack:
        if should_stop():
            return
        current = stack.pop()
        try:
            info = os.lstat(current)
        except OSError as error:
            if error.errno != errno.ENOENT:
                result.unreadable.append({"path": current, "error": error.strerror or str(error)})
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                with os.scandir(current) as entries:
                    names = [entry.name for entry in entries]
            except OSError as error:
                result.unreadable.append({"path": current, "error": error.strerror or str(error)})
                continue
            for name in sorted(names, reverse=True):
                child = f"{current.rstrip('/')}/{name}"
                if not matcher.excluded(child):
                    stack.append(child)
        elif stat.S_ISREG(info.st_mode):
            result.total_files += 1
            result.total_bytes += info.st_size
            if in_sample(current, sample_percent):
                entry = _file_entry(current, info)
                if "error" in entry:
                    result.unreadable.append(entry)
                else:
                    result.files.append(entry)


def _file_entry(path: str, info: os.stat_result) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        return {"path": path, "error": error.strerror or str(error)}
    return {"path": path, "size": size, "mtime_ns": info.st_mtime_ns,
            "sha256": digest.hexdigest()}


def build_manifest(
    *,
    system: str,
    snapshot_id: str,
    run_id: str,
    created: datetime,
    kind: str,
    sources: Iterable[str],
    excludes: Iterable[str],
    sample_percent: float,
    digests: FileDigests,
) -> dict[str, Any]:
    """The manifest document (pure); see the module docstring for its fields."""
    return {
        "version": MANIFEST_VERSION,
        "system": system,
        "snapshot_id": snapshot_id,
        "run_id": run_id,
        "created": created.isoformat(),
        "kind": kind,
        "sources": list(sources),
        "excludes": list(excludes),
        "sample_percent": sample_percent,
        "total_files": digests.total_files,
        "total_bytes": digests.total_bytes,
        "files": digests.files,
        "unreadable": digests.unreadable,
    }


def command_digests(filename: str, size: int, sha256: str) -> FileDigests:
    """The one file a command source saves (``/<filename>``), as a walk result."""
    return FileDigests(files=[{"path": f"/{filename}", "size": size, "mtime_ns": None,
                               "sha256": sha256}], total_files=1, total_bytes=size)

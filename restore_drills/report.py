"""Drill reports as signed documents: canonical bytes, signatures and the JSON export.

A report (schema :data:`REPORT_SCHEMA`, see DESIGN.md "Restore drills") is a JSON object.
The catalog keeps it with an Ed25519 signature by the daemon over :func:`canonical_bytes`;
an exported file (JSON or HTML) gets a detached signature file ``FILE.sig`` made by
:func:`drd.crypto.signing.sign_file`, which anyone holding the public key can check.

Everything here is pure except :func:`write_signed_export`, which writes the two files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from drd.crypto import signing
from drd.fsutil import PUBLIC_FILE_MODE, fsync_directory

REPORT_SCHEMA = 1


def canonical_bytes(report: Mapping[str, Any]) -> bytes:
    """The bytes the catalog signature covers: compact JSON with sorted keys.

    Raises ``TypeError`` if the report holds something JSON cannot encode.
    """
    return json.dumps(report, sort_keys=True, separators=(",", ":")).encode()


def sign_report(private_key: Ed25519PrivateKey, report: Mapping[str, Any]) -> bytes:
    """The 64-byte Ed25519 signature of ``report`` (over :func:`canonical_bytes`)."""
    return signing.sign(private_key, canonical_bytes(report))


def verify_report_signature(public_key: Ed25519PublicKey, report: Mapping[str, Any],
                            signature: bytes) -> None:
    """Return if ``signature`` signs ``report``; else raise
    :class:`~drd.crypto.errors.BadSignature`."""
    signing.verify(public_key, canonical_bytes(report), signature)


def signature_key_fingerprint(signature_path: Path) -> str | None:
    """The fingerprint of the key a detached signature file says made it, or ``None`` if
    the file cannot be read or is not a signature document (the check then fails on it).

    Lets a verifier pick the right key of its keyring, current or retired.
    """
    try:
        key = json.loads(Path(signature_path).read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


def json_export(report: Mapping[str, Any]) -> bytes:
    """The report as an exported file: indented JSON, sorted keys, a trailing newline.

    The same report always gives the same bytes, so an export can be re-made and compared.
    """
    return (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_signed_export(private_key: Ed25519PrivateKey, data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` and its detached signature to ``path.sig``; return the latter.

    Both files replace any existing ones: each is written to a temporary file in the
    same directory, fsynced, then renamed over its final name, so a reader never sees a
    half-written file (between the two renames a reader may see the new file with the
    old signature, which then fails to verify rather than passing wrongly). Files are
    mode 0644: a report is meant to be handed on. Raises ``OSError`` if the directory is
    not writable; nothing is left behind then.
    """
    path = Path(path)
    signature_path = Path(f"{path}{signing.SIGNATURE_SUFFIX}")
    token = secrets.token_hex(8)
    temporary = path.with_name(f".{path.name}.{token}.tmp")
    temporary_signature = path.with_name(f".{path.name}.{token}.sig.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             PUBLIC_FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), PUBLIC_FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # the signature covers the content's digest, not the name, so the temporary
        # file can be signed before it takes its final name
        signing.sign_file(private_key, temporary, temporary_signature)
        os.replace(temporary, path)
        os.replace(temporary_signature, signature_path)
    finally:
        for leftover in (temporary, temporary_signature):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    fsync_directory(path.parent)
    return signature_path

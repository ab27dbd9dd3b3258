"""Ed25519 signatures: drill reports are signed by the daemon and verified by anyone.

:func:`sign` / :func:`verify` work on bytes. :func:`sign_file` / :func:`verify_file` make
and check a detached signature file (``report.json`` -> ``report.json.sig``), a small JSON
document::

    {"version": 1, "algorithm": "ed25519", "key": "<sha256 hex of the raw public key>",
     "signature": "<base64>"}

The signed message for a file is ``b"drd-detached-signature-v1\\x00" + sha256(file)``:
the prefix keeps a file signature from doubling as a signature of anything else, and the
digest lets large files be read in chunks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from drd.crypto.errors import BadSignature
from drd.fsutil import PUBLIC_FILE_MODE, write_new_file

SIGNATURE_SUFFIX = ".sig"
_FILE_MESSAGE_PREFIX = b"drd-detached-signature-v1\x00"
_CHUNK_SIZE = 1 << 20


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature of ``data``."""
    return private_key.sign(data)


def verify(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    """Return if ``signature`` is ``public_key``'s signature of ``data``; else raise
    :class:`BadSignature`."""
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise BadSignature("the signature does not match the data and the public key") from None


def public_key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """The SHA-256 (hex) of the raw public key: names the key in signature files."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def sign_file(
    private_key: Ed25519PrivateKey, path: Path, signature_path: Path | None = None
) -> Path:
    """Write the detached signature of the file ``path``; return the signature's path.

    ``signature_path`` defaults to ``path`` + ``.sig``. Raises :class:`~drd.errors.UserError`
    if the signature file exists already, ``OSError`` if ``path`` cannot be read.
    """
    path = Path(path)
    signature_path = Path(signature_path or f"{path}{SIGNATURE_SUFFIX}")
    document = {
        "version": 1,
        "algorithm": "ed25519",
        "key": public_key_fingerprint(private_key.public_key()),
        "signature": base64.b64encode(sign(private_key, _file_message(path))).decode(),
    }
    data = (json.dumps(document, indent=2) + "\n").encode()
    return write_new_file(signature_path, data, PUBLIC_FILE_MODE)


def verify_file(
    public_key: Ed25519PublicKey, path: Path, signature_path: Path | None = None
) -> None:
    """Check the detached signature of the file ``path`` (default ``path`` + ``.sig``).

    Raises :class:`BadSignature` if the signature file is malformed, made with another
    key, or does not match the file's content; ``OSError`` if a file cannot be read.
    """
    path = Path(path)
    signature_path = Path(signature_path or f"{path}{SIGNATURE_SUFFIX}")
    try:
        document = json.loads(signature_path.read_text(encoding="utf-8"))
        if document["version"] != 1 or document["algorithm"] != "ed25519":
            raise ValueError("unknown version or algorithm")
        key = document["key"]
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as error:
        raise BadSignature(f"{signature_path} is not a drd signature file: {error}") from None
    if key != public_key_fingerprint(public_key):
        raise BadSignature(f"{signature_path} was made with another key ({key})")
    try:
        verify(public_key, _file_message(path), signature)
    except BadSignature:
        raise BadSignature(f"{path} does not match its signature {signature_path}") from None


def _file_message(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_SIZE):
            digest.update(chunk)
    return _FILE_MESSAGE_PREFIX + digest.digest()

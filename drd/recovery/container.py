"""The container a catalog copy travels in: encrypted to the escrow key, signed, streamed.

Only the holder of the escrow private key can read a copy, and only the holder of the
signing private key can make one that a recovery accepts. Both keys are in the recovery
kit. The container is written and read in chunks, so a copy of any size needs a bounded
amount of memory (one chunk) on either side.

Layout (version 1)::

    "DRDCOPY1"                  8 bytes, magic
    header length               4 bytes, big-endian
    header                      UTF-8 JSON (below)
    frames                      each: 4-byte big-endian length, then AES-256-GCM
                                ciphertext and tag of at most ``chunk_size`` bytes
    "SIG1" + signature          68 bytes, the trailer

The header: ``{"format": "drd-catalog-copy", "version": 1, "created_at": ISO,
"escrow_key_sha256": ..., "signing_key_sha256": ..., "sealed_key": base64,
"chunk_size": 1048576, "compression": "gzip", "meta": {...}}``. ``sealed_key`` is a
random 32-byte file key sealed to the escrow public key (:func:`drd.crypto.seal.seal`,
context ``drd-catalog-copy-v1``). Frame ``i`` is encrypted under the file key with the
nonce ``i`` (11 bytes, big-endian) followed by ``0x01`` for the last frame and ``0x00``
otherwise, and the associated data ``sha256(header)``: frames cannot be reordered,
dropped, cut short or moved to another container. The signature is Ed25519 over
``b"drd-catalog-copy-v1\\x00" + sha256(every byte before the trailer)``.

A reader checks the signature first (:func:`verify`: one pass, hashing) and only then
decrypts (:func:`open_payload`: a second pass), so nothing from a forged copy is parsed
beyond its header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drd.crypto.errors import CryptoError
from drd.crypto.seal import seal, unseal
from drd.recovery.kit import escrow_fingerprint, signing_fingerprint

MAGIC = b"DRDCOPY1"
FORMAT = "drd-catalog-copy"
VERSION = 1
CHUNK_SIZE = 1 << 20
TRAILER_MARK = b"SIG1"
TRAILER_SIZE = len(TRAILER_MARK) + 64
_SEAL_CONTEXT = b"drd-catalog-copy-v1"
_SIGNED_PREFIX = b"drd-catalog-copy-v1\x00"
_MAX_HEADER = 1 << 16
_TAG_SIZE = 16
_HASH_CHUNK = 1 << 20


class DamagedCopy(CryptoError):
    """A copy that is not a container, or was changed, or was made with other keys."""


@dataclass(frozen=True)
class CopyHeader:
    """The clear header of a container (``raw`` is its exact bytes)."""

    document: dict[str, Any]
    raw: bytes
    end: int  # offset of the first frame

    @property
    def meta(self) -> dict[str, Any]:
        return self.document.get("meta", {})


class ContainerWriter:
    """Write a container to the binary file ``target``: :meth:`write` the payload (any
    number of times), then :meth:`close` to write the last frame and the signature.

    Memory: one chunk. ``target`` must be a file opened for writing; nothing is read back.
    """

    def __init__(self, target: BinaryIO, escrow_public: X25519PublicKey,
                 signing_private: Ed25519PrivateKey, *, created_at: str,
                 meta: dict[str, Any] | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self._target = target
        self._signing = signing_private
        self._digest = hashlib.sha256()
        self._file_key = secrets.token_bytes(32)
        self._aead = AESGCM(self._file_key)
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        header = json.dumps({
            "format": FORMAT,
            "version": VERSION,
            "created_at": created_at,
            "escrow_key_sha256": escrow_fingerprint(escrow_public),
            "signing_key_sha256": signing_fingerprint(signing_private.public_key()),
            "sealed_key": _b64(seal(escrow_public, self._file_key, _SEAL_CONTEXT)),
            "chunk_size": chunk_size,
            "compression": "gzip",
            "meta": meta or {},
        }, sort_keys=True, separators=(",", ":")).encode()
        self._associated = hashlib.sha256(header).digest()
        self._emit(MAGIC + struct.pack(">I", len(header)) + header)

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed container")
        self._buffer += data
        while len(self._buffer) > self._chunk_size:
            self._frame(bytes(self._buffer[:self._chunk_size]), final=False)
            del self._buffer[:self._chunk_size]
        return len(data)

    def close(self) -> None:
        """Write the last frame and the signature (once; later calls do nothing)."""
        if self._closed:
            return
        self._frame(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._closed = True
        signature = self._signing.sign(_SIGNED_PREFIX + self._digest.digest())
        self._target.write(TRAILER_MARK + signature)

    # gzip.GzipFile(fileobj=writer) needs these two
    def flush(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return self._closed

    def _frame(self, plaintext: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, final), plaintext, self._associated)
        self._counter += 1
        self._emit(struct.pack(">I", len(sealed)) + sealed)

    def _emit(self, data: bytes) -> None:
        self._digest.update(data)
        self._target.write(data)


def read_header(source: BinaryIO) -> CopyHeader:
    """The header of the container in ``source`` (read from its start).

    Raises :class:`DamagedCopy` if it is not a container of a known version.
    """
    source.seek(0)
    start = source.read(len(MAGIC) + 4)
    if len(start) < len(MAGIC) + 4 or not start.startswith(MAGIC):
        raise DamagedCopy("not a drd catalog copy (no DRDCOPY1 magic)")
    (length,) = struct.unpack(">I", start[len(MAGIC):])
    if length > _MAX_HEADER:
        raise DamagedCopy("not a drd catalog copy (header too long)")
    raw = source.read(length)
    try:
        document = json.loads(raw)
        if document["format"] != FORMAT or document["version"] != VERSION:
            raise ValueError("unknown format or version")
        for name in ("escrow_key_sha256", "signing_key_sha256", "sealed_key"):
            if not isinstance(document[name], str):
                raise ValueError(f"{name} is not text")
        if not isinstance(document["chunk_size"], int) or not 0 < document["chunk_size"] <= 1 << 26:
            raise ValueError("chunk_size out of range")
    except (ValueError, KeyError, TypeError) as error:
        raise DamagedCopy(f"not a drd catalog copy of a known version: {error}") from None
    return CopyHeader(document=document, raw=raw, end=len(MAGIC) + 4 + length)


def verify(source: BinaryIO, signing_public: Ed25519PublicKey) -> CopyHeader:
    """Check the signature of the container in the seekable file ``source``; return its
    header.

    Raises :class:`DamagedCopy` if it was made with another signing key (another centre)
    or any byte was changed.
    """
    header = read_header(source)
    if header.document["signing_key_sha256"] != signing_fingerprint(signing_public):
        raise DamagedCopy("the copy was signed by another centre's key (signing key "
                          f"{header.document['signing_key_sha256'][:16]}..., the kit's is "
                          f"{signing_fingerprint(signing_public)[:16]}...)")
    size = source.seek(0, os.SEEK_END)
    if size < header.end + TRAILER_SIZE:
        raise DamagedCopy("the copy is cut short")
    digest = hashlib.sha256()
    source.seek(0)
    remaining = size - TRAILER_SIZE
    while remaining:
        chunk = source.read(min(_HASH_CHUNK, remaining))
        if not chunk:
            raise DamagedCopy("the copy is cut short")
        digest.update(chunk)
        remaining -= len(chunk)
    trailer = source.read(TRAILER_SIZE)
    if not trailer.startswith(TRAILER_MARK):
        raise DamagedCopy("the copy has no signature")
    try:
        signing_public.verify(trailer[len(TRAILER_MARK):], _SIGNED_PREFIX + digest.digest())
    except InvalidSignature:
        raise DamagedCopy("the copy does not match its signature: it was changed") from None
    return header


def open_payload(source: BinaryIO, header: CopyHeader,
                 escrow_private: X25519PrivateKey) -> Iterator[bytes]:
    """Yield the decrypted payload (gzip bytes) of a container already :func:`verify`-ed.

    Raises :class:`DamagedCopy` if it was sealed to another escrow key or a frame does
    not decrypt (changed, reordered, cut short).
    """
    if header.document["escrow_key_sha256"] != escrow_fingerprint(escrow_private.public_key()):
        raise DamagedCopy("the copy was encrypted for another centre's escrow key")
    try:
        file_key = unseal(escrow_private, _unb64(header.document["sealed_key"]), _SEAL_CONTEXT)
    except (CryptoError, ValueError):
        raise DamagedCopy("the copy's key does not unseal with the kit's escrow key") from None
    aead = AESGCM(file_key)
    associated = hashlib.sha256(header.raw).digest()
    limit = header.document["chunk_size"] + _TAG_SIZE
    end = source.seek(0, os.SEEK_END) - TRAILER_SIZE
    source.seek(header.end)
    position, counter = header.end, 0
    while True:
        prefix = source.read(4)
        if len(prefix) < 4:
            raise DamagedCopy("the copy is cut short")
        (length,) = struct.unpack(">I", prefix)
        if length < _TAG_SIZE or length > limit or position + 4 + length > end:
            raise DamagedCopy("the copy has a damaged frame")
        sealed = source.read(length)
        position += 4 + length
        final = position == end
        try:
            yield aead.decrypt(_nonce(counter, final), sealed, associated)
        except InvalidTag:
            raise DamagedCopy("the copy has a frame that does not decrypt") from None
        counter += 1
        if final:
            return


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


__all__ = ["ContainerWriter", "CopyHeader", "DamagedCopy", "open_payload",
           "read_header", "verify"]

"""Sealing a secret to an X25519 public key: how agents escrow their repository password.

ECIES from ``cryptography`` primitives. To seal, make an ephemeral X25519 key pair, agree
a shared secret with the recipient's public key, derive a one-time AES-256-GCM key with
HKDF-SHA256 and encrypt. Only the holder of the recipient's private key can unseal.

Blob format (version 1)::

    offset  size  field
    0       1     version, 0x01
    1       32    ephemeral X25519 public key (raw)
    33      12    nonce (random)
    45      n+16  AES-256-GCM ciphertext and tag

Key derivation: ``HKDF-SHA256(shared, length=32, salt=ephemeral_public || recipient_public,
info=b"drd-seal-v1")``, so the key is bound to both public keys and to the format version.
The associated data is ``version || ephemeral_public || context``: the header cannot be
changed, and a blob sealed for one context (``b"system:fs1"``) cannot be passed off as
another's.

Sealing again: the first :data:`SEAL_HEAD_SIZE` bytes of a blob (version, ephemeral key,
nonce) and the secret determine the rest, for whoever holds the recipient's private key
(it derives the same AES key from the ephemeral public key). :func:`reseal` rebuilds a
blob byte for byte, :func:`resealed_digest` its SHA-256 and size without holding it: so
the centre, which keeps a manifest's plaintext, needs only its 45-byte head to know, and
to write back, the exact object an agent sealed into the stores. It encrypts the same
bytes under the same key and nonce again, which reveals nothing new -- provided the
secret is the one first sealed: callers check it against its recorded digest first.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from drd.crypto.errors import CryptoError

VERSION = 1
_INFO = b"drd-seal-v1"
_PUBLIC_KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 1 + _PUBLIC_KEY_SIZE
_MINIMUM_SIZE = _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE
SEAL_HEAD_SIZE = _HEADER_SIZE + _NONCE_SIZE
"""The bytes at the start of a sealed blob that, with the secret, determine the rest."""
SEAL_OVERHEAD = _MINIMUM_SIZE
"""How much longer a sealed blob is than its secret."""
_CHUNK = 1 << 20


def seal(public_key: X25519PublicKey, secret: bytes, context: bytes = b"") -> bytes:
    """Encrypt ``secret`` so that only ``public_key``'s private key can read it.

    ``context`` is authenticated, not encrypted; :func:`unseal` needs the same value.
    Returns the versioned blob described in the module docstring.
    """
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw(ephemeral.public_key())
    key = _derive_key(ephemeral.exchange(public_key), ephemeral_public, _raw(public_key))
    header = bytes([VERSION]) + ephemeral_public
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return header + nonce + AESGCM(key).encrypt(nonce, secret, header + context)


def unseal(private_key: X25519PrivateKey, blob: bytes, context: bytes = b"") -> bytes:
    """Return the secret in ``blob`` sealed to ``private_key``'s public key with ``context``.

    Raises :class:`CryptoError` -- without saying which check failed -- if the blob is
    malformed or tampered with, was sealed to another key, or under another context.
    """
    if len(blob) < _MINIMUM_SIZE or blob[0] != VERSION:
        raise CryptoError("cannot unseal: not a sealed secret of a known version")
    header = blob[:_HEADER_SIZE]
    ephemeral_public = blob[1:_HEADER_SIZE]
    nonce = blob[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE]
    sealed = blob[_HEADER_SIZE + _NONCE_SIZE :]
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _derive_key(shared, ephemeral_public, _raw(private_key.public_key()))
        return AESGCM(key).decrypt(nonce, sealed, header + context)
    except (InvalidTag, ValueError):
        # ValueError: an ephemeral key of low order (all-zero shared secret)
        raise CryptoError("cannot unseal: wrong key, wrong context or damaged data") from None


def reseal(private_key: X25519PrivateKey, head: bytes, secret: bytes,
           context: bytes = b"") -> bytes:
    """The blob :func:`seal` made of ``secret`` with ``context``, rebuilt from its first
    :data:`SEAL_HEAD_SIZE` bytes ``head`` by the holder of the recipient's private key.

    Raises :class:`CryptoError` for a head that is not one of a known version, or whose
    ephemeral key is unusable.
    """
    return b"".join(_resealed(private_key, head, secret, context))


def resealed_digest(private_key: X25519PrivateKey, head: bytes, secret: bytes,
                    context: bytes = b"") -> tuple[str, int]:
    """SHA-256 (hex) and size of :func:`reseal`'s blob, made a MiB at a time (the blob
    itself is never held: a manifest may be hundreds of MiB). Raises as :func:`reseal`."""
    digest = hashlib.sha256()
    size = 0
    for part in _resealed(private_key, head, secret, context):
        digest.update(part)
        size += len(part)
    return digest.hexdigest(), size


def _resealed(private_key: X25519PrivateKey, head: bytes, secret: bytes,
              context: bytes) -> Iterator[bytes]:
    if len(head) != SEAL_HEAD_SIZE or head[0] != VERSION:
        raise CryptoError("cannot seal again: not the head of a sealed secret of a known "
                          "version")
    header = head[:_HEADER_SIZE]
    ephemeral_public = head[1:_HEADER_SIZE]
    nonce = head[_HEADER_SIZE:]
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:
        raise CryptoError("cannot seal again: the head's ephemeral key is unusable") from None
    key = _derive_key(shared, ephemeral_public, _raw(private_key.public_key()))
    # GCM in parts gives the bytes AESGCM.encrypt gives in one: ciphertext, then the tag
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(header + context)
    yield head
    view = memoryview(secret)
    for start in range(0, len(view), _CHUNK):
        yield encryptor.update(view[start:start + _CHUNK])
    yield encryptor.finalize() + encryptor.tag


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_INFO,
    ).derive(shared)


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def recipient_fingerprint(public_key: X25519PublicKey) -> str:
    """SHA-256 (hex) of the raw X25519 public key a blob is sealed to: names the key
    (the same value as the recovery kit's escrow fingerprint)."""
    return hashlib.sha256(_raw(public_key)).hexdigest()


PASSWORD_CONTEXT_PREFIX = b"drd-repository-password:"


def password_context(system: str) -> bytes:
    """The context a system's repository password is sealed under (agent and centre)."""
    return PASSWORD_CONTEXT_PREFIX + system.encode()


MANIFEST_CONTEXT_PREFIX = b"drd-manifest:"


def manifest_context(system: str, snapshot_id: str) -> bytes:
    """The context a snapshot's manifest is sealed under (agent and centre): a manifest
    sealed for another system or snapshot does not unseal as this one's."""
    return MANIFEST_CONTEXT_PREFIX + f"{system}:{snapshot_id}".encode()

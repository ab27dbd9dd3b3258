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
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
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


def _derive_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_INFO,
    ).derive(shared)


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


PASSWORD_CONTEXT_PREFIX = b"drd-repository-password:"


def password_context(system: str) -> bytes:
    """The context a system's repository password is sealed under (agent and centre)."""
    return PASSWORD_CONTEXT_PREFIX + system.encode()

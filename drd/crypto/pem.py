"""PEM encoding of public keys, and loading them back with their type checked.

Agents receive the escrow public key (X25519) and verifiers the signing public key
(Ed25519) as PEM text; loading refuses a key of the wrong type rather than failing later.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from drd.errors import UserError

PublicKey = X25519PublicKey | Ed25519PublicKey


def public_key_pem(public_key: PublicKey) -> bytes:
    """Return ``public_key`` as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo) block."""
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def load_escrow_public_key(pem: bytes) -> X25519PublicKey:
    """Load an X25519 public key from PEM; raises :class:`UserError` for anything else."""
    return _load(pem, X25519PublicKey, "an X25519 (escrow) public key")


def load_signing_public_key(pem: bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM; raises :class:`UserError` for anything else."""
    return _load(pem, Ed25519PublicKey, "an Ed25519 (signing) public key")


def _load(pem: bytes, expected: type, description: str):
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise UserError(f"not {description} in PEM form: {error}") from None
    if not isinstance(key, expected):
        raise UserError(f"not {description}: the PEM holds a {type(key).__name__}")
    return key

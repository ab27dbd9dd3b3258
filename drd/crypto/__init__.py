"""drd's cryptography: the master key, password escrow, signatures, the CA and the key store.

Everything here is built from ``cryptography`` primitives; nothing invents its own cipher.

- :mod:`drd.crypto.masterkey`: the master key that encrypts every other private key and
  every store secret at rest (AES-256-GCM with a context bound as associated data).
- :mod:`drd.crypto.seal`: sealing a secret to an X25519 public key (password escrow,
  manifests in the stores).
- :mod:`drd.crypto.signing`: Ed25519 signatures (drill reports).
- :mod:`drd.crypto.ca`: the centre's own CA and its server certificates (ECDSA P-256).
- :mod:`drd.crypto.keystore`: the keys directory that holds all of the above.

Tampered or undecryptable data raises :class:`~drd.crypto.errors.CryptoError`, whose message
says what failed, never why in cryptographic detail.
"""

from drd.crypto.errors import BadSignature, CryptoError

__all__ = ["BadSignature", "CryptoError"]

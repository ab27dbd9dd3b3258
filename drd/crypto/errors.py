"""Errors raised by :mod:`drd.crypto`."""

from drd.errors import OperationError


class CryptoError(OperationError):
    """Data cannot be decrypted or verified: wrong key, wrong context, or tampered data.

    The message names what was being decrypted, never which check failed, so that an
    attacker probing blobs learns nothing from it.
    """


class BadSignature(CryptoError):
    """A signature does not match the data and the public key."""

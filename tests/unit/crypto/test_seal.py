"""Sealing a secret to an X25519 key: round trip, and every kind of tampering refused."""

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.crypto.errors import CryptoError
from drd.crypto.seal import (
    SEAL_HEAD_SIZE,
    SEAL_OVERHEAD,
    manifest_context,
    password_context,
    reseal,
    resealed_digest,
    seal,
    unseal,
)
from drd.errors import OperationError

RECIPIENT = X25519PrivateKey.generate()
SECRET = b"restic repository password: correct horse battery staple"
CONTEXT = b"system:fileserver-1"

# offsets into a sealed blob: version 0, ephemeral key 1..32, nonce 33..44,
# ciphertext 45..45+len(SECRET)-1, tag the last 16 bytes
_CIPHERTEXT = 45
_TAG = 45 + len(SECRET)
TAMPER_OFFSETS = {
    "version": 0,
    "ephemeral key, first byte": 1,
    "ephemeral key, last byte": 32,
    "nonce, first byte": 33,
    "nonce, last byte": 44,
    "ciphertext, first byte": _CIPHERTEXT,
    "ciphertext, last byte": _TAG - 1,
    "tag, first byte": _TAG,
    "tag, last byte": _TAG + 15,
}


@given(secret=st.binary(max_size=2048), context=st.binary(max_size=64))
def test_unseal_returns_what_was_sealed(secret, context):
    blob = seal(RECIPIENT.public_key(), secret, context)

    assert unseal(RECIPIENT, blob, context) == secret
    if len(secret) >= 16:  # shorter ones may occur in random bytes by chance
        assert secret not in blob


def test_sealing_twice_gives_different_blobs():
    first = seal(RECIPIENT.public_key(), SECRET)
    second = seal(RECIPIENT.public_key(), SECRET)

    assert first != second
    assert unseal(RECIPIENT, first) == unseal(RECIPIENT, second) == SECRET


@pytest.mark.parametrize("offset", TAMPER_OFFSETS.values(), ids=TAMPER_OFFSETS.keys())
@pytest.mark.parametrize("flip", [0x01, 0x80])
def test_a_flipped_bit_anywhere_is_refused(offset, flip):
    blob = bytearray(seal(RECIPIENT.public_key(), SECRET, CONTEXT))
    assert len(blob) == _TAG + 16
    blob[offset] ^= flip

    with pytest.raises(CryptoError):
        unseal(RECIPIENT, bytes(blob), CONTEXT)


@pytest.mark.parametrize("change", ["truncated", "extended", "empty", "header only"])
def test_a_blob_of_the_wrong_length_is_refused(change):
    blob = seal(RECIPIENT.public_key(), SECRET)
    changed = {
        "truncated": blob[:-1],
        "extended": blob + b"\x00",
        "empty": b"",
        "header only": blob[:45],
    }[change]

    with pytest.raises(CryptoError):
        unseal(RECIPIENT, changed)


def test_a_low_order_ephemeral_key_is_refused_as_a_crypto_error():
    blob = bytearray(seal(RECIPIENT.public_key(), SECRET))
    blob[1:33] = bytes(32)  # the all-zero point: the shared secret would be all zeros

    with pytest.raises(CryptoError):
        unseal(RECIPIENT, bytes(blob))


def test_the_wrong_private_key_is_refused():
    blob = seal(RECIPIENT.public_key(), SECRET)

    with pytest.raises(CryptoError):
        unseal(X25519PrivateKey.generate(), blob)


def test_the_wrong_context_is_refused():
    blob = seal(RECIPIENT.public_key(), SECRET, b"system:a")

    with pytest.raises(CryptoError):
        unseal(RECIPIENT, blob, b"system:b")
    with pytest.raises(CryptoError):
        unseal(RECIPIENT, blob)


def test_failures_do_not_say_which_check_failed():
    blob = seal(RECIPIENT.public_key(), SECRET, CONTEXT)
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    messages = set()
    for attempt in (
        lambda: unseal(X25519PrivateKey.generate(), blob, CONTEXT),
        lambda: unseal(RECIPIENT, blob, b"other"),
        lambda: unseal(RECIPIENT, bytes(tampered), CONTEXT),
    ):
        with pytest.raises(CryptoError) as caught:
            attempt()
        messages.add(str(caught.value))
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    assert len(messages) == 1
    assert SECRET.decode() not in messages.pop()


def test_a_crypto_error_is_an_operation_error():
    assert issubclass(CryptoError, OperationError)


# -- sealing again (the centre writes a sealed manifest back from its plaintext) ----------


@given(secret=st.binary(max_size=3 << 20), context=st.binary(max_size=64))
@settings(max_examples=25, deadline=None)
def test_resealing_from_the_head_gives_the_same_bytes_and_digest(secret, context):
    blob = seal(RECIPIENT.public_key(), secret, context)
    head = blob[:SEAL_HEAD_SIZE]

    assert reseal(RECIPIENT, head, secret, context) == blob
    assert resealed_digest(RECIPIENT, head, secret, context) == \
        (hashlib.sha256(blob).hexdigest(), len(blob))
    assert len(blob) == len(secret) + SEAL_OVERHEAD


def test_a_blob_larger_than_a_chunk_is_resealed_in_parts():
    secret = os.urandom((2 << 20) + 17)
    blob = seal(RECIPIENT.public_key(), secret, CONTEXT)
    assert reseal(RECIPIENT, blob[:SEAL_HEAD_SIZE], secret, CONTEXT) == blob


def test_resealing_other_bytes_another_context_or_with_another_key_differs():
    blob = seal(RECIPIENT.public_key(), SECRET, CONTEXT)
    head = blob[:SEAL_HEAD_SIZE]
    digest = (hashlib.sha256(blob).hexdigest(), len(blob))
    assert resealed_digest(RECIPIENT, head, SECRET[:-1] + b"!", CONTEXT) != digest
    assert resealed_digest(RECIPIENT, head, SECRET, CONTEXT + b"x") != digest
    assert resealed_digest(X25519PrivateKey.generate(), head, SECRET, CONTEXT) != digest


@pytest.mark.parametrize("head", [b"", b"\x01" * 44, b"\x01" * 46, b"\x02" + b"\x01" * 44])
def test_a_malformed_head_is_refused(head):
    with pytest.raises(CryptoError):
        reseal(RECIPIENT, head, SECRET, CONTEXT)


def test_a_head_with_a_low_order_ephemeral_key_is_refused():
    with pytest.raises(CryptoError):
        resealed_digest(RECIPIENT, b"\x01" + bytes(32) + bytes(12), SECRET, CONTEXT)


def test_manifest_contexts_bind_system_and_snapshot():
    snapshot = "ab" * 32
    assert manifest_context("fs1", snapshot) == b"drd-manifest:fs1:" + snapshot.encode()
    blob = seal(RECIPIENT.public_key(), SECRET, manifest_context("fs1", snapshot))
    assert unseal(RECIPIENT, blob, manifest_context("fs1", snapshot)) == SECRET
    for other in (manifest_context("fs2", snapshot), manifest_context("fs1", "cd" * 32),
                  password_context("fs1"), b""):
        with pytest.raises(CryptoError):
            unseal(RECIPIENT, blob, other)

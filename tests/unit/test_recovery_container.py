"""The catalog copy's container: a round trip through encryption and signature, and every
kind of change (a flipped byte, a cut, another centre's keys) refused."""

from __future__ import annotations

import hashlib
import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.recovery.container import (
    _SIGNED_PREFIX,
    TRAILER_SIZE,
    ContainerWriter,
    DamagedCopy,
    open_payload,
    read_header,
    verify,
)

ESCROW = X25519PrivateKey.generate()
SIGNING = Ed25519PrivateKey.generate()


def make(payload: bytes, *, chunk_size: int = 64, pieces: int = 3,
         escrow=ESCROW, signing=SIGNING) -> bytes:
    target = io.BytesIO()
    writer = ContainerWriter(target, escrow.public_key(), signing, created_at="2026-11-28",
                             meta={"n": 1}, chunk_size=chunk_size)
    step = max(1, len(payload) // pieces)
    for start in range(0, len(payload), step):
        writer.write(payload[start:start + step])
    writer.close()
    return target.getvalue()


def read(data: bytes, *, escrow=ESCROW, signing=SIGNING) -> bytes:
    source = io.BytesIO(data)
    header = verify(source, signing.public_key())
    return b"".join(open_payload(source, header, escrow))


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=1000), chunk_size=st.integers(min_value=1, max_value=300),
       pieces=st.integers(min_value=1, max_value=7))
def test_any_payload_comes_back_whatever_the_chunking(payload, chunk_size, pieces):
    data = make(payload, chunk_size=chunk_size, pieces=pieces)
    assert read(data) == payload
    assert read_header(io.BytesIO(data)).meta == {"n": 1}


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=1, max_size=400), position=st.integers(min_value=0),
       bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(payload, position, bit):
    data = bytearray(make(payload))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(DamagedCopy):
        read(bytes(data))


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(min_size=1, max_size=400), cut=st.integers(min_value=1))
def test_a_copy_cut_short_is_refused(payload, cut):
    data = make(payload)
    with pytest.raises(DamagedCopy):
        read(data[:len(data) - 1 - cut % len(data)])


def test_a_copy_re_signed_after_dropping_its_last_frame_does_not_decrypt():
    """Someone holding the signing key but not the escrow key still cannot cut frames:
    the last frame's nonce differs from any other's."""
    payload = bytes(range(200))
    data = make(payload, chunk_size=64)
    source = io.BytesIO(data)
    header = read_header(source)
    frames, position, end = [], header.end, len(data) - TRAILER_SIZE
    while position < end:
        length = int.from_bytes(data[position:position + 4], "big")
        frames.append(data[position:position + 4 + length])
        position += 4 + length
    body = data[:header.end] + b"".join(frames[:-1])
    forged = body + b"SIG1" + SIGNING.sign(_SIGNED_PREFIX + hashlib.sha256(body).digest())
    with pytest.raises(DamagedCopy, match="does not decrypt"):
        read(forged)


def test_another_centres_keys_are_refused_by_name():
    data = make(b"catalog")
    with pytest.raises(DamagedCopy, match="another centre's key"):
        read(data, signing=Ed25519PrivateKey.generate())
    with pytest.raises(DamagedCopy, match="another centre's escrow key"):
        read(data, escrow=X25519PrivateKey.generate())


def test_the_payload_is_not_in_clear():
    payload = b"sealed-password-" * 20
    assert b"sealed-password" not in make(payload)


@pytest.mark.parametrize("data", [b"", b"DRDCOPY1", b"NOTACOPY" + bytes(100),
                                  b"DRDCOPY1\x00\x00\x00\x02{}"])
def test_what_is_not_a_container_is_refused(data):
    with pytest.raises(DamagedCopy, match="not a drd catalog copy"):
        verify(io.BytesIO(data), SIGNING.public_key())

"""The recovery kit's format: keys round-trip under the passphrase, nothing secret is in
clear, and any change to the kit or a wrong passphrase is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from drd.crypto import ca
from drd.errors import UserError
from drd.recovery import kit
from drd.secrets import Secret

FAST = {"n": 2**4, "r": 1, "p": 1}  # scrypt's real cost belongs in production, not here
PASSPHRASE = Secret("correct horse battery staple")


def make_keys() -> kit.RecoveryKeys:
    ca_key, ca_certificate = ca.create_ca("test CA")
    return kit.RecoveryKeys(escrow=X25519PrivateKey.generate(),
                            signing=Ed25519PrivateKey.generate(),
                            ca_key=ca_key, ca_certificate=ca_certificate)


KEYS = make_keys()


def raw(key) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def test_the_keys_come_back_with_the_passphrase_and_match_the_clear_fingerprints():
    data = kit.build_kit(KEYS, PASSPHRASE, hostname="dr1", **FAST)
    opened = kit.open_kit(data, PASSPHRASE)
    assert raw(opened.escrow) == raw(KEYS.escrow)
    assert raw(opened.signing) == raw(KEYS.signing)
    assert raw(opened.ca_key) == raw(KEYS.ca_key)
    assert ca.fingerprint_sha256(opened.ca_certificate) == ca.fingerprint_sha256(
        KEYS.ca_certificate)
    document = kit.read_kit(data)
    assert document["public"]["escrow_key_sha256"] == kit.escrow_fingerprint(
        KEYS.escrow.public_key())
    assert document["public"]["signing_key_sha256"] == kit.signing_fingerprint(
        KEYS.signing.public_key())
    assert document["centre"] == {"hostname": "dr1"}


def test_no_private_key_and_no_passphrase_is_in_clear():
    data = kit.build_kit(KEYS, PASSPHRASE, **FAST)
    for key in (KEYS.escrow, KEYS.signing, KEYS.ca_key):
        der = raw(key)
        secret_part = der[-32:]  # the private scalar ends the PKCS#8 DER
        for form in (der, secret_part, base64.b64encode(der), base64.b64encode(secret_part),
                     secret_part.hex().encode()):
            assert form not in data
    assert PASSPHRASE.reveal().encode() not in data
    assert b"PRIVATE KEY" not in data


def test_a_wrong_passphrase_is_a_clear_error():
    data = kit.build_kit(KEYS, PASSPHRASE, **FAST)
    with pytest.raises(UserError, match="wrong recovery passphrase"):
        kit.open_kit(data, Secret("correct horse battery stapler"))


@pytest.mark.parametrize("passphrase", ["", "short", "elevenchars"])
def test_a_short_passphrase_is_refused(passphrase):
    with pytest.raises(UserError, match="at least 12 characters"):
        kit.build_kit(KEYS, Secret(passphrase), **FAST)


@pytest.mark.parametrize("field", ["escrow_key_sha256", "signing_key_sha256",
                                   "ca_certificate_sha256"])
def test_a_changed_fingerprint_in_clear_makes_the_kit_refuse_to_open(field):
    document = json.loads(kit.build_kit(KEYS, PASSPHRASE, **FAST))
    document["public"][field] = "0" * 64
    with pytest.raises(UserError, match="wrong recovery passphrase, or the kit was changed"):
        kit.open_kit(json.dumps(document).encode(), PASSPHRASE)


def test_a_raised_scrypt_cost_beyond_the_bounds_is_refused_before_deriving():
    document = json.loads(kit.build_kit(KEYS, PASSPHRASE, **FAST))
    document["kdf"]["n"] = 2**30
    with pytest.raises(UserError, match="out of range"):
        kit.open_kit(json.dumps(document).encode(), PASSPHRASE)


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe", "not JSON"),
    (b"[]", "no 'format"),
    (b'{"format": "drd-recovery-kit", "version": 9}', "version 9"),
    (b'{"format": "drd-recovery-kit", "version": 1}', "damaged"),
])
def test_what_is_not_a_kit_is_refused_without_a_passphrase(data, message):
    with pytest.raises(UserError, match=message):
        kit.read_kit(data)


@settings(max_examples=25, deadline=None)
@given(passphrase=st.text(min_size=12, max_size=40).filter(lambda text: text.strip()),
       position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_passphrase_round_trips_and_any_flipped_ciphertext_bit_is_refused(
        passphrase, position, bit):
    secret = Secret(passphrase)
    data = kit.build_kit(KEYS, secret, **FAST)
    assert raw(kit.open_kit(data, secret).escrow) == raw(KEYS.escrow)
    document = json.loads(data)
    ciphertext = bytearray(base64.b64decode(document["ciphertext"]))
    ciphertext[position % len(ciphertext)] ^= 1 << bit
    document["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    with pytest.raises(UserError):
        kit.open_kit(json.dumps(document).encode(), secret)

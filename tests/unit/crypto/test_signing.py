"""Ed25519 signatures of bytes and detached signatures of files."""

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from drd.crypto.errors import BadSignature, CryptoError
from drd.crypto.signing import sign, sign_file, verify, verify_file
from drd.errors import UserError

KEY = Ed25519PrivateKey.generate()
REPORT = b'{"drill": 1, "passed": true}'


@given(data=st.binary(max_size=4096))
def test_a_signature_verifies(data):
    verify(KEY.public_key(), data, sign(KEY, data))


def test_tampered_data_is_refused():
    signature = sign(KEY, REPORT)

    with pytest.raises(BadSignature):
        verify(KEY.public_key(), REPORT.replace(b"true", b"fals"), signature)


@pytest.mark.parametrize("offset", [0, 31, 32, 63])
def test_a_tampered_signature_is_refused(offset):
    signature = bytearray(sign(KEY, REPORT))
    signature[offset] ^= 1

    with pytest.raises(BadSignature):
        verify(KEY.public_key(), REPORT, bytes(signature))


def test_another_key_is_refused():
    with pytest.raises(BadSignature):
        verify(Ed25519PrivateKey.generate().public_key(), REPORT, sign(KEY, REPORT))


def test_a_bad_signature_is_a_crypto_error():
    assert issubclass(BadSignature, CryptoError)


def test_a_signed_file_verifies(tmp_path):
    report = tmp_path / "report.json"
    report.write_bytes(REPORT)

    signature_path = sign_file(KEY, report)

    assert signature_path == tmp_path / "report.json.sig"
    assert json.loads(signature_path.read_text())["algorithm"] == "ed25519"
    verify_file(KEY.public_key(), report)


def test_a_changed_file_is_refused(tmp_path):
    report = tmp_path / "report.json"
    report.write_bytes(REPORT)
    sign_file(KEY, report)
    report.write_bytes(REPORT + b" ")

    with pytest.raises(BadSignature, match="does not match its signature"):
        verify_file(KEY.public_key(), report)


def test_a_file_signed_by_another_key_is_refused(tmp_path):
    report = tmp_path / "report.json"
    report.write_bytes(REPORT)
    sign_file(Ed25519PrivateKey.generate(), report)

    with pytest.raises(BadSignature, match="another key"):
        verify_file(KEY.public_key(), report)


@pytest.mark.parametrize("content", ["", "[]", "{}", '{"version": 1, "algorithm": "rsa"}',
                                     "not json", '{"version": 1, "algorithm": "ed25519", '
                                     '"key": "x", "signature": "***"}'])
def test_a_malformed_signature_file_is_refused(tmp_path, content):
    report = tmp_path / "report.json"
    report.write_bytes(REPORT)
    (tmp_path / "report.json.sig").write_text(content)

    with pytest.raises(BadSignature):
        verify_file(KEY.public_key(), report)


def test_signing_does_not_replace_an_existing_signature(tmp_path):
    report = tmp_path / "report.json"
    report.write_bytes(REPORT)
    signature_path = sign_file(KEY, report)
    before = signature_path.read_bytes()

    with pytest.raises(UserError, match="already exists"):
        sign_file(Ed25519PrivateKey.generate(), report)
    assert signature_path.read_bytes() == before

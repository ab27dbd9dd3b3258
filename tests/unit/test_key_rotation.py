"""Key rotation's pure parts: the new passphrase's rule, which key signed a drill report,
and the recovery kit carrying retired signing keys (authenticated, not just listed)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drd.errors import UserError
from drd.recovery import kit
from drd.secrets import Secret
from drd.services import key_rotation
from restore_drills.report import sign_report
from tests.unit.test_recovery_kit import FAST, PASSPHRASE, make_keys


@pytest.mark.parametrize("text", ["", "short", "elevenchars"])
def test_a_short_master_passphrase_is_bad_input(text):
    with pytest.raises(UserError, match="at least 12 characters"):
        key_rotation.check_new_passphrase(Secret(text))


def test_a_long_enough_master_passphrase_passes():
    key_rotation.check_new_passphrase(Secret("twelve chars"))


def test_a_report_is_told_signed_by_its_key_only():
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    document = {"schema": 1, "system": "fs1", "passed": True}
    signature = sign_report(old, document)
    assert key_rotation._signed_by(old.public_key(), document, signature)
    assert not key_rotation._signed_by(new.public_key(), document, signature)
    assert not key_rotation._signed_by(old.public_key(), {**document, "passed": False},
                                       signature)
    # a row holding something JSON cannot encode is "not verified", not a crash
    assert not key_rotation._signed_by(old.public_key(), {"at": object()}, signature)


def test_the_result_names_both_keys_and_no_secret():
    result = key_rotation.RotationResult(kind="escrow", rotation="ab12", old_key="o" * 64,
                                         new_key="n" * 64, counts={"systems": 3})
    assert result.as_dict() == {"kind": "escrow", "rotation": "ab12",
                                "old_key_sha256": "o" * 64, "new_key_sha256": "n" * 64,
                                "counts": {"systems": 3}, "unverified_drills": []}


def test_a_kit_carries_retired_signing_keys_under_its_passphrase():
    retired = (Ed25519PrivateKey.generate().public_key(),
               Ed25519PrivateKey.generate().public_key())
    keys = dataclasses.replace(make_keys(), retired_signing=retired)
    data = kit.build_kit(keys, PASSPHRASE, hostname="dr1", **FAST)
    opened = kit.open_kit(data, PASSPHRASE)
    assert [key.public_bytes_raw() for key in opened.retired_signing] == \
        [key.public_bytes_raw() for key in retired]
    # a kit without retired keys reads as before (no list in its clear part)
    plain = json.loads(kit.build_kit(make_keys(), PASSPHRASE, hostname="dr1", **FAST))
    assert "retired_signing_public_keys_pem" not in plain["public"]
    # a key slipped into the clear list is refused: the passphrase authenticates the list
    document = json.loads(data)
    document["public"]["retired_signing_public_keys_pem"].append(
        document["public"]["signing_public_key_pem"])
    with pytest.raises(UserError, match="wrong recovery passphrase, or the kit was changed"):
        kit.open_kit(json.dumps(document).encode(), PASSPHRASE)

"""The master key: from a random file or a passphrase, and encryption bound to a context."""

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import (
    KDF_FILE,
    KEY_FILE,
    MasterKey,
    create_master_key,
    load_master_key,
    passphrase_from_environment,
)
from drd.errors import UserError
from drd.secrets import Secret

KEY = MasterKey.generate()
PASSPHRASE = Secret("a long passphrase for the DR centre")


@pytest.fixture(autouse=True)
def _no_passphrase_in_the_environment(monkeypatch):
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def _mode(path):
    return path.stat().st_mode & 0o777


@given(plaintext=st.binary(max_size=2048), context=st.text(min_size=1, max_size=40))
def test_decrypt_returns_what_was_encrypted(plaintext, context):
    assert KEY.decrypt(KEY.encrypt(plaintext, context), context) == plaintext


def test_the_context_is_bound():
    blob = KEY.encrypt(b"secret access key", "store:a")

    with pytest.raises(CryptoError, match="store:b"):
        KEY.decrypt(blob, "store:b")


def test_another_key_is_refused():
    with pytest.raises(CryptoError):
        MasterKey.generate().decrypt(KEY.encrypt(b"secret", "c"), "c")


@pytest.mark.parametrize("offset", [0, 1, 12, 13, 20, -17, -16, -1],
                         ids=["version", "nonce first", "nonce last", "ciphertext first",
                              "ciphertext last", "ciphertext end", "tag first", "tag last"])
def test_tampering_is_refused(offset):
    blob = bytearray(KEY.encrypt(b"eight bytes", "c"))
    assert len(blob) == 1 + 12 + 11 + 16
    blob[offset] ^= 1

    with pytest.raises(CryptoError):
        KEY.decrypt(bytes(blob), "c")


def test_a_truncated_blob_is_refused():
    with pytest.raises(CryptoError):
        KEY.decrypt(KEY.encrypt(b"", "c")[:-1], "c")


def test_an_empty_context_is_a_programming_error():
    with pytest.raises(ValueError):
        KEY.encrypt(b"x", "")


def test_the_key_never_shows():
    key = MasterKey(b"K" * 32)

    assert "KKKK" not in repr(key) and "KKKK" not in str(key) and "KKKK" not in f"{key}"
    assert "redacted" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_a_key_is_32_bytes():
    with pytest.raises(ValueError):
        MasterKey(b"short")


def test_a_random_key_file_is_private_and_loads_again(tmp_path):
    keys = tmp_path / "keys"

    created = create_master_key(keys, None)

    assert _mode(keys) == 0o700
    assert _mode(keys / KEY_FILE) == 0o600
    assert not (keys / KDF_FILE).exists()
    loaded = load_master_key(keys)
    assert loaded.decrypt(created.encrypt(b"x", "c"), "c") == b"x"


def test_a_passphrase_derives_the_same_key_again(tmp_path):
    created = create_master_key(tmp_path, PASSPHRASE)

    loaded = load_master_key(tmp_path, Secret(PASSPHRASE.reveal()))

    assert loaded.decrypt(created.encrypt(b"x", "c"), "c") == b"x"
    assert not (tmp_path / KEY_FILE).exists()
    document = (tmp_path / KDF_FILE).read_text()
    assert PASSPHRASE.reveal() not in document
    assert json.loads(document)["kdf"] == "scrypt"


def test_the_same_passphrase_in_two_homes_gives_two_keys(tmp_path):
    first = create_master_key(tmp_path / "a", PASSPHRASE)
    second = create_master_key(tmp_path / "b", PASSPHRASE)

    with pytest.raises(CryptoError):
        second.decrypt(first.encrypt(b"x", "c"), "c")


def test_a_wrong_passphrase_is_told_apart(tmp_path):
    create_master_key(tmp_path, PASSPHRASE)

    with pytest.raises(UserError, match="wrong master passphrase"):
        load_master_key(tmp_path, Secret("not the passphrase"))


def test_the_passphrase_comes_from_the_environment(tmp_path, monkeypatch):
    created = create_master_key(tmp_path, PASSPHRASE)
    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", PASSPHRASE.reveal())

    loaded = load_master_key(tmp_path)

    assert loaded.decrypt(created.encrypt(b"x", "c"), "c") == b"x"


def test_the_systemd_credential_comes_before_the_environment(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "drd-master-passphrase").write_text("from systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", "from the environment")

    assert passphrase_from_environment() == Secret("from systemd")


def test_a_missing_passphrase_says_where_to_put_it(tmp_path):
    create_master_key(tmp_path, PASSPHRASE)

    with pytest.raises(UserError, match="DRD_MASTER_PASSPHRASE"):
        load_master_key(tmp_path)


def test_no_master_key_says_run_drd_init(tmp_path):
    with pytest.raises(UserError, match="drd init"):
        load_master_key(tmp_path)


def test_a_master_key_is_never_replaced(tmp_path):
    create_master_key(tmp_path, None)
    before = (tmp_path / KEY_FILE).read_bytes()

    for passphrase in (None, PASSPHRASE):
        with pytest.raises(UserError, match="already exists"):
            create_master_key(tmp_path, passphrase)
    assert (tmp_path / KEY_FILE).read_bytes() == before
    assert not (tmp_path / KDF_FILE).exists()


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    create_master_key(tmp_path, None)
    (tmp_path / KEY_FILE).chmod(0o640)

    with pytest.raises(UserError, match="chmod 600"):
        load_master_key(tmp_path)


def test_an_empty_passphrase_is_refused(tmp_path):
    with pytest.raises(UserError, match="empty"):
        create_master_key(tmp_path, Secret(""))


@pytest.mark.parametrize("field, value", [("n", 2**40), ("n", 1000), ("salt", "***"),
                                          ("verifier", None), ("kdf", "pbkdf2")])
def test_a_damaged_kdf_file_is_refused(tmp_path, field, value):
    create_master_key(tmp_path, PASSPHRASE)
    path = tmp_path / KDF_FILE
    document = json.loads(path.read_text())
    document[field] = value
    path.write_text(json.dumps(document))

    with pytest.raises(UserError, match="damaged"):
        load_master_key(tmp_path, PASSPHRASE)

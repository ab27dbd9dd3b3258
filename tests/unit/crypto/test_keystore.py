"""The keys directory: modes, no overwrite, keys usable, nothing readable without the master key."""

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from drd.crypto import keystore as keystore_module
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import FILES, KeyStore
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import load_escrow_public_key, load_signing_public_key
from drd.crypto.seal import seal, unseal
from drd.crypto.signing import sign, verify
from drd.errors import UserError

from ._tls import client_context, handshake, server_context

MASTER_KEY = MasterKey.generate()


@pytest.fixture
def keys(tmp_path):
    store = KeyStore(tmp_path / "keys", MASTER_KEY)
    store.create(hostnames=["drd.example"], ip_addresses=["10.0.0.5"])
    return store


def _mode(path):
    return path.stat().st_mode & 0o777


def test_create_writes_every_file_with_its_mode(keys):
    assert keys.exists()
    assert _mode(keys.keys_dir) == 0o700
    for name in FILES:
        expected = 0o600 if name.endswith(".key.enc") else 0o644
        assert _mode(keys.keys_dir / name) == expected, name
    assert not [path for path in keys.keys_dir.iterdir() if path.name.startswith(".")]


def test_create_refuses_to_overwrite(keys):
    before = {name: (keys.keys_dir / name).read_bytes() for name in FILES}

    with pytest.raises(UserError, match="refusing to overwrite"):
        KeyStore(keys.keys_dir, MASTER_KEY).create()
    assert before == {name: (keys.keys_dir / name).read_bytes() for name in FILES}


def test_a_partial_key_store_is_not_complete_and_not_overwritten(tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "ca.crt.pem").write_text("left over")
    store = KeyStore(keys_dir, MASTER_KEY)

    assert not store.exists()
    with pytest.raises(UserError, match="ca.crt.pem"):
        store.create()


def test_a_failed_create_leaves_no_files(tmp_path, monkeypatch):
    real_write = keystore_module.write_new_file
    calls = []

    def failing_write(path, data, mode):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(path, data, mode)

    monkeypatch.setattr(keystore_module, "write_new_file", failing_write)
    store = KeyStore(tmp_path / "keys", MASTER_KEY)

    with pytest.raises(OSError, match="disk full"):
        store.create()
    assert list(store.keys_dir.iterdir()) == []


def test_escrowed_secrets_unseal_with_the_stored_key(keys):
    blob = seal(keys.escrow_public_key(), b"repository password", b"system:fs1")

    assert unseal(keys.escrow_private_key(), blob, b"system:fs1") == b"repository password"


def test_signatures_verify_with_the_stored_public_key(keys):
    verify(keys.signing_public_key(), b"report", sign(keys.signing_private_key(), b"report"))


def test_public_files_load_as_the_right_kind_of_key(keys):
    load_escrow_public_key((keys.keys_dir / "escrow.pub.pem").read_bytes())
    load_signing_public_key((keys.keys_dir / "signing.pub.pem").read_bytes())
    with pytest.raises(UserError, match="X25519"):
        load_escrow_public_key((keys.keys_dir / "signing.pub.pem").read_bytes())


def test_private_keys_are_not_stored_in_plaintext(keys):
    raw = keys.escrow_private_key().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    for name in FILES:
        content = (keys.keys_dir / name).read_bytes()
        assert raw not in content
        assert b"PRIVATE KEY" not in content


def test_another_master_key_cannot_read_the_private_keys(keys):
    other = KeyStore(keys.keys_dir, MasterKey.generate())

    with pytest.raises(CryptoError, match="escrow.key.enc"):
        other.escrow_private_key()


def test_a_key_file_renamed_to_another_does_not_decrypt(keys):
    signing = keys.keys_dir / "signing.key.enc"
    escrow = keys.keys_dir / "escrow.key.enc"
    signing.unlink()
    signing.write_bytes(escrow.read_bytes())

    with pytest.raises(CryptoError, match="signing.key.enc"):
        keys.signing_private_key()


def test_public_parts_need_no_master_key(keys):
    reader = KeyStore(keys.keys_dir, None)

    assert reader.ca_fingerprint() == keys.ca_fingerprint()
    assert reader.escrow_public_key()
    with pytest.raises(ValueError, match="master key"):
        reader.escrow_private_key()


def test_a_missing_file_says_run_drd_init(tmp_path):
    with pytest.raises(UserError, match="drd init"):
        KeyStore(tmp_path, MASTER_KEY).ca_certificate_pem()


def test_the_server_certificate_names_this_centre(keys):
    names = keys.server_certificate().extensions.get_extension_for_class(
        keystore_module.x509.SubjectAlternativeName
    ).value
    dns = names.get_values_for_type(keystore_module.x509.DNSName)
    addresses = [str(a) for a in names.get_values_for_type(keystore_module.x509.IPAddress)]

    assert {"localhost", "drd.example"} <= set(dns)
    assert {"127.0.0.1", "::1", "10.0.0.5"} <= set(addresses)


def test_server_tls_files_serve_tls_that_clients_of_the_ca_accept(keys, tmp_path):
    files = keys.server_tls_files(tmp_path)
    try:
        assert _mode(files.directory) == 0o700
        assert _mode(files.keyfile) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in files.keyfile.read_bytes()
        server = server_context(files.certfile, files.keyfile, files.password.reveal())
    finally:
        files.remove()
    assert not files.directory.exists()

    client = client_context(keys.ca_certificate_pem())
    assert handshake(server, client, "localhost") == b"ok"
    assert "redacted" in repr(files)


def test_reprs_show_no_key_material(keys, tmp_path):
    files = keys.server_tls_files(tmp_path)
    files.remove()
    text = " ".join([repr(keys), repr(MASTER_KEY), str(MASTER_KEY), f"{MASTER_KEY}", repr(files)])
    raw = MASTER_KEY._key  # the only place a test may look inside

    assert "redacted" in text
    assert raw.hex() not in text and repr(raw) not in text
    assert files.password.reveal() not in text

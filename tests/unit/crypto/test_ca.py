"""The centre's CA: server certificates verify against it, in cryptography and in ssl."""

import datetime as dt
import hashlib
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from drd.crypto import ca
from drd.errors import UserError

from ._tls import client_context, handshake, server_context

CA_KEY, CA_CERTIFICATE = ca.create_ca("drd test CA")
SERVER_KEY, SERVER_CERTIFICATE = ca.issue_server_certificate(
    CA_KEY, CA_CERTIFICATE, ["localhost", "drd.example"], ["127.0.0.1", "::1"]
)


def _verifier(subject):
    return PolicyBuilder().store(Store([CA_CERTIFICATE])).build_server_verifier(subject)


@pytest.mark.parametrize(
    "subject",
    [x509.DNSName("localhost"), x509.DNSName("drd.example"),
     x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
     x509.IPAddress(ipaddress.ip_address("::1"))],
    ids=str,
)
def test_the_server_certificate_verifies_for_each_of_its_names(subject):
    chain = _verifier(subject).verify(SERVER_CERTIFICATE, [])

    assert chain[-1] == CA_CERTIFICATE


def test_a_name_not_in_the_certificate_is_refused():
    with pytest.raises(VerificationError):
        _verifier(x509.DNSName("elsewhere.example")).verify(SERVER_CERTIFICATE, [])


def test_a_certificate_from_another_ca_is_refused():
    other_key, other_ca = ca.create_ca("another CA")
    _, foreign = ca.issue_server_certificate(other_key, other_ca, ["localhost"], [])

    with pytest.raises(VerificationError):
        _verifier(x509.DNSName("localhost")).verify(foreign, [])


def test_the_ca_may_only_sign_end_entity_certificates():
    constraints = CA_CERTIFICATE.extensions.get_extension_for_class(x509.BasicConstraints)

    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0


def test_the_server_certificate_is_for_tls_servers_and_ends_within_the_ca():
    usage = SERVER_CERTIFICATE.extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    assert list(usage.value) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert SERVER_CERTIFICATE.not_valid_after_utc <= CA_CERTIFICATE.not_valid_after_utc
    assert SERVER_CERTIFICATE.not_valid_before_utc < dt.datetime.now(dt.UTC)


def _write_server_files(tmp_path, certificate=SERVER_CERTIFICATE, key=SERVER_KEY):
    certfile, keyfile = tmp_path / "server.crt", tmp_path / "server.key"
    certfile.write_bytes(ca.certificate_pem(certificate))
    keyfile.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return certfile, keyfile


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_python_ssl_completes_a_handshake(tmp_path, server_hostname):
    server = server_context(*_write_server_files(tmp_path))
    client = client_context(ca.certificate_pem(CA_CERTIFICATE))

    assert handshake(server, client, server_hostname) == b"ok"


def test_python_ssl_refuses_a_certificate_from_another_ca(tmp_path):
    server = server_context(*_write_server_files(tmp_path))
    _, other_ca = ca.create_ca("another CA")

    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, client_context(ca.certificate_pem(other_ca)), "localhost")


def test_the_fingerprint_is_the_sha256_of_the_der_certificate():
    expected = hashlib.sha256(CA_CERTIFICATE.public_bytes(Encoding.DER)).hexdigest()
    assert ca.fingerprint_sha256(CA_CERTIFICATE) == expected
    assert len(expected) == 64


def test_pem_round_trip():
    assert ca.load_certificate_pem(ca.certificate_pem(CA_CERTIFICATE)) == CA_CERTIFICATE


def test_not_a_certificate_is_a_user_error():
    with pytest.raises(UserError, match="not a PEM certificate"):
        ca.load_certificate_pem(b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("hostnames, addresses", [([], []), (["localhost"], ["not-an-ip"])])
def test_bad_names_are_refused(hostnames, addresses):
    with pytest.raises(UserError):
        ca.issue_server_certificate(CA_KEY, CA_CERTIFICATE, hostnames, addresses)

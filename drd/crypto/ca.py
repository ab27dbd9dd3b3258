"""The centre's own certificate authority, and the server certificates it issues.

ECDSA P-256 with SHA-256 throughout: every TLS stack drd meets (Python's ``ssl`` under
uvicorn, httpx, curl, browsers) accepts it. The certificates carry what strict X.509
verification (Python 3.13's ``VERIFY_X509_STRICT``, ``cryptography``'s verifier) asks
for: critical basic constraints and key usage, subject and authority key identifiers,
and subject alternative names on the server certificate.

Agents pin the CA by its SHA-256 fingerprint, which ``drd init`` prints.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drd.errors import UserError

CA_DAYS = 3650
SERVER_DAYS = 825
# certificates start a little in the past, so that a client whose clock is slightly
# behind the centre's does not reject a certificate issued a moment ago
_BACKDATE = dt.timedelta(minutes=5)


def create_ca(
    common_name: str, days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a new P-256 CA key and its self-signed certificate, valid for ``days``.

    The CA may sign end-entity certificates only (path length 0).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


def dns_name(name: str) -> str:
    """``name`` as it goes into a certificate: IDNA-encoded (``ü`` -> ``xn--...``).

    Raises :class:`UserError` for a name that is not a valid DNS host name.
    """
    try:
        encoded = name.strip().rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        encoded = ""
    labels = encoded.split(".")
    if not encoded or len(encoded) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise UserError(f"{name!r} is not a valid host name for the server certificate")
    return encoded.lower()


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: list[str],
    ip_addresses: list[str],
    days: int = SERVER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a new P-256 key and a TLS server certificate for it, signed by the CA.

    The certificate names every hostname (DNS) and IP address as a subject alternative
    name; its common name is the first hostname. Raises :class:`UserError` if there is no
    name at all or an address does not parse.
    """
    if not hostnames and not ip_addresses:
        raise UserError("a server certificate needs at least one hostname or IP address")
    try:
        addresses = [ipaddress.ip_address(address) for address in ip_addresses]
    except ValueError as error:
        raise UserError(f"cannot issue the server certificate: {error}") from None
    hostnames = [dns_name(name) for name in hostnames]
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys(hostnames)]
    names += [x509.IPAddress(address) for address in dict.fromkeys(addresses)]
    common_name = hostnames[0] if hostnames else str(addresses[0])
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_key_identifier = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_key_identifier.value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of the DER certificate, lowercase hex without separators."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """Return ``certificate`` in PEM form."""
    return certificate.public_bytes(Encoding.PEM)


def load_certificate_pem(pem: bytes) -> x509.Certificate:
    """Load one PEM certificate; raises :class:`UserError` if ``pem`` is not one."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise UserError(f"not a PEM certificate: {error}") from None


def load_private_key_pem(pem: bytes, password: bytes | None = None):
    """Load a PEM private key (``password`` if it is encrypted); raises :class:`UserError`."""
    try:
        return load_pem_private_key(pem, password)
    except (ValueError, TypeError) as error:
        raise UserError(f"not a usable PEM private key: {error}") from None


def _serial_number() -> int:
    # positive, at most 20 octets, with 159 bits of randomness (RFC 5280 4.1.2.2)
    return secrets.randbits(159) | 1

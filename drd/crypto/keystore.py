"""The keys directory of a centre: escrow and signing keys, the CA and the server certificate.

Layout (the directory is mode 0700; ``master.*`` belong to :mod:`drd.crypto.masterkey`)::

    keys/
      master.key | master.kdf.json   the master key, or its scrypt salt and verifier
      escrow.key.enc     0600  X25519 private key, PKCS#8 DER encrypted under the master key
      escrow.pub.pem     0644  X25519 public key: agents seal their passwords to it
      signing.key.enc    0600  Ed25519 private key (signs drill reports)
      signing.pub.pem    0644  Ed25519 public key
      ca.key.enc         0600  CA private key (ECDSA P-256)
      ca.crt.pem         0644  CA certificate: agents pin its SHA-256 fingerprint
      server.key.enc     0600  TLS server private key (ECDSA P-256)
      server.crt.pem     0644  TLS server certificate, signed by the CA
      retired/signing-<sha256>.pub.pem  0644  signing public keys retired by
                         ``drd keys rotate-signing``: reports they signed stay verifiable

Each ``*.key.enc`` is encrypted with the context ``keystore:<file name>``, so one key file
renamed to another's name does not decrypt. Every file is written atomically and never
over an existing one.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from drd.crypto import ca
from drd.crypto.errors import CryptoError
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import load_escrow_public_key, load_signing_public_key, public_key_pem
from drd.crypto.signing import public_key_fingerprint
from drd.errors import UserError
from drd.fsutil import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_private_directory,
    write_new_file,
)
from drd.secrets import Secret

ESCROW_KEY = "escrow.key.enc"
ESCROW_PUBLIC = "escrow.pub.pem"
SIGNING_KEY = "signing.key.enc"
SIGNING_PUBLIC = "signing.pub.pem"
CA_KEY = "ca.key.enc"
CA_CERTIFICATE = "ca.crt.pem"
SERVER_KEY = "server.key.enc"
SERVER_CERTIFICATE = "server.crt.pem"
FILES = (ESCROW_KEY, ESCROW_PUBLIC, SIGNING_KEY, SIGNING_PUBLIC, CA_KEY, CA_CERTIFICATE,
         SERVER_KEY, SERVER_CERTIFICATE)

RETIRED_DIR = "retired"
RETIRED_SIGNING_PREFIX = "signing-"
RETIRED_SIGNING_SUFFIX = ".pub.pem"

DEFAULT_HOSTNAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class SigningKeyringEntry:
    """One public key that drill reports and catalog copies may be signed with.

    ``fingerprint`` is the SHA-256 (hex) of the raw key, as signature files name it;
    ``retired`` is true for a key replaced by ``drd keys rotate-signing``.
    """

    fingerprint: str
    public_key: Ed25519PublicKey
    retired: bool


@dataclass(frozen=True)
class ServerTLSFiles:
    """What uvicorn needs: ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_keyfile_password``.

    ``keyfile`` is the server key as PEM encrypted under ``password``, a random one-time
    password that lives only in memory, so the file is useless to anyone who copies it.
    ``certfile`` holds the server certificate followed by the CA certificate. Both sit in
    ``directory``, private to this process; :meth:`remove` deletes it once the server has
    loaded them.
    """

    directory: Path
    certfile: Path
    keyfile: Path
    password: Secret

    def remove(self) -> None:
        """Delete the directory and both files (no error if already gone)."""
        shutil.rmtree(self.directory, ignore_errors=True)


class KeyStore:
    """The keys of a centre in ``keys_dir``; private ones need ``master_key``.

    ``master_key`` may be ``None`` for a reader of public keys and certificates only; the
    private-key accessors then raise ``ValueError``.
    """

    def __init__(self, keys_dir: Path, master_key: MasterKey | None) -> None:
        self.keys_dir = Path(keys_dir)
        self._master_key = master_key

    def __repr__(self) -> str:
        return f"KeyStore({str(self.keys_dir)!r})"

    def exists(self) -> bool:
        """True if every key file is present (a complete key store)."""
        return all((self.keys_dir / name).exists() for name in FILES)

    def create(
        self, hostnames: Iterable[str] = (), ip_addresses: Iterable[str] = ()
    ) -> None:
        """Make all keys, the CA and a server certificate, and write them into ``keys_dir``.

        The server certificate names ``localhost``, this machine's hostname, 127.0.0.1,
        ::1 and the given extra ``hostnames`` and ``ip_addresses``. Raises
        :class:`UserError` if any key file exists already (nothing is replaced) or an
        address does not parse; on any failure the files written so far are removed.
        """
        present = [name for name in FILES if (self.keys_dir / name).exists()]
        if present:
            raise UserError(
                f"keys already exist in {self.keys_dir} ({', '.join(present)}); "
                "refusing to overwrite them"
            )
        master_key = self._require_master_key()
        escrow = X25519PrivateKey.generate()
        signing = Ed25519PrivateKey.generate()
        ca_key, ca_certificate = ca.create_ca(f"drd centre CA {socket.gethostname()}")
        server_key, server_certificate = ca.issue_server_certificate(
            ca_key,
            ca_certificate,
            *server_names(hostnames, ip_addresses),
        )
        contents = {
            ESCROW_KEY: _encrypt_private_key(master_key, ESCROW_KEY, escrow),
            ESCROW_PUBLIC: public_key_pem(escrow.public_key()),
            SIGNING_KEY: _encrypt_private_key(master_key, SIGNING_KEY, signing),
            SIGNING_PUBLIC: public_key_pem(signing.public_key()),
            CA_KEY: _encrypt_private_key(master_key, CA_KEY, ca_key),
            CA_CERTIFICATE: ca.certificate_pem(ca_certificate),
            SERVER_KEY: _encrypt_private_key(master_key, SERVER_KEY, server_key),
            SERVER_CERTIFICATE: ca.certificate_pem(server_certificate),
        }
        ensure_private_directory(self.keys_dir)
        written: list[Path] = []
        try:
            for name, data in contents.items():
                mode = PRIVATE_FILE_MODE if name.endswith(".enc") else PUBLIC_FILE_MODE
                written.append(write_new_file(self.keys_dir / name, data, mode))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def escrow_public_key(self) -> X25519PublicKey:
        """The public key agents seal their repository passwords to."""
        return load_escrow_public_key(self._read(ESCROW_PUBLIC))

    def escrow_private_key(self) -> X25519PrivateKey:
        """The private key that unseals escrowed passwords.

        Every caller that unseals with it must write an audit entry
        (``drd.catalog.audit.record``) naming the system and the reason: the design
        promises that every unsealing is in the audit log. Sealing again what the catalog
        holds in plaintext already (:func:`drd.crypto.seal.reseal`, a manifest) unseals
        nothing and is not audited.
        """
        return self._decrypt_private_key(ESCROW_KEY, X25519PrivateKey)

    def signing_private_key(self) -> Ed25519PrivateKey:
        """The key that signs drill reports."""
        return self._decrypt_private_key(SIGNING_KEY, Ed25519PrivateKey)

    def signing_public_key(self) -> Ed25519PublicKey:
        """The key that verifies drill reports."""
        return load_signing_public_key(self._read(SIGNING_PUBLIC))

    def retired_signing_public_keys(self) -> list[Ed25519PublicKey]:
        """The signing keys retired by ``drd keys rotate-signing`` (oldest file name first:
        the order does not matter, each is named by its fingerprint)."""
        directory = self.keys_dir / RETIRED_DIR
        if not directory.is_dir():
            return []
        return [load_signing_public_key(path.read_bytes())
                for path in sorted(directory.glob(
                    f"{RETIRED_SIGNING_PREFIX}*{RETIRED_SIGNING_SUFFIX}"))]

    def signing_keyring(self) -> list[SigningKeyringEntry]:
        """The current signing public key first, then the retired ones.

        A report or catalog copy names the key that signed it by fingerprint; checking it
        against this keyring keeps what was signed before a rotation verifiable.
        """
        current = self.signing_public_key()
        entries = [SigningKeyringEntry(public_key_fingerprint(current), current, False)]
        for key in self.retired_signing_public_keys():
            fingerprint = public_key_fingerprint(key)
            if all(entry.fingerprint != fingerprint for entry in entries):
                entries.append(SigningKeyringEntry(fingerprint, key, True))
        return entries

    def ca_private_key(self) -> ec.EllipticCurvePrivateKey:
        """The CA key, to issue further server certificates."""
        return self._decrypt_private_key(CA_KEY, ec.EllipticCurvePrivateKey)

    def ca_certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return ca.load_certificate_pem(self.ca_certificate_pem())

    def ca_certificate_pem(self) -> bytes:
        """The CA certificate in PEM form, as handed to agents and clients."""
        return self._read(CA_CERTIFICATE)

    def ca_fingerprint(self) -> str:
        """The CA certificate's SHA-256 fingerprint (hex), which agents pin."""
        return ca.fingerprint_sha256(self.ca_certificate())

    def server_certificate(self) -> x509.Certificate:
        """The TLS server certificate."""
        return ca.load_certificate_pem(self._read(SERVER_CERTIFICATE))

    def server_tls_files(self, tmp_dir: Path) -> ServerTLSFiles:
        """Write the server's certificate chain and encrypted key for uvicorn under ``tmp_dir``.

        A fresh 0700 directory is made inside ``tmp_dir`` (use a private runtime
        directory such as systemd's ``RuntimeDirectory``); the key file there is 0600 and
        encrypted under a random password returned in memory. Pass
        ``ssl_keyfile_password=files.password.reveal()`` to uvicorn and call
        ``files.remove()`` once it has started.
        """
        key = self._decrypt_private_key(SERVER_KEY, ec.EllipticCurvePrivateKey)
        password = Secret(secrets.token_urlsafe(32))
        directory = Path(tempfile.mkdtemp(prefix="drd-tls-", dir=tmp_dir))
        try:
            certfile = write_new_file(
                directory / "server-chain.pem",
                self._read(SERVER_CERTIFICATE) + self.ca_certificate_pem(),
                PRIVATE_FILE_MODE,
            )
            encrypted = key.private_bytes(
                Encoding.PEM,
                PrivateFormat.PKCS8,
                BestAvailableEncryption(password.reveal().encode()),
            )
            keyfile = write_new_file(directory / "server-key.pem", encrypted, PRIVATE_FILE_MODE)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return ServerTLSFiles(directory, certfile, keyfile, password)

    def _require_master_key(self) -> MasterKey:
        if self._master_key is None:
            raise ValueError("this KeyStore was opened without the master key")
        return self._master_key

    def _read(self, name: str) -> bytes:
        path = self.keys_dir / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path} is missing: run `drd init` (or pass --home)") from None

    def _decrypt_private_key(self, name: str, expected: type):
        master_key = self._require_master_key()
        try:
            der = master_key.decrypt(self._read(name), _context(name))
        except CryptoError:
            raise CryptoError(
                f"cannot decrypt {self.keys_dir / name}: wrong master key or damaged file"
            ) from None
        key = load_der_private_key(der, password=None)
        if not isinstance(key, expected):
            raise CryptoError(f"{self.keys_dir / name} holds an unexpected kind of key")
        return key


def _context(name: str) -> str:
    return f"keystore:{name}"


def key_file_context(name: str) -> str:
    """The master-key context a ``*.key.enc`` file of this layout is encrypted with."""
    return _context(name)


def encrypt_private_key(master_key: MasterKey, name: str, key) -> bytes:
    """``key`` as the content of the key file ``name`` (PKCS#8 DER under ``master_key``)."""
    return _encrypt_private_key(master_key, name, key)


def _encrypt_private_key(master_key: MasterKey, name: str, key) -> bytes:
    der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return master_key.encrypt(der, _context(name))


def server_names(hostnames: Sequence[str] = (), ip_addresses: Sequence[str] = ()
                 ) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of the centre's server certificate: the defaults
    (localhost, loopback), this machine's name, then those given, each once."""
    return (_unique([*DEFAULT_HOSTNAMES, *_this_hostname(), *hostnames]),
            _unique([*DEFAULT_IP_ADDRESSES, *ip_addresses]))


def _this_hostname() -> list[str]:
    hostname = socket.gethostname()
    # only a name that is valid in a certificate's DNS SAN: ASCII letters, digits, - and .
    if hostname and hostname.isascii() and all(c.isalnum() or c in "-." for c in hostname):
        return [hostname.lower()]
    return []


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))

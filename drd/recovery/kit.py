"""The recovery kit: the centre's private keys encrypted under a passphrase.

A kit is a small JSON document (written 0600), meant to be printed or kept on offline
media. Its clear part names the keys it holds by fingerprint, so a kit can be checked
against a centre without the passphrase; its ``ciphertext`` holds the private keys::

    {
      "format": "drd-recovery-kit",
      "version": 1,
      "created_at": "2026-11-28T00:00:00+00:00",
      "centre": {"hostname": "dr1"},
      "public": {
        "escrow_key_sha256": "<sha256 hex of the raw X25519 public key>",
        "signing_key_sha256": "<sha256 hex of the raw Ed25519 public key>",
        "ca_certificate_sha256": "<the CA fingerprint agents pin>",
        "escrow_public_key_pem": "...", "signing_public_key_pem": "...",
        "ca_certificate_pem": "..."
      },
      "kdf": {"name": "scrypt", "salt": "<base64>", "n": 131072, "r": 8, "p": 1},
      "cipher": "aes-256-gcm",
      "nonce": "<base64, 12 bytes>",
      "ciphertext": "<base64>"
    }

The key is scrypt(NFC(passphrase), salt); the associated data is the canonical JSON of
every field but ``ciphertext``, so no clear field (a fingerprint, the KDF cost) can be
changed without the kit failing to open. The plaintext is JSON with the escrow, signing
and CA private keys (PKCS#8 DER, base64). Opening a kit checks that each private key's
public half matches the fingerprints in clear.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import socket
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
)

from drd.crypto import ca
from drd.crypto.pem import load_signing_public_key, public_key_pem
from drd.errors import UserError
from drd.secrets import Secret

FORMAT = "drd-recovery-kit"
VERSION = 1
PASSPHRASE_VARIABLE = "DRD_RECOVERY_PASSPHRASE"
MINIMUM_PASSPHRASE_LENGTH = 12

# scrypt cost for a file that may sit on a USB stick for years: 128 MiB, about 0.4 s
# here. The bounds refuse a tampered kit that would take hours or all the memory.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAX_N = 2**20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16
_NONCE_SIZE = 12


@dataclass(frozen=True, repr=False)
class RecoveryKeys:
    """What a kit holds: the private keys a rebuilt centre needs, and the CA certificate.

    The CA key and certificate let the rebuilt centre issue a server certificate that
    enrolled agents, which pin the CA's fingerprint, still trust.
    """

    escrow: X25519PrivateKey
    signing: Ed25519PrivateKey
    ca_key: ec.EllipticCurvePrivateKey
    ca_certificate: x509.Certificate = field()
    # signing public keys retired by `drd keys rotate-signing`: copies they signed are
    # still accepted (public; in the kit's clear part, which the passphrase authenticates)
    retired_signing: tuple[Ed25519PublicKey, ...] = ()

    def __repr__(self) -> str:
        return f"RecoveryKeys(escrow={escrow_fingerprint(self.escrow.public_key())[:16]}..)"

    def public_summary(self) -> dict[str, Any]:
        """The fingerprints (and public keys) a kit carries in clear."""
        return {
            "escrow_key_sha256": escrow_fingerprint(self.escrow.public_key()),
            "signing_key_sha256": signing_fingerprint(self.signing.public_key()),
            "ca_certificate_sha256": ca.fingerprint_sha256(self.ca_certificate),
            "escrow_public_key_pem": public_key_pem(self.escrow.public_key()).decode(),
            "signing_public_key_pem": public_key_pem(self.signing.public_key()).decode(),
            "ca_certificate_pem": ca.certificate_pem(self.ca_certificate).decode(),
        } | ({"retired_signing_public_keys_pem": [public_key_pem(key).decode()
                                                  for key in self.retired_signing]}
             if self.retired_signing else {})


def escrow_fingerprint(public_key: X25519PublicKey) -> str:
    """SHA-256 (hex) of the raw X25519 public key."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def signing_fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw Ed25519 public key (as :mod:`drd.crypto.signing` names it)."""
    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def check_new_passphrase(passphrase: Secret) -> None:
    """Raise :class:`UserError` for a passphrase too weak to protect a kit."""
    if len(_normalise(passphrase)) < MINIMUM_PASSPHRASE_LENGTH:
        raise UserError(f"the recovery passphrase must be at least "
                        f"{MINIMUM_PASSPHRASE_LENGTH} characters long (a few random words)")


def build_kit(keys: RecoveryKeys, passphrase: Secret, *, created_at: dt.datetime | None = None,
              hostname: str | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
              p: int = SCRYPT_P) -> bytes:
    """The kit for ``keys`` under ``passphrase``, as UTF-8 JSON bytes.

    Raises :class:`UserError` for a passphrase shorter than
    :data:`MINIMUM_PASSPHRASE_LENGTH`. ``n``, ``r``, ``p`` are scrypt's cost (tests
    lower them).
    """
    check_new_passphrase(passphrase)
    salt = secrets.token_bytes(16)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": (created_at or dt.datetime.now(dt.UTC)).isoformat(),
        "centre": {"hostname": hostname if hostname is not None else socket.gethostname()},
        "public": keys.public_summary(),
        "kdf": {"name": "scrypt", "salt": _b64(salt), "n": n, "r": r, "p": p},
        "cipher": "aes-256-gcm",
        "nonce": _b64(secrets.token_bytes(_NONCE_SIZE)),
    }
    plaintext = json.dumps({
        "escrow_private_key": _b64(_der(keys.escrow)),
        "signing_private_key": _b64(_der(keys.signing)),
        "ca_private_key": _b64(_der(keys.ca_key)),
    }).encode()
    key = _derive(passphrase, salt, n, r, p)
    document["ciphertext"] = _b64(AESGCM(key).encrypt(
        base64.b64decode(document["nonce"]), plaintext, _associated_data(document)))
    return (json.dumps(document, indent=2) + "\n").encode()


def read_kit(data: bytes) -> dict[str, Any]:
    """The kit's clear document, checked for shape (no passphrase needed).

    Raises :class:`UserError` if ``data`` is not a drd recovery kit of a known version.
    """
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UserError("not a drd recovery kit (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UserError("not a drd recovery kit (no 'format: drd-recovery-kit')")
    if document.get("version") != VERSION:
        raise UserError(f"recovery kit version {document.get('version')!r} is unknown to this "
                        f"drd (it reads version {VERSION}): use a newer drd")
    try:
        kdf = document["kdf"]
        if kdf["name"] != "scrypt" or document["cipher"] != "aes-256-gcm":
            raise ValueError("unknown kdf or cipher")
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(document["nonce"], validate=True)
        base64.b64decode(document["ciphertext"], validate=True)
        public = document["public"]
        for name in ("escrow_key_sha256", "signing_key_sha256", "ca_certificate_sha256"):
            if not isinstance(public[name], str):
                raise ValueError(f"public.{name} is not text")
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"the recovery kit is damaged: {error}") from None
    if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= _SCRYPT_MAX_R
            and 1 <= p <= _SCRYPT_MAX_P and len(salt) >= 16 and len(nonce) == _NONCE_SIZE):
        raise UserError("the recovery kit is damaged: its scrypt parameters are out of range")
    return document


def open_kit(data: bytes, passphrase: Secret) -> RecoveryKeys:
    """The keys in the kit ``data``, decrypted with ``passphrase``.

    Raises :class:`UserError` for something that is not a kit, a wrong passphrase or a
    kit whose clear or encrypted part was changed (AES-GCM cannot tell those apart; the
    message says both), or whose keys do not match its fingerprints.
    """
    document = read_kit(data)
    kdf = document["kdf"]
    key = _derive(passphrase, base64.b64decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]),
                  int(kdf["p"]))
    try:
        plaintext = AESGCM(key).decrypt(base64.b64decode(document["nonce"]),
                                        base64.b64decode(document["ciphertext"]),
                                        _associated_data(document))
    except InvalidTag:
        raise UserError("wrong recovery passphrase, or the kit was changed: check "
                        f"{PASSPHRASE_VARIABLE} (or what you typed)") from None
    try:
        inner = json.loads(plaintext)
        keys = RecoveryKeys(
            escrow=_load(inner["escrow_private_key"], X25519PrivateKey),
            signing=_load(inner["signing_private_key"], Ed25519PrivateKey),
            ca_key=_load(inner["ca_private_key"], ec.EllipticCurvePrivateKey),
            ca_certificate=ca.load_certificate_pem(
                document["public"]["ca_certificate_pem"].encode()),
            retired_signing=tuple(
                load_signing_public_key(text.encode())
                for text in document["public"].get("retired_signing_public_keys_pem", [])),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"the recovery kit is damaged: {error}") from None
    summary = keys.public_summary()
    for name in ("escrow_key_sha256", "signing_key_sha256", "ca_certificate_sha256"):
        if summary[name] != document["public"][name]:
            raise UserError(f"the recovery kit is damaged: its keys do not match "
                            f"public.{name}")
    if (keys.ca_certificate.public_key().public_numbers()
            != keys.ca_key.public_key().public_numbers()):
        raise UserError("the recovery kit is damaged: the CA key does not match the CA "
                        "certificate")
    return keys


def _normalise(passphrase: Secret) -> str:
    # NFC, so that the same passphrase typed on another keyboard or OS opens the kit
    return unicodedata.normalize("NFC", passphrase.reveal())


def _derive(passphrase: Secret, salt: bytes, n: int, r: int, p: int) -> bytes:
    text = _normalise(passphrase)
    if not text:
        raise UserError("the recovery passphrase is empty")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(text.encode("utf-8"))


def _associated_data(document: dict[str, Any]) -> bytes:
    clear = {name: value for name, value in document.items() if name != "ciphertext"}
    return b"drd-recovery-kit-v1\x00" + json.dumps(clear, sort_keys=True,
                                                   separators=(",", ":")).encode()


def _der(key) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def _load(text: str, expected: type):
    key = load_der_private_key(base64.b64decode(text, validate=True), password=None)
    if not isinstance(key, expected):
        raise ValueError(f"expected {expected.__name__}, found {type(key).__name__}")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

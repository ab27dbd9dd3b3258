"""The master key: 32 bytes that encrypt every private key and store secret at rest.

It comes from one of two places, chosen once by ``drd init``:

1. a passphrase -- a systemd credential ``$CREDENTIALS_DIRECTORY/drd-master-passphrase``
   or else the environment variable ``DRD_MASTER_PASSPHRASE`` -- stretched with scrypt.
   The salt, the scrypt parameters and a verifier (a known value encrypted under the key,
   so that a wrong passphrase is told apart from damaged data) sit in the non-secret file
   ``<keys>/master.kdf.json``;
2. otherwise a random key in ``<keys>/master.key`` (mode 0600).

:meth:`MasterKey.encrypt` output (version 1)::

    offset  size  field
    0       1     version, 0x01
    1       12    nonce (random)
    13      n+16  AES-256-GCM ciphertext and tag

The associated data is ``b"drd-masterkey-v1\\x00" + version + context``, so a blob
encrypted for one context (``"store:dc-a"``) fails to decrypt under another
(``"store:dc-b"``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import unicodedata
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from drd.crypto.errors import CryptoError
from drd.errors import UserError
from drd.fsutil import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    ensure_private_directory,
    write_new_file,
)
from drd.secrets import REDACTED, Secret

KEY_FILE = "master.key"
KDF_FILE = "master.kdf.json"
CREDENTIAL_NAME = "drd-master-passphrase"
PASSPHRASE_VARIABLE = "DRD_MASTER_PASSPHRASE"

KEY_SIZE = 32
_VERSION = 1
_NONCE_SIZE = 12
_TAG_SIZE = 16
_ASSOCIATED_DATA_PREFIX = b"drd-masterkey-v1\x00"
_VERIFIER_CONTEXT = "drd master key verifier"
_VERIFIER_PLAINTEXT = b"drd master key ok"

# scrypt cost: about 32 MiB and a tenth of a second; the bounds refuse a tampered kdf file
# that would make loading take hours or all the memory.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAX_N = 2**20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16


class MasterKey:
    """A 32-byte AES-256-GCM key. Its repr never shows the key; it cannot be pickled."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        """Wrap ``key``; raises ``ValueError`` unless it is exactly 32 bytes."""
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"a master key is {KEY_SIZE} bytes")
        self._key = key

    @classmethod
    def generate(cls) -> MasterKey:
        """Return a new random master key."""
        return cls(secrets.token_bytes(KEY_SIZE))

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (non-empty); return the versioned blob."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        header = bytes([_VERSION])
        sealed = AESGCM(self._key).encrypt(nonce, plaintext, _associated_data(header, context))
        return header + nonce + sealed

    def decrypt(self, blob: bytes, context: str) -> bytes:
        """Return the plaintext of ``blob`` encrypted under this key and ``context``.

        Raises :class:`CryptoError` if the blob is malformed or tampered with, or was made
        with another key or another context.
        """
        if len(blob) < 1 + _NONCE_SIZE + _TAG_SIZE or blob[0] != _VERSION:
            raise CryptoError(f"cannot decrypt the data for {context!r}: unknown format")
        header, nonce, sealed = blob[:1], blob[1 : 1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE :]
        try:
            return AESGCM(self._key).decrypt(nonce, sealed, _associated_data(header, context))
        except InvalidTag:
            raise CryptoError(
                f"cannot decrypt the data for {context!r}: wrong master key or damaged data"
            ) from None

    def __repr__(self) -> str:
        return f"MasterKey({REDACTED})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a MasterKey cannot be pickled")


def _associated_data(header: bytes, context: str) -> bytes:
    if not context:
        raise ValueError("an encryption context is required")
    return _ASSOCIATED_DATA_PREFIX + header + context.encode()


def passphrase_from_environment(environ: dict[str, str] | None = None) -> Secret | None:
    """The master passphrase from the systemd credential, else ``DRD_MASTER_PASSPHRASE``.

    Returns ``None`` when neither is set. One trailing newline of the credential file is
    dropped (``echo`` adds it). Raises :class:`UserError` if the credential file cannot be
    read.
    """
    environ = os.environ if environ is None else environ
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        path = Path(credentials) / CREDENTIAL_NAME
        if path.exists():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise UserError(f"cannot read the credential {path}: {error}") from None
            return Secret(text.removesuffix("\n").removesuffix("\r"))
    value = environ.get(PASSPHRASE_VARIABLE)
    return Secret(value) if value else None


def create_master_key(keys_dir: Path, passphrase: Secret | None) -> MasterKey:
    """Make the master key of a new home and write its file(s) into ``keys_dir``.

    With a passphrase: derive the key with scrypt and write ``master.kdf.json`` (0644).
    Without: generate a random key and write ``master.key`` (0600). ``keys_dir`` is
    created with mode 0700. Raises :class:`UserError` if a master key already exists
    there or the passphrase is empty.
    """
    keys_dir = Path(keys_dir)
    ensure_private_directory(keys_dir)
    for name in (KEY_FILE, KDF_FILE):
        if (keys_dir / name).exists():
            raise UserError(
                f"a master key already exists in {keys_dir} ({name}); refusing to replace it"
            )
    if passphrase is None:
        key = MasterKey.generate()
        write_new_file(keys_dir / KEY_FILE, key._key, PRIVATE_FILE_MODE)
        return key
    salt = secrets.token_bytes(16)
    parameters = {"n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    key = MasterKey(_derive(passphrase, salt, **parameters))
    document = {
        "version": 1,
        "kdf": "scrypt",
        "salt": base64.b64encode(salt).decode(),
        **parameters,
        "verifier": base64.b64encode(key.encrypt(_VERIFIER_PLAINTEXT, _VERIFIER_CONTEXT)).decode(),
    }
    data = (json.dumps(document, indent=2) + "\n").encode()
    write_new_file(keys_dir / KDF_FILE, data, PUBLIC_FILE_MODE)
    return key


def load_master_key(keys_dir: Path, passphrase: Secret | None = None) -> MasterKey:
    """Load the master key made by :func:`create_master_key` in ``keys_dir``.

    A passphrase-protected key takes ``passphrase``, else the one from
    :func:`passphrase_from_environment`. Raises :class:`UserError` when there is no master
    key (run ``drd init``), the passphrase is missing or wrong, ``master.key`` is readable
    by others, or a file is damaged.
    """
    keys_dir = Path(keys_dir)
    kdf_path, key_path = keys_dir / KDF_FILE, keys_dir / KEY_FILE
    if kdf_path.exists() and key_path.exists():
        raise UserError(
            f"both {key_path} and {kdf_path} exist; keep the one made by `drd init` "
            "and move the other away"
        )
    if kdf_path.exists():
        return _load_from_passphrase(kdf_path, passphrase or passphrase_from_environment())
    if key_path.exists():
        return _load_from_file(key_path)
    raise UserError(f"no master key in {keys_dir}: run `drd init` first (or pass --home)")


def _load_from_file(path: Path) -> MasterKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UserError(f"{path} is readable by others (mode {mode:o}): chmod 600 {path}")
    data = path.read_bytes()
    if len(data) != KEY_SIZE:
        raise UserError(f"{path} is damaged: a master key file holds {KEY_SIZE} bytes")
    return MasterKey(data)


def _load_from_passphrase(path: Path, passphrase: Secret | None) -> MasterKey:
    if passphrase is None:
        raise UserError(
            f"the master key is protected by a passphrase ({path}): set "
            f"{PASSPHRASE_VARIABLE} or the systemd credential {CREDENTIAL_NAME}"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("version") != 1 or document.get("kdf") != "scrypt":
            raise ValueError("unknown version or kdf")
        salt = base64.b64decode(document["salt"], validate=True)
        n, r, p = int(document["n"]), int(document["r"]), int(document["p"])
        verifier = base64.b64decode(document["verifier"], validate=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is damaged: {error}") from None
    if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= _SCRYPT_MAX_R
            and 1 <= p <= _SCRYPT_MAX_P and len(salt) >= 16):
        raise UserError(f"{path} is damaged: scrypt parameters out of range")
    key = MasterKey(_derive(passphrase, salt, n=n, r=r, p=p))
    try:
        key.decrypt(verifier, _VERIFIER_CONTEXT)
    except CryptoError:
        raise UserError(
            f"wrong master passphrase (checked against {path}); set the right one in "
            f"{PASSPHRASE_VARIABLE} or the systemd credential {CREDENTIAL_NAME}"
        ) from None
    return key


def _derive(passphrase: Secret, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    text = passphrase.reveal()
    if not text:
        raise UserError("the master passphrase is empty")
    # NFC, so that the same passphrase typed on another keyboard or OS derives the same key
    data = unicodedata.normalize("NFC", text).encode("utf-8")
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(data)

"""Where the agent keeps its state (``--home``, ``$DRD_AGENT_HOME``, or a default).

Layout (the home is 0700, every file in it 0600, every write atomic)::

    agent.yaml            server URL, CA file, system, department, hostname; written
                          LAST by enrollment: its presence means "enrolled"
    ca.pem                the centre's CA, pinned from the enrollment token
    identity.key          the agent's Ed25519 private key (PEM, PKCS#8); signs manifests
    repository.password   the restic repository password (escrowed, sealed, at the centre)
    agent.token           the agent's bearer credential for the centre
    assignment.json       the last assignment from the centre (holds store keys)
    state.json            the last backup run (time, outcome, snapshots)
    spool/                reports and manifests not yet delivered to the centre
    pending/              an enrollment in progress: identity.key, repository.password,
                          enrollment.json, password.sealed and password.sealed-to (once
                          sealed: the blob put into the stores and the escrow key it is
                          sealed to), agent.token (once the centre answered); kept until
                          enrollment completes so that a retry resumes with the same bytes
    cache/                restic's cache
    spool.lock            serialises writers and deliverers of the spool
    backup.lock           held while a backup runs (one at a time per home)

Nothing here talks to the network or runs restic.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from drd.config import resolve_home
from drd.errors import OperationError, UserError
from drd.fsutil import atomic_write, ensure_private_directory
from drd.secrets import Secret

ENROLLMENT_FILE = "agent.yaml"
CA_FILE = "ca.pem"
IDENTITY_KEY_FILE = "identity.key"
PASSWORD_FILE = "repository.password"
AGENT_TOKEN_FILE = "agent.token"
ASSIGNMENT_FILE = "assignment.json"
STATE_FILE = "state.json"
SPOOL_DIR = "spool"
PENDING_DIR = "pending"
PENDING_FILE = "enrollment.json"
SEALED_PASSWORD_FILE = "password.sealed"
SEALED_TO_FILE = "password.sealed-to"
CACHE_DIR = "cache"
BACKUP_LOCK_FILE = "backup.lock"


_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")


def this_hostname(fallback: str) -> str:
    """This machine's name as the centre accepts it (``socket.gethostname()``), or
    ``fallback`` (the system's name) when the machine's name is not a plain DNS-like
    name: a report with an unusable hostname would be refused for good."""
    name = socket.gethostname()
    return name if _HOSTNAME.match(name or "") else fallback


def resolve_agent_home(option: str | os.PathLike | None) -> Path:
    """The agent's home: the option, else ``$DRD_AGENT_HOME``, else ``/var/lib/drd-agent``
    for root or ``~/.local/share/drd-agent`` for a user."""
    return resolve_home(option, variable="DRD_AGENT_HOME", name="drd-agent")


def is_enrolled(home: Path) -> bool:
    """True when ``home`` holds a completed enrollment (its ``agent.yaml``)."""
    return (home / ENROLLMENT_FILE).is_file()


@dataclass(frozen=True)
class AgentConfig:
    """``agent.yaml``: who this agent is and which centre it talks to (no secrets)."""

    server: str
    ca_file: str
    system: str
    department: str
    hostname: str
    enrolled_at: str


@dataclass(frozen=True)
class PendingEnrollment:
    """``pending/enrollment.json``: which enrollment the pending secrets belong to."""

    server: str
    system: str
    department: str


class AgentHome:
    """The agent's home directory and the files in it.

    Reading methods raise :class:`UserError` when the home is not enrolled (with the
    command to run) and :class:`OperationError` when a file is unreadable or damaged.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"AgentHome({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / ENROLLMENT_FILE

    @property
    def ca_file(self) -> Path:
        return self.root / CA_FILE

    @property
    def spool_dir(self) -> Path:
        return self.root / SPOOL_DIR

    @property
    def pending_dir(self) -> Path:
        return self.root / PENDING_DIR

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def backup_lock_file(self) -> Path:
        return self.root / BACKUP_LOCK_FILE

    # -- the home as a whole -------------------------------------------------------------

    def ensure(self) -> None:
        """Create the home (0700) if missing and tighten its mode.

        Raises:
            UserError: the home cannot be created or is not a directory.
        """
        try:
            ensure_private_directory(self.root)
        except OSError as error:
            raise UserError(f"cannot use {self.root} as the agent's home: "
                            f"{error.strerror or error}; pick another --home") from None

    def is_enrolled(self) -> bool:
        return is_enrolled(self.root)

    def require_enrolled(self) -> AgentConfig:
        """The enrolled configuration.

        Raises:
            UserError: the home is not enrolled.
            OperationError: ``agent.yaml`` is damaged.
        """
        if not self.is_enrolled():
            raise UserError(f"this system is not enrolled (no {self.config_file}): run "
                            "'drd-agent enroll --server URL --token-file FILE' first")
        document = self._read_yaml(self.config_file)
        try:
            return AgentConfig(**{name: str(document[name]) for name in
                                  AgentConfig.__dataclass_fields__})
        except (KeyError, TypeError) as error:
            raise OperationError(f"{self.config_file} is damaged (missing {error}); "
                                 "enroll this system again") from None

    # -- enrolled files ------------------------------------------------------------------

    def write_config(self, config: AgentConfig) -> None:
        """Write ``agent.yaml``: the last step of enrollment. Raises OSError."""
        atomic_write(self.config_file, yaml.safe_dump(asdict(config), sort_keys=False))

    def identity_key(self) -> Ed25519PrivateKey:
        """The agent's Ed25519 identity key. Raises OperationError when unreadable."""
        return read_identity_key(self.root / IDENTITY_KEY_FILE)

    def password(self) -> Secret:
        """The restic repository password. Raises OperationError when unreadable."""
        return read_secret(self.root / PASSWORD_FILE)

    def agent_token(self) -> Secret:
        """The agent's bearer credential. Raises OperationError when unreadable."""
        return read_secret(self.root / AGENT_TOKEN_FILE)

    def ca_pem(self) -> bytes:
        """The pinned CA certificate (PEM). Raises OperationError when unreadable."""
        try:
            return self.ca_file.read_bytes()
        except OSError as error:
            raise OperationError(f"cannot read the pinned CA {self.ca_file}: "
                                 f"{error.strerror or error}") from None

    def install(self, *, ca_pem: bytes, identity_key_pem: bytes, password: Secret,
                agent_token: Secret, assignment: dict[str, Any]) -> None:
        """Write the enrolled secrets (all but ``agent.yaml``), each atomically, 0600.

        Raises:
            OSError: a file could not be written.
        """
        atomic_write(self.ca_file, ca_pem)
        atomic_write(self.root / IDENTITY_KEY_FILE, identity_key_pem)
        atomic_write(self.root / PASSWORD_FILE, password.reveal())
        atomic_write(self.root / AGENT_TOKEN_FILE, agent_token.reveal())
        self.save_assignment(assignment)

    def load_assignment(self) -> dict[str, Any]:
        """The cached assignment document.

        Raises:
            OperationError: missing or damaged.
        """
        return self._read_json(self.root / ASSIGNMENT_FILE, "the cached assignment")

    def save_assignment(self, document: dict[str, Any]) -> None:
        """Cache the assignment document (0600: it holds store keys). Raises OSError."""
        atomic_write(self.root / ASSIGNMENT_FILE, json.dumps(document, indent=2) + "\n")

    def last_backup(self) -> dict[str, Any] | None:
        """What :meth:`record_backup` last wrote, or None (never, or unreadable)."""
        path = self.root / STATE_FILE
        if not path.is_file():
            return None
        try:
            return self._read_json(path, "the agent's state")
        except OperationError:
            return None

    def record_backup(self, state: dict[str, Any]) -> None:
        """Write ``state.json`` (the last run; datetimes as RFC 3339). Raises OSError."""
        atomic_write(self.root / STATE_FILE, json.dumps(state, indent=2, default=_json_default)
                     + "\n")

    # -- an enrollment in progress -------------------------------------------------------

    def pending(self) -> PendingEnrollment | None:
        """The enrollment in progress, or None."""
        path = self.pending_dir / PENDING_FILE
        if not path.is_file():
            return None
        try:
            document = self._read_json(path, "the pending enrollment")
            return PendingEnrollment(**{name: str(document[name]) for name in
                                        PendingEnrollment.__dataclass_fields__})
        except (OperationError, KeyError, TypeError):
            return None

    def start_pending(self, pending: PendingEnrollment, identity_key_pem: bytes,
                      password: Secret) -> None:
        """Keep the secrets of a new enrollment in ``pending/`` (replacing any other).
        Raises OSError."""
        self.discard_pending()
        ensure_private_directory(self.pending_dir)
        atomic_write(self.pending_dir / IDENTITY_KEY_FILE, identity_key_pem)
        atomic_write(self.pending_dir / PASSWORD_FILE, password.reveal())
        atomic_write(self.pending_dir / PENDING_FILE, json.dumps(asdict(pending)) + "\n")

    def pending_identity_key(self) -> Ed25519PrivateKey:
        """The pending enrollment's identity key. Raises OperationError when unreadable."""
        return read_identity_key(self.pending_dir / IDENTITY_KEY_FILE)

    def pending_password(self) -> Secret:
        """The pending enrollment's password. Raises OperationError when unreadable."""
        return read_secret(self.pending_dir / PASSWORD_FILE)

    def pending_sealed_password(self, escrow_public_key: bytes) -> bytes | None:
        """The sealed password an earlier attempt kept (and may have put into the stores),
        when it was sealed to ``escrow_public_key`` (the raw 32 bytes); None when there is
        none, or it was sealed to another key (the centre's escrow key changed since)."""
        try:
            sealed_to = (self.pending_dir / SEALED_TO_FILE).read_text(encoding="ascii")
            sealed = (self.pending_dir / SEALED_PASSWORD_FILE).read_bytes()
        except (OSError, UnicodeDecodeError):
            return None
        if sealed_to.strip() != escrow_public_key.hex() or not sealed:
            return None
        return sealed

    def keep_pending_sealed_password(self, sealed: bytes, escrow_public_key: bytes) -> None:
        """Keep the pending password as sealed to ``escrow_public_key`` (raw bytes), before
        it goes into any store. The blob is written last and removed first, so a blob is
        never read beside another key's name. Raises OSError."""
        (self.pending_dir / SEALED_PASSWORD_FILE).unlink(missing_ok=True)
        atomic_write(self.pending_dir / SEALED_TO_FILE, escrow_public_key.hex() + "\n")
        atomic_write(self.pending_dir / SEALED_PASSWORD_FILE, sealed)

    def pending_agent_token(self) -> Secret | None:
        """The agent token the centre gave this pending enrollment, if it answered."""
        path = self.pending_dir / AGENT_TOKEN_FILE
        return read_secret(path) if path.is_file() else None

    def keep_pending_agent_token(self, token: Secret) -> None:
        """Keep the centre's answer to enroll at once, for a resumed finish. Raises OSError."""
        atomic_write(self.pending_dir / AGENT_TOKEN_FILE, token.reveal())

    def discard_pending(self) -> None:
        """Remove ``pending/`` and everything in it (idempotent)."""
        if not self.pending_dir.is_dir():
            return
        for entry in self.pending_dir.iterdir():
            entry.unlink(missing_ok=True)
        self.pending_dir.rmdir()

    # -- helpers -------------------------------------------------------------------------

    def _read_yaml(self, path: Path) -> dict[str, Any]:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise OperationError(f"cannot read {path}: {error}") from None
        if not isinstance(document, dict):
            raise OperationError(f"{path} is damaged (not a mapping); enroll this system again")
        return document

    def _read_json(self, path: Path, what: str) -> dict[str, Any]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OperationError(f"{what} ({path}) is missing") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise OperationError(f"cannot read {what} ({path}): {error}") from None
        if not isinstance(document, dict):
            raise OperationError(f"{what} ({path}) is damaged (not a JSON object)")
        return document


def identity_key_pem(key: Ed25519PrivateKey) -> bytes:
    """``key`` as an unencrypted PKCS#8 PEM (the file is 0600 in a 0700 home)."""
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def read_identity_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file.

    Raises:
        OperationError: unreadable, or not an Ed25519 private key.
    """
    try:
        key = load_pem_private_key(path.read_bytes(), None)
    except OSError as error:
        raise OperationError(f"cannot read the agent's identity key {path}: "
                             f"{error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        raise OperationError(f"{path} is not a usable private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OperationError(f"{path} is not an Ed25519 key")
    return key


def read_secret(path: Path) -> Secret:
    """The text of a secret file, stripped of surrounding whitespace.

    Raises:
        OperationError: unreadable or empty.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise OperationError(f"cannot read {path}: {error.strerror or error}") from None
    if not text:
        raise OperationError(f"{path} is empty")
    return Secret(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

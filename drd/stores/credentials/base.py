"""The credential broker interface: keys that belong to one system in one store.

A department system is untrusted the day it is compromised, so its agent must hold keys
that can do nothing but what a backup needs, and only in its own repository. A
*credential broker* makes such keys for one store, with the store's own (administrative)
keys, which never leave the centre.

The contract
------------
Scope
    A key is scoped to a :class:`RepositoryScope`: the bucket and the repository prefix
    ``<store prefix>/<department>/<system>``. Within it: list, read, write; delete only
    under ``locks/`` (restic's lock files). Outside it: nothing at all -- no list, no
    read, no write -- which also keeps the centre's catalog copies (``_drd-centre/``)
    and every other system's repository out of reach.
What a store kind can refuse
    :class:`Guarantees` says what the store itself enforces for such a key. Where it
    cannot refuse an overwrite or a delete, a policy must put Object Lock on that store
    (:mod:`policies` refuses it otherwise), so that a changed object leaves the good
    version in the bucket, and verification finds and heals the change.
Principals
    Each repository has one principal (a user in the store's identity system) named by
    :func:`principal_name`; each key is an access key of that principal. Making a key
    creates the principal if it is missing and puts its policy again, so a principal whose
    policy changed (a new drd version, a store moved) is brought up to date by the next key.
Idempotence and errors
    :meth:`CredentialBroker.issue` makes a new key each time it is called (the caller
    records it before handing it out; a key made and then lost is disabled by the next
    reconciliation that finds it unknown, see :meth:`CredentialBroker.keys`).
    :meth:`~CredentialBroker.disable` and :meth:`~CredentialBroker.remove` are idempotent:
    a key or principal that is not there counts as done. Every method raises
    :class:`~drd.stores.errors.StoreUnavailable` when the store cannot be reached (retry
    later), :class:`~drd.stores.errors.StoreAuthError` when the centre's key lacks the
    right to manage identities (an administrator must fix the store's set-up), and
    :class:`CredentialsUnsupported` when the store cannot make keys at all.
"""

from __future__ import annotations

import abc
import hashlib
import re
from dataclasses import dataclass, field

from drd.secrets import Secret
from drd.stores.errors import StoreError

PRINCIPAL_PREFIX = "drd-"
# IAM user names: 1-64 of [A-Za-z0-9+=,.@_-]
_PRINCIPAL_MAXIMUM = 64
_PRINCIPAL_DIGEST = 10
LOCKS = "locks/"


class CredentialsUnsupported(StoreError):
    """The store cannot make keys of their own for systems (no identity API, or it is
    read-only); the message says how to set the store up, or to share its keys."""


@dataclass(frozen=True)
class RepositoryScope:
    """Where one system's repository lives in one store: ``bucket`` and ``prefix``
    (``<store prefix>/<department>/<system>``, no leading or trailing ``/``; for a file
    store the bucket is empty and the prefix is the repository's directory)."""

    store: str
    bucket: str
    prefix: str
    system: str

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"a repository prefix must be a relative path, not {self.prefix!r}")

    @property
    def objects(self) -> str:
        """Every key of the repository, as an S3 key pattern (``prefix/*``)."""
        return f"{self.prefix}/*"

    @property
    def locks(self) -> str:
        """restic's lock files, the only keys the system may delete."""
        return f"{self.prefix}/{LOCKS}*"


def principal_name(scope: RepositoryScope) -> str:
    """The principal (store user) that owns ``scope``'s keys (pure).

    ``drd-<system>-<digest>``: readable in the store's user list, and unique per bucket and
    prefix, so two centres sharing a store, or one system's repositories in two buckets of
    the same server, never share a principal. At most 64 characters (AWS IAM's limit).
    """
    digest = hashlib.sha256(f"{scope.bucket}/{scope.prefix}".encode()).hexdigest()
    room = _PRINCIPAL_MAXIMUM - len(PRINCIPAL_PREFIX) - 1 - _PRINCIPAL_DIGEST
    system = re.sub(r"[^A-Za-z0-9+=,.@_-]", "-", scope.system)[:room]
    return f"{PRINCIPAL_PREFIX}{system}-{digest[:_PRINCIPAL_DIGEST]}"


@dataclass(frozen=True)
class Guarantees:
    """What a store refuses to a system's key by itself (without drd's help).

    ``isolated``: no list, read or write outside the repository prefix.
    ``refuses_delete``: no delete outside ``locks/`` (so neither a delete marker).
    ``refuses_overwrite``: no replacing an object that exists (writers send
    ``If-None-Match: *`` where ``write_once`` is set, and the store enforces it).
    ``summary``: one line for ``drd store check`` and the docs.
    """

    isolated: bool
    refuses_delete: bool
    refuses_overwrite: bool
    write_once: bool
    summary: str

    @property
    def needs_object_lock(self) -> bool:
        """Whether a policy handing this store to agents must put Object Lock on it: the
        store cannot refuse a compromised agent's overwrite or delete."""
        return not (self.refuses_delete and self.refuses_overwrite)


@dataclass(frozen=True, repr=False)
class IssuedCredential:
    """A key just made: its principal, its id (not secret) and its secret."""

    principal: str
    access_key_id: str
    secret_access_key: Secret = field(repr=False)

    def __repr__(self) -> str:
        return f"IssuedCredential({self.principal!r}, {self.access_key_id!r})"


class CredentialBroker(abc.ABC):
    """Makes, lists, disables and removes the keys of systems in one store.

    ``kind`` is the name kept in the catalog (``stores.credentials``); ``guarantees`` what
    keys made here cannot do. Implementations talk to the store's identity API with the
    store's own keys and must never log or raise a secret.
    """

    kind: str
    guarantees: Guarantees

    @abc.abstractmethod
    def issue(self, scope: RepositoryScope) -> IssuedCredential:
        """Make a new key for ``scope``'s principal (creating it and putting its policy
        first) and return it once it works. Raises as the module docstring says."""

    @abc.abstractmethod
    def disable(self, principal: str, access_key_id: str) -> None:
        """Make the key unusable for good; done already (or never made) is not an error."""

    @abc.abstractmethod
    def keys(self, principal: str) -> list[str]:
        """The ids of the principal's keys that still work ([] when it does not exist)."""

    @abc.abstractmethod
    def remove(self, principal: str) -> None:
        """Disable every key of the principal and delete it with its policy (a retired
        system); a principal that is not there is not an error."""

    @abc.abstractmethod
    def check(self) -> str:
        """Prove the centre's keys can manage identities here; return what was checked,
        in one line. Raises :class:`CredentialsUnsupported` or a store error if not."""

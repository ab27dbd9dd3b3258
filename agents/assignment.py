"""The assignment: what the centre tells an agent to do (``docs/agent-protocol.md``).

:func:`parse_assignment` turns the centre's JSON into an :class:`Assignment` (pure);
:func:`current_assignment` gets a fresh one from the centre when it can and falls back
to the copy cached in the agent's home when it cannot, so that backups run on schedule
while the centre is down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from drd.errors import OperationError
from drd.secrets import Secret
from drd.stores.base import validate_key
from drd.stores.errors import InvalidKey
from drd.stores.url import StoreSpec
from policies.schema import Policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreAssignment:
    """One store of the system's policy, with the keys the agent uses for it."""

    name: str
    url: str
    endpoint: str | None = None
    region: str | None = None
    object_lock: bool = False
    kind: str = ""
    access_key_id: str | None = None
    secret_access_key: Secret | None = field(default=None, repr=False)
    # the broker that made the key; write_once: the store refuses overwrites, so every
    # write outside locks/ must be create-only (drd.stores.s3.S3Store's overwritable)
    credentials: str | None = None
    write_once: bool = False
    # the bucket locks what the agent writes (its key may not set a retention)
    locked_by_bucket: bool = False

    @property
    def has_keys(self) -> bool:
        """A file store needs none; an S3 store is usable only with its key."""
        return not self.url.startswith("s3://") or bool(self.access_key_id
                                                        and self.secret_access_key)

    @property
    def brokered(self) -> bool:
        """The key is the system's own, made by the centre's broker for this store."""
        return self.credentials not in (None, "", "shared")
    def spec(self, repository_path: str) -> StoreSpec:
        """The store rooted at the system's repository (``<url>/<repository_path>``)."""
        return StoreSpec(name=self.name, url=f"{self.url.rstrip('/')}/{repository_path}",
                         endpoint=self.endpoint, region=self.region,
                         object_lock=self.object_lock)


@dataclass(frozen=True)
class Assignment:
    """A parsed assignment. ``document`` is the JSON it came from (cached as is)."""

    system: str
    department: str
    repository_path: str
    policy: Policy
    policy_version: int
    stores: tuple[StoreAssignment, ...]
    escrow_public_key_pem: str
    document: Mapping[str, Any] = field(repr=False, compare=False, hash=False)


def parse_assignment(document: Any) -> Assignment:
    """Parse the centre's assignment JSON (pure).

    Raises:
        OperationError: a missing or malformed field, a policy that does not validate,
            or a repository path that is not a plain relative path; the message says
            which.
    """
    if not isinstance(document, Mapping):
        raise _bad("it is not a JSON object")
    try:
        system = _text(document, "system")
        department = _text(document, "department")
        repository_path = _text(document, "repository_path").strip("/")
        validate_key(repository_path)
        version = document.get("policy_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _bad("policy_version is not a number")
        policy = Policy.model_validate(document.get("policy"))
        escrow = _text(document, "escrow_public_key")
        stores_document = document.get("stores")
        if not isinstance(stores_document, list) or not stores_document:
            raise _bad("it names no stores")
        listed = tuple(_store(item) for item in stores_document)
    except InvalidKey as error:
        raise _bad(f"repository_path: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise _bad(f"its policy does not validate ({where}: {first.get('msg')})") from None
    names = [store.name for store in listed]
    if len(set(names)) != len(names):
        raise _bad("a store is named twice")
    # a store whose key the centre is still making: skipped until a later assignment
    stores = tuple(store for store in listed if store.has_keys)
    if not stores:
        raise _bad("it holds no keys for any store yet (the centre makes them: try again "
                   "in a minute, and see drd status on the centre)")
    names = [store.name for store in stores]
    missing = sorted(set(policy.stores) - set(names))
    if missing:
        logger.warning("the assignment has no keys for store(s) %s of policy %s",
                       ", ".join(missing), policy.name)
    return Assignment(system=system, department=department, repository_path=repository_path,
                      policy=policy, policy_version=version, stores=stores,
                      escrow_public_key_pem=escrow, document=dict(document))


def _store(item: Any) -> StoreAssignment:
    if not isinstance(item, Mapping):
        raise _bad("a store entry is not an object")
    secret = item.get("secret_access_key")
    return StoreAssignment(
        name=_text(item, "name"),
        url=_text(item, "url"),
        endpoint=item.get("endpoint") or None,
        region=item.get("region") or None,
        object_lock=bool(item.get("object_lock", False)),
        kind=str(item.get("kind") or ""),
        access_key_id=item.get("access_key_id") or None,
        secret_access_key=Secret(secret) if isinstance(secret, str) and secret else None,
        credentials=str(item.get("credentials") or "") or None,
        write_once=bool(item.get("write_once", False)),
        locked_by_bucket=bool(item.get("locked_by_bucket", False)),
    )


def store_keys(assignment: Assignment) -> dict[str, str]:
    """The id of the key the agent holds for each store with a key of its own (what the
    heartbeat tells the centre, so that a replaced key can be disabled)."""
    return {store.name: store.access_key_id for store in assignment.stores
            if store.brokered and store.access_key_id}


def keys_version(assignment: Assignment) -> str:
    """The digest the centre's heartbeat answer carries when this assignment is current."""
    from drd.services.protocol import keys_digest

    return keys_digest(store_keys(assignment).values())


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is missing")
    return value


def _bad(reason: str) -> OperationError:
    return OperationError(f"the centre sent an assignment this agent cannot use: {reason}; "
                          "check the centre's version and the system's policy")


def current_assignment(home, client) -> tuple[Assignment, bool]:
    """A fresh assignment from the centre, or the cached one when the centre cannot be
    reached.

    Args:
        home: the :class:`~agents.home.AgentHome`.
        client: a :class:`~agents.client.CentreClient`, or None to use the cache only.

    Returns:
        ``(assignment, fresh)``; a fresh one has been saved in the home.

    Raises:
        OperationError: no usable assignment (the centre refused and nothing is cached,
            or the cache is damaged).
    """
    if client is not None:
        try:
            document = client.assignment()
            assignment = parse_assignment(document)
        except OperationError as error:  # the centre is down, refused, or sent nonsense
            logger.warning("using the cached assignment: %s", error)
        else:
            home.save_assignment(document)
            return assignment, True
    return parse_assignment(home.load_assignment()), False

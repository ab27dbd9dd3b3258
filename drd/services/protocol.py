"""The agent protocol's messages (``docs/agent-protocol.md``), as pydantic models.

One definition of the wire format for both ends: the API validates request bodies with
these models (a body that does not fit is refused with a 4xx before any service runs),
and the services take them as their input. Unknown fields are ignored, so that an agent
newer than its centre can still talk to it; missing or mistyped ones are refused.
Limits (string lengths, list sizes, integer ranges) keep a hostile body from costing the
centre more than a small, bounded amount of work and from overflowing a column.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from drd.names import NAME_PATTERN
from drd.secrets import mask

BIGINT_MAX = 2**63 - 1
MAX_STORES = 64

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="64 lowercase hex digits")]
# what the agent's machine calls itself: any printable text (no C0 or C1 control
# characters, which could rewrite a terminal showing it)
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
Hostname = Annotated[str, Field(min_length=1, max_length=253, pattern=NO_CONTROLS)]
Count = Annotated[int, Field(strict=True, ge=0, le=BIGINT_MAX)]
ShortText = Annotated[str, Field(max_length=200, pattern=NO_CONTROLS)]
# a report's time may run ahead of the centre's clock by this much at most: a snapshot
# "from the future" would hide a late system until that time
MAX_CLOCK_SKEW = timedelta(hours=1)
EARLIEST_SNAPSHOT = datetime(1970, 1, 1, tzinfo=UTC)
StoreName = Annotated[str, Field(pattern=NAME_PATTERN)]
# an object's path in the repository (``data/ab/ab12...``, ``index/...``, ``config``)
ObjectName = Annotated[str, Field(max_length=300,
                                  pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*"
                                          r"(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")]


class Message(BaseModel):
    """Base of every message: unknown fields are dropped, not refused."""

    model_config = ConfigDict(extra="ignore")


# -- enrollment ---------------------------------------------------------------------------


class EnrollPreviewRequest(Message):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class EnrollRequest(Message):
    token: Annotated[str, Field(min_length=1, max_length=4096)]
    hostname: Hostname
    agent_public_key: Annotated[str, Field(min_length=1, max_length=4096,
                                           description="Ed25519 public key, PEM")]
    sealed_password: Annotated[str, Field(min_length=1, max_length=8192,
                                          description="base64 of the drd.crypto.seal blob")]
    # the repository's config as restic init stored it: the centre checks every copy
    # against this digest (drd.recorded); older agents send neither
    config_sha256: Hex64 | None = None
    config_size: Annotated[int, Field(strict=True, ge=1, le=65536)] | None = None

    @model_validator(mode="after")
    def _config_digest_whole(self) -> EnrollRequest:
        if (self.config_sha256 is None) != (self.config_size is None):
            raise ValueError("config_sha256 and config_size come together")
        return self


class StoreAccess(BaseModel):
    name: str
    kind: str
    url: str
    endpoint: str | None
    region: str | None
    object_lock: bool
    access_key_id: str | None
    secret_access_key: str | None
    # the broker that made the key (drd.stores.credentials); write_once: writes outside
    # locks/ must carry If-None-Match: * (the store refuses overwrites)
    credentials: str | None = None
    write_once: bool = False
    # the bucket locks new objects by its default retention: send no lock headers (the
    # key has no right to set a retention; drd.credentials.retention)
    locked_by_bucket: bool = False


class Assignment(BaseModel):
    system: str
    department: str
    repository_path: str
    policy: dict[str, Any]
    policy_version: int
    stores: list[StoreAccess]
    escrow_public_key: str


class EnrollPreviewResponse(BaseModel):
    system: str
    department: str
    assignment: Assignment


class EnrollResponse(BaseModel):
    system: str
    department: str
    agent_token: str


# -- agent calls --------------------------------------------------------------------------


class LastFailure(Message):
    """The agent's last failed backup run: when it ended, and why (one line, no secret)."""

    at: AwareDatetime
    error: ShortText = ""

    @field_validator("error", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        # an agent's reason is news, not input to refuse: made one line and cut to size;
        # masked here (before the cut could split a password) whatever the agent did
        if isinstance(value, str):
            return mask(re.sub(r"[\x00-\x1f\x7f-\x9f\s]+", " ", value)).strip()[:200]
        return value


def keys_digest(access_key_ids) -> str:
    """The ``keys_version`` of a set of access key ids (16 hex digits; order-free), as both
    the centre and the agent compute it."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(access_key_ids)).encode()).hexdigest()[:16]


AccessKeyId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_+=,.@-]+$")]


class HeartbeatRequest(Message):
    hostname: Hostname
    agent_version: ShortText
    restic_version: ShortText
    last_backup_at: AwareDatetime | None = None
    spooled_reports: Count = 0
    last_failure: LastFailure | None = None
    # the access key id the agent holds per store: tells the centre that a new key has
    # reached the agent, so the key it replaced can be disabled
    store_keys: Annotated[dict[StoreName, AccessKeyId], Field(max_length=MAX_STORES)] = {}


class HeartbeatResponse(BaseModel):
    backup_now: bool
    policy_version: int
    # a digest of the ids of the agent's keys: when it differs from the one of the cached
    # assignment, the agent fetches its assignment again (drd.services.credentials)
    keys_version: str | None = None


class StoreCopyReport(Message):
    complete: Annotated[bool, Field(strict=True)]
    missing_objects: Count = 0
    # as long as the body limit allows (drd.api.limits); the centre keeps the first
    # drd.services.snapshots.MAX_MISSING_KEPT names, missing_objects keeps the count
    missing: list[ObjectName] = []

    @model_validator(mode="after")
    def _consistent(self) -> StoreCopyReport:
        if self.complete and (self.missing_objects or self.missing):
            raise ValueError("a complete copy has no missing objects")
        if len(self.missing) > self.missing_objects:
            raise ValueError("missing lists more objects than missing_objects counts")
        return self


class SnapshotReport(Message):
    report_id: Annotated[str, Field(min_length=36, max_length=36)]
    snapshot_id: Hex64
    time: AwareDatetime
    hostname: Hostname
    paths: Annotated[list[Annotated[str, Field(max_length=4096, pattern=NO_CONTROLS)]],
                     Field(max_length=1000)] = []
    tags: Annotated[list[ShortText], Field(max_length=100)] = []
    tree: Hex64
    files: Count
    bytes: Count
    duration_seconds: Annotated[float, Field(ge=0, le=1e9)]
    stores: Annotated[dict[StoreName, StoreCopyReport], Field(min_length=1,
                                                              max_length=MAX_STORES)]
    manifest_sha256: Hex64 | None = None
    partial: Annotated[bool, Field(strict=True)] = False

    @field_validator("time")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        """In UTC and not before 1970. (Whether it lies in the future is checked against
        the centre's clock when the report is recorded.)"""
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None
        if value < EARLIEST_SNAPSHOT:
            raise ValueError("is before 1970")
        return value

    @field_validator("report_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427") \
                from None

    @field_validator("duration_seconds")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value


class SnapshotAccepted(BaseModel):
    snapshot_id: str
    report_id: str
    duplicate: bool


class ManifestSeal(Message):
    """What the agent stored for the manifest: the canonical bytes sealed to the escrow
    key (``drd/manifests/<id>.json.sealed``), described by their first 45 bytes and their
    digest; the centre seals again to check them, and records the digest."""

    head: Annotated[str, Field(min_length=60, max_length=60,
                               description="base64 of the stored object's first 45 bytes "
                                           "(version, ephemeral X25519 key, nonce)")]
    sha256: Hex64
    size: Annotated[int, Field(strict=True, ge=61, le=BIGINT_MAX,
                               description="the stored object's size in bytes")]
    key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                              description="SHA-256 of the raw escrow public key it is "
                                          "sealed to (the assignment's)")]


class ManifestUpload(Message):
    manifest: dict[str, Any]
    signature: Annotated[str, Field(min_length=1, max_length=200,
                                    description="base64 of the 64-byte Ed25519 signature")]
    sealed: ManifestSeal | None = Field(
        default=None, description="the sealed manifest the agent stored; absent from agents "
                                  "that stored the plaintext (drd/manifests/<id>.json)")

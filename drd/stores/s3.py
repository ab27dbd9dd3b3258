"""A store in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...) through boto3.

Objects live at ``<prefix>/<key>`` in the bucket. Single HTTP requests may be retried by
botocore (``max_attempts``; :func:`drd.stores.url.open_store` sets it to 1, as its
:class:`~drd.stores.retry.RetryingStore` retries whole operations: one retry layer, so
an unresponsive server costs a bounded number of timeouts). Requests about the bucket
itself and :meth:`S3Store.check` wait ``check_timeout`` seconds for an answer, object
data ``read_timeout`` seconds. Bodies are not hashed
for SigV4 and CRC checksums are only sent where S3 requires them (a PUT with a
retention): writing three copies, that hashing was half of the fan-out's CPU.

Object Lock: on a bucket created with ``ensure_bucket(object_lock=True)`` (which turns
versioning on), a put with ``retain_until`` writes a COMPLIANCE retention. ``delete``
then adds a delete marker; the locked version stays, and ``delete_version`` of it raises
:class:`ObjectLocked`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import boto3.s3.transfer
import botocore.exceptions
import botocore.parsers
from botocore.config import Config

from drd.secrets import Secret
from drd.stores.base import (
    Data,
    ObjectInfo,
    ObjectVersion,
    Store,
    StoreCheck,
    validate_key,
    validate_range,
    validate_retain_until,
)
from drd.stores.errors import (
    ObjectExists,
    ObjectLocked,
    ObjectLockUnsupported,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreNotFound,
)
from drd.stores.s3_errors import (
    NO_LOCK_CONFIGURATION,
    bucket_not_found,
    error_code,
    translate_error,
)
from drd.stores.streams import FullReader, LengthMismatch

MIB = 1024 * 1024
DEFAULT_REGION = "us-east-1"


# Failures without an S3 error code: no connection, no answer in time, or an answer that
# is not S3's (a wrong endpoint's page, which botocore raises as no BotoCoreError).
_BOTOCORE_FAILURES = (botocore.exceptions.BotoCoreError, botocore.parsers.ResponseParserError)
_BOTO_ERRORS = (*_BOTOCORE_FAILURES, botocore.exceptions.ClientError)


class S3Store(Store):
    """A store at ``s3://bucket/prefix`` on ``endpoint``.

    Args:
        name: the store's name (starts every error message).
        endpoint: ``http(s)://host[:port]``.
        bucket, prefix: where objects live; the prefix has no leading/trailing ``/``.
        access_key_id, secret_access_key: the credentials (the secret only as a Secret).
        region: the signing region.
        object_lock: whether the bucket has Object Lock, if known (None: ask the bucket
            once, on first use of :attr:`supports_object_lock`).
        max_attempts: botocore's attempts per HTTP request (1 = no retries).
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for an answer (or the next bytes) to an object
            request: a get, put, list, copy.
        check_timeout: the same for requests about the bucket (does it exist, create it,
            its Object Lock and versioning) and for :meth:`check`, which should fail fast.
        multipart_threshold, multipart_chunksize: uploads above the threshold go in parts
            of the chunk size (bounding memory for streams of unknown length).
        max_concurrency: parallel part uploads of one object.
        list_page_size: keys per listing request (S3's maximum is 1000).
        chunk_size: the largest chunk :meth:`get` yields.
        overwritable: None for a plain store; else the store is *write-once*: every put of
            a key outside these prefixes is create-only (``If-None-Match: *``, which a
            store that refuses systems' overwrites requires), and an object found there
            with the very bytes being put counts as written (a retry, a second run).
        locked_by_bucket: the bucket locks every new object with its default retention
            (set by the centre): puts send no lock headers, which a system's own key may
            not send (it has no right to set a retention), and ``retain_until`` is left to
            the bucket.
    """

    def __init__(
        self,
        name: str,
        *,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        access_key_id: str,
        secret_access_key: Secret,
        region: str = DEFAULT_REGION,
        object_lock: bool | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        check_timeout: float = 10.0,
        multipart_threshold: int = 64 * MIB,
        multipart_chunksize: int = 16 * MIB,
        max_concurrency: int = 4,
        max_pool_connections: int = 16,
        list_page_size: int = 1000,
        chunk_size: int = 1 * MIB,
        overwritable: tuple[str, ...] | None = None,
        locked_by_bucket: bool = False,
    ) -> None:
        if not isinstance(secret_access_key, Secret):
            raise TypeError("secret_access_key must be a drd.secrets.Secret")
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region or DEFAULT_REGION
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self._object_lock = object_lock
        self._keeps_versions: bool | None = True if object_lock else None
        self._object_lock_lock = threading.Lock()
        self.list_page_size = list_page_size
        self.chunk_size = chunk_size
        self.overwritable = overwritable
        self.locked_by_bucket = locked_by_bucket
        self.transfer_config = boto3.s3.transfer.TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
        )
        self._config = Config(
            region_name=self.region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # botocore's "max_attempts" counts retries, "total_max_attempts" every attempt.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.check_timeout = check_timeout
        self.client = self._make_client(self._config)

    def _make_client(self, config: Config):
        # A session of our own: the default one is not thread-safe and would read ~/.aws.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self._secret.reveal(),
            config=config,
        )

    @functools.cached_property
    def _bucket_client(self):
        """A client that waits only ``check_timeout`` for an answer: for requests about
        the bucket and :meth:`check`, which carry no object data."""
        return self._make_client(self._config.merge(Config(read_timeout=self.check_timeout)))

    # --- helpers -----------------------------------------------------------------------

    @property
    def location(self) -> str:
        path = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return f"s3://{path} at {self.endpoint}"

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative_key(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _list_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def _error(self, error: Exception, doing: str, key: str | None = None) -> StoreError:
        return translate_error(
            self.name,
            error,
            doing=doing,
            key=key,
            bucket=self.bucket,
            endpoint=self.endpoint,
            secrets_to_mask=(self._secret,),
        )

    @staticmethod
    def _lock_arguments(retain_until: datetime | None) -> dict[str, Any]:
        if retain_until is None:
            return {}
        # S3 requires an integrity checksum on PUTs that carry a retention.
        return {
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": retain_until,
            "ChecksumAlgorithm": "CRC32",
        }

    def _check_lock_possible(self, key: str, retain_until: datetime | None) -> None:
        # Some servers ignore retention headers on a bucket without Object Lock: ask first
        # (once), rather than leave an object mutable that the caller believes locked.
        validate_retain_until(retain_until)
        if retain_until is not None and not self.supports_object_lock:
            raise ObjectLockUnsupported(
                self.name,
                f"bucket {self.bucket!r} has no Object Lock; cannot lock {key!r}",
                key=key,
            )

    # --- objects -----------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: Data,
        *,
        length: int | None = None,
        retain_until: datetime | None = None,
        create_only: bool = False,
    ) -> None:
        """See :meth:`Store.put`. Bytes up to the multipart threshold go in one PUT;
        larger or file-like data through a managed (multipart) upload, aborted on failure.
        A create-only put sends ``If-None-Match: *`` (on the PUT, or on the completion of
        its own multipart upload: boto3's managed upload does not pass the header on).
        """
        full_key = self._full_key(key)
        if self.locked_by_bucket:
            retain_until = None  # the bucket's default retention locks it
        self._check_lock_possible(key, retain_until)
        extra = self._lock_arguments(retain_until)
        write_once = self.overwritable is not None and not key.startswith(self.overwritable)
        if create_only or write_once:
            try:
                self._put_create_only(key, full_key, data, length, extra)
            except ObjectExists:
                if create_only or not self._holds(key, data):
                    raise
            return
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                if length is not None and length != len(data):
                    raise LengthMismatch(f"{len(data)} bytes given with length={length}")
                if len(data) <= self.transfer_config.multipart_threshold:
                    self.client.put_object(
                        Bucket=self.bucket, Key=full_key, Body=bytes(data), **extra
                    )
                    return
                data = io.BytesIO(data)
            else:
                data = FullReader(data, length)
            self.client.upload_fileobj(
                data, self.bucket, full_key, ExtraArgs=extra or None, Config=self.transfer_config
            )
        except _BOTO_ERRORS as error:
            raise self._error(error, f"writing {key!r}", key) from error

    def _holds(self, key: str, data: Data) -> bool:
        """Whether ``key`` holds exactly ``data`` (bytes only; a stream is not compared)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            return False
        if self.head(key).size != len(data):
            return False
        return b"".join(self.get(key)) == bytes(data)

    def _put_create_only(self, key: str, full_key: str, data: Data, length: int | None,
                         extra: dict[str, Any]) -> None:
        upload_id = None
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                if length is not None and length != len(data):
                    raise LengthMismatch(f"{len(data)} bytes given with length={length}")
                if len(data) <= self.transfer_config.multipart_threshold:
                    self.client.put_object(Bucket=self.bucket, Key=full_key, Body=bytes(data),
                                           IfNoneMatch="*", **extra)
                    return
                data = io.BytesIO(data)
            reader = FullReader(data, length)
            chunk = self.transfer_config.multipart_chunksize
            parts: list[dict[str, Any]] = []
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **extra)["UploadId"]
            while True:
                body = reader.read(chunk)
                if not body and parts:
                    break
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                    PartNumber=len(parts) + 1, Body=body,
                    **({"ChecksumAlgorithm": "CRC32"} if extra else {}))
                part = {"ETag": answer["ETag"], "PartNumber": len(parts) + 1}
                if "ChecksumCRC32" in answer:
                    part["ChecksumCRC32"] = answer["ChecksumCRC32"]
                parts.append(part)
                if len(body) < chunk:
                    break
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, IfNoneMatch="*")
            upload_id = None
        except _BOTO_ERRORS as error:
            if isinstance(error, botocore.exceptions.ClientError) and \
                    error_code(error)[0] in ("PreconditionFailed", "412"):
                raise ObjectExists(self.name, f"object {key!r} exists already",
                                   key=key) from None
            raise self._error(error, f"writing {key!r}", key) from error
        finally:
            if upload_id is not None:
                with contextlib.suppress(*_BOTO_ERRORS):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key,
                                                       UploadId=upload_id)

    def get(self, key: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """See :meth:`Store.get`; a ranged GET, streamed in chunks."""
        return self._get(key, offset, length)

    def get_version(self, key: str, version_id: str | None, *, offset: int = 0,
                    length: int | None = None) -> Iterator[bytes]:
        """See :meth:`Store.get_version`; a GET of that version id."""
        return self._get(key, offset, length, _version(version_id))

    def _get(self, key: str, offset: int, length: int | None,
             version_id: str | None = None) -> Iterator[bytes]:
        full_key = self._full_key(key)
        validate_range(offset, length)
        if length == 0:
            self._head(key, version_id)
            return iter(())
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key}
        if version_id is not None:
            arguments["VersionId"] = version_id
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            arguments["Range"] = f"bytes={offset}-{end}"
        try:
            response = self.client.get_object(**arguments)
        except botocore.exceptions.ClientError as error:
            code, _, status = error_code(error)
            if code == "InvalidRange" or status == 416:
                self._head(key, version_id)  # raises if it is missing: else past the end
                return iter(())
            raise self._error(error, f"reading {key!r}", key) from error
        except _BOTOCORE_FAILURES as error:
            raise self._error(error, f"reading {key!r}", key) from error
        return self._chunks(response["Body"], key)

    def _chunks(self, body, key: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(self.chunk_size)
        except (*_BOTO_ERRORS, OSError) as error:
            raise self._error(error, f"reading {key!r}", key) from error
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo:
        """See :meth:`Store.head`; carries the retention and version id where set."""
        return self._head(key)

    def _head(self, key: str, version_id: str | None = None, client=None) -> ObjectInfo:
        """HEAD ``key`` (one version of it if ``version_id``) with ``client`` (default:
        the object client)."""
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if version_id is not None:
            arguments["VersionId"] = version_id
        try:
            response = (client or self.client).head_object(**arguments)
        except _BOTO_ERRORS as error:
            translated = self._error(error, f"reading {key!r}", key)
            # A HEAD has no body: a 404 may mean a missing bucket as well as a missing key.
            if isinstance(translated, ObjectNotFound):
                with contextlib.suppress(StoreError):  # then the 404 is all we know
                    if not self._bucket_exists():
                        translated = bucket_not_found(
                            self.name, self.bucket, self.endpoint, key=key
                        )
            raise translated from error
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            modified=_aware(response["LastModified"]),
            retain_until=_aware(response.get("ObjectLockRetainUntilDate")),
            version_id=_version(response.get("VersionId")) or version_id,
        )

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """See :meth:`Store.list`; ``list_page_size`` keys per ListObjectsV2 request."""
        return self._list(prefix, start_after)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self._list_prefix(prefix),
            "MaxKeys": self.list_page_size,
        }
        if start_after is not None:
            arguments["StartAfter"] = self._list_prefix(start_after)
        while True:
            try:
                page = self.client.list_objects_v2(**arguments)
            except _BOTO_ERRORS as error:
                raise self._error(error, f"listing {prefix!r}") from error
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=self._relative_key(item["Key"]),
                    size=int(item["Size"]),
                    modified=_aware(item["LastModified"]),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            arguments["ContinuationToken"] = token
            arguments.pop("StartAfter", None)

    def delete(self, key: str) -> None:
        """See :meth:`Store.delete`; on a versioned bucket, adds a delete marker."""
        full_key = self._full_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full_key)
        except _BOTO_ERRORS as error:
            raise self._error(error, f"deleting {key!r}", key) from error

    # --- versions (buckets with versioning / Object Lock) --------------------------------

    @property
    def keeps_versions(self) -> bool:
        """See :attr:`Store.keeps_versions`: the bucket has Object Lock (which implies
        versioning) or versioning turned on (asked of the bucket once)."""
        with self._object_lock_lock:
            known = self._keeps_versions
        if known is None:
            known = self.supports_object_lock or self._bucket_versioning()
            with self._object_lock_lock:
                self._keeps_versions = known
        return known

    def list_versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        """See :meth:`Store.list_versions`: ListObjectVersions, ``list_page_size`` entries
        a page. Each page's versions keep the server's order (newest first per key); its
        delete markers follow them. A bucket without versioning lists each object once,
        ``version_id`` None.
        """
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self._list_prefix(prefix),
            "MaxKeys": self.list_page_size,
        }
        while True:
            try:
                page = self.client.list_object_versions(**arguments)
            except _BOTO_ERRORS as error:
                raise self._error(error, f"listing versions of {prefix!r}") from error
            entries = [(item, False) for item in page.get("Versions", [])]
            entries += [(item, True) for item in page.get("DeleteMarkers", [])]
            for item, is_marker in entries:
                yield ObjectVersion(
                    key=self._relative_key(item["Key"]),
                    version_id=_version(item.get("VersionId")),
                    size=int(item.get("Size", 0)),
                    modified=_aware(item["LastModified"]),
                    is_latest=bool(item.get("IsLatest")),
                    is_delete_marker=is_marker,
                )
            if not page.get("IsTruncated"):
                return
            arguments["KeyMarker"] = page.get("NextKeyMarker")
            arguments["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def head_version(self, key: str, version_id: str) -> ObjectInfo:
        """Describe one version of ``key``. Raises: ObjectNotFound, as :meth:`head`."""
        return self._head(key, version_id)

    def delete_version(self, key: str, version_id: str) -> None:
        """Remove one version of ``key`` for good (not a delete marker).

        Raises:
            ObjectLocked: the version is under a retention that has not ended.
            StoreAuthError: refused for another reason (the key lacks the right).
            StoreNotFound, StoreUnavailable.
        """
        self._delete_version(key, version_id)

    def _delete_version(self, key: str, version_id: str, client=None) -> None:
        client = client or self.client
        full_key = self._full_key(key)
        try:
            client.delete_object(Bucket=self.bucket, Key=full_key, VersionId=version_id)
        except _BOTO_ERRORS as error:
            translated = self._error(error, f"deleting {key!r} version {version_id}", key)
            if isinstance(translated, StoreAuthError):
                retain_until = self._retention_of(key, version_id, client)
                if retain_until is not None and retain_until > datetime.now(UTC):
                    raise ObjectLocked(
                        self.name,
                        f"{key!r} version {version_id} is locked until "
                        f"{retain_until.isoformat()} (Object Lock); it cannot be deleted before",
                        key=key,
                    ) from error
            raise translated from error

    def _retention_of(self, key: str, version_id: str, client=None) -> datetime | None:
        with contextlib.suppress(StoreError):
            return self._head(key, version_id, client).retain_until
        return None

    # --- bucket ------------------------------------------------------------------------

    def ensure_bucket(self, object_lock: bool = False) -> bool:
        """Create the bucket if it is missing (with Object Lock, hence versioning, if asked).

        Returns True if the bucket was created. An existing bucket is left as it is; if
        ``object_lock`` is asked of an existing bucket without it, raises
        :class:`ObjectLockUnsupported` (Object Lock can only be chosen at creation).

        Raises: ObjectLockUnsupported, StoreAuthError, StoreUnavailable, StoreError.
        """
        if self._bucket_exists():
            if object_lock and not self._bucket_has_object_lock():
                raise ObjectLockUnsupported(
                    self.name,
                    f"bucket {self.bucket!r} exists without Object Lock, which can only be "
                    "enabled when a bucket is created; use a new bucket",
                )
            return False
        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if object_lock:
            arguments["ObjectLockEnabledForBucket"] = True
        if self.region != DEFAULT_REGION:
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._bucket_client.create_bucket(**arguments)
        except botocore.exceptions.ClientError as error:
            if error_code(error)[0] not in ("BucketAlreadyOwnedByYou",):
                raise self._error(error, f"creating bucket {self.bucket!r}") from error
            return False
        except _BOTOCORE_FAILURES as error:
            raise self._error(error, f"creating bucket {self.bucket!r}") from error
        with self._object_lock_lock:
            self._object_lock = object_lock
        return True

    def create_if_missing(self, *, object_lock: bool = False) -> bool:
        """See :meth:`Store.create_if_missing`: :meth:`ensure_bucket`."""
        return self.ensure_bucket(object_lock)

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists. Raises StoreAuthError, StoreUnavailable, StoreError."""
        try:
            self._bucket_client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as error:
            if error_code(error)[0] in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise self._error(error, f"looking for bucket {self.bucket!r}") from error
        except _BOTOCORE_FAILURES as error:
            raise self._error(error, f"looking for bucket {self.bucket!r}") from error
        return True

    def _bucket_has_object_lock(self) -> bool:
        try:
            response = self._bucket_client.get_object_lock_configuration(Bucket=self.bucket)
        except botocore.exceptions.ClientError as error:
            code, _, status = error_code(error)
            if code == NO_LOCK_CONFIGURATION or (status == 404 and code != "NoSuchBucket"):
                return False
            raise self._error(error, "reading the bucket's Object Lock configuration") from error
        except _BOTOCORE_FAILURES as error:
            raise self._error(error, "reading the bucket's Object Lock configuration") from error
        enabled = response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        return enabled == "Enabled"

    def default_retention_days(self) -> int | None:
        """The bucket's default COMPLIANCE retention in days (None: none, or not COMPLIANCE
        in days). Raises StoreAuthError, StoreUnavailable, StoreNotFound."""
        try:
            answer = self._bucket_client.get_object_lock_configuration(Bucket=self.bucket)
        except _BOTO_ERRORS as error:
            if isinstance(error, botocore.exceptions.ClientError) and \
                    error_code(error)[0] == NO_LOCK_CONFIGURATION:
                return None
            raise self._error(error, "reading the bucket's default retention") from error
        rule = (answer.get("ObjectLockConfiguration") or {}).get("Rule") or {}
        default = rule.get("DefaultRetention") or {}
        if default.get("Mode") != "COMPLIANCE":
            return None
        return default.get("Days")

    def set_default_retention(self, days: int) -> None:
        """Lock every new object of the bucket for ``days`` (COMPLIANCE) unless its put
        says otherwise. Needs the store's own keys. Raises as :meth:`default_retention_days`.
        """
        if days < 1:
            raise ValueError("a default retention is at least one day")
        try:
            self._bucket_client.put_object_lock_configuration(
                Bucket=self.bucket, ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": days}}})
        except _BOTO_ERRORS as error:
            raise self._error(error, "setting the bucket's default retention") from error

    @property
    def supports_object_lock(self) -> bool:
        """Whether the bucket has Object Lock (asked of the bucket once if not declared).

        Raises: StoreAuthError, StoreUnavailable, StoreNotFound (when it has to ask).
        """
        with self._object_lock_lock:
            if self._object_lock is None:
                self._object_lock = self._bucket_has_object_lock()
            return self._object_lock

    def _bucket_versioning(self) -> bool:
        try:
            response = self._bucket_client.get_bucket_versioning(Bucket=self.bucket)
        except _BOTO_ERRORS as error:
            raise self._error(error, "reading the bucket's versioning") from error
        return response.get("Status") == "Enabled"

    def check(self) -> StoreCheck:
        """See :meth:`Store.check`. The probe object is removed version and all.

        Each request waits at most ``check_timeout`` seconds for an answer, so a server
        that accepts connections but never answers fails the check in bounded time.
        """
        started = time.monotonic()
        client = self._bucket_client
        try:
            client.list_objects_v2(Bucket=self.bucket, Prefix=self._list_prefix(""), MaxKeys=1)
        except _BOTO_ERRORS as error:
            translated = self._error(error, f"listing bucket {self.bucket!r}")
            if isinstance(translated, StoreNotFound):
                translated = StoreNotFound(
                    self.name, f"{translated.cause}; drd store add creates a missing bucket"
                )
            raise translated from error
        probe_key = f"drd-probe-{secrets.token_hex(8)}"
        payload = secrets.token_bytes(64)
        full_key = self._full_key(probe_key)
        try:
            response = client.put_object(Bucket=self.bucket, Key=full_key, Body=payload)
        except _BOTO_ERRORS as error:
            raise self._error(error, "writing a probe object", probe_key) from error
        try:
            try:
                body = client.get_object(Bucket=self.bucket, Key=full_key)["Body"]
                with contextlib.closing(body):
                    read_back = body.read()
            except (*_BOTO_ERRORS, OSError) as error:
                raise self._error(error, "reading the probe object", probe_key) from error
            if read_back != payload:
                raise StoreError(self.name, "the probe object read back differently")
        finally:
            self._remove_probe(probe_key, response.get("VersionId"))
        object_lock = self._bucket_has_object_lock()
        with self._object_lock_lock:
            self._object_lock = object_lock
        return StoreCheck(
            name=self.name,
            location=self.location,
            object_lock=object_lock,
            versioning=self._bucket_versioning(),
            seconds=time.monotonic() - started,
        )

    def _remove_probe(self, key: str, version_id: str | None) -> None:
        client = self._bucket_client
        if version_id and version_id != "null":
            try:
                self._delete_version(key, version_id, client)
                return
            except ObjectLocked:
                pass  # a default retention on the bucket; a delete marker is all we can do
        try:
            client.delete_object(Bucket=self.bucket, Key=self._full_key(key))
        except _BOTO_ERRORS as error:
            raise self._error(error, "removing the probe object", key) from error

    # --- copies and restic ---------------------------------------------------------------

    def copy_from(self, source: Store, key: str, *, retain_until: datetime | None = None) -> int:
        """See :meth:`Store.copy_from`: a server-side copy when ``source`` is an S3 store on
        the same endpoint with the same access key, else a bounded-memory stream.

        A copy with ``retain_until`` into another bucket is streamed: SeaweedFS drops the
        Object Lock headers of a server-side copy between buckets (without an error),
        which would leave unlocked an object the caller believes locked.
        """
        origin = source.unwrap()
        if not (
            isinstance(origin, S3Store)
            and origin.endpoint == self.endpoint
            and origin.access_key_id == self.access_key_id
            and (retain_until is None or origin.bucket == self.bucket)
        ):
            return super().copy_from(source, key, retain_until=retain_until)
        self._check_lock_possible(key, retain_until)
        size = origin.head(key).size
        extra = self._lock_arguments(retain_until)
        try:
            self.client.copy(
                {"Bucket": origin.bucket, "Key": origin._full_key(key)},
                self.bucket,
                self._full_key(key),
                ExtraArgs=extra or None,
                Config=self.transfer_config,
            )
        except _BOTO_ERRORS as error:
            raise self._error(error, f"copying {key!r} from {origin.name!r}", key) from error
        return size

    def restic_location(self, subpath: str = "") -> tuple[str, dict[str, Secret]]:
        """``s3:<endpoint>/<bucket>/<prefix>/<subpath>`` and the AWS environment."""
        parts = [self.bucket, self.prefix, validate_key(subpath) if subpath else ""]
        repository = "s3:" + self.endpoint + "/" + "/".join(part for part in parts if part)
        environment = {
            "AWS_ACCESS_KEY_ID": Secret(self.access_key_id),
            "AWS_SECRET_ACCESS_KEY": self._secret,
            "AWS_DEFAULT_REGION": Secret(self.region),
        }
        return repository, environment


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _version(version_id: str | None) -> str | None:
    return None if version_id in (None, "", "null") else version_id

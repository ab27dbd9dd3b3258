"""Store URLs (``s3://BUCKET/PREFIX``, ``file:///PATH``): parsing, validation, opening.

Parsing and validation are pure and raise :class:`~drd.errors.UserError` with a message
that says what is wrong and what a good value looks like. :func:`open_store` is the one
place where a configured store becomes a live :class:`~drd.stores.base.Store`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from drd.errors import UserError
from drd.secrets import Secret
from drd.stores.base import Store
from drd.stores.filesystem import FilesystemStore
from drd.stores.retry import RetryingStore

URL_FORMS = "s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH"

_BUCKET_CHARACTERS = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(frozen=True)
class StoreSpec:
    """A store as configured: ``drd store add NAME --url URL --endpoint E --region R``."""

    name: str
    url: str
    endpoint: str | None = None
    region: str | None = None
    object_lock: bool = False


@dataclass(frozen=True)
class ParsedUrl:
    """A parsed store URL. S3: ``bucket`` and ``prefix`` (no outer slashes, may be empty),
    ``path`` None. File: ``path`` (absolute), ``bucket`` None, ``prefix`` empty."""

    kind: Literal["s3", "file"]
    bucket: str | None = None
    prefix: str = ""
    path: str | None = None


def validate_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if it follows S3's bucket naming rules, else raise UserError."""
    problem = None
    if not 3 <= len(bucket) <= 63:
        problem = "must be 3 to 63 characters long"
    elif not _BUCKET_CHARACTERS.match(bucket):
        problem = (
            "may hold only lowercase letters, digits, '.' and '-', and must begin and end "
            "with a letter or digit"
        )
    elif ".." in bucket:
        problem = "must not contain two adjacent dots"
    elif _is_ip_address(bucket):
        problem = "must not look like an IP address"
    elif bucket.startswith(_RESERVED_BUCKET_PREFIXES) or bucket.endswith(_RESERVED_BUCKET_SUFFIXES):
        problem = "uses a prefix or suffix that S3 reserves"
    if problem:
        raise UserError(f"invalid bucket name {bucket!r}: it {problem}")
    return bucket


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_store_url(url: str) -> ParsedUrl:
    """Parse ``s3://BUCKET[/PREFIX]`` or ``file:///ABSOLUTE/PATH`` (pure).

    Raises:
        UserError: an unknown scheme, a missing or invalid bucket, credentials, a port,
            a query or fragment in the URL, ``.``/``..`` or empty prefix parts, a relative
            or remote file path. The message says what a good URL looks like.
    """
    text = (url or "").strip()
    if not text:
        raise UserError(f"empty store URL; expected {URL_FORMS}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return _parse_s3(text, parts)
    if scheme == "file":
        return _parse_file(text, parts)
    shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    raise UserError(f"store URL {text!r} has {shown}; expected {URL_FORMS}")


def _parse_s3(text: str, parts) -> ParsedUrl:
    if parts.query or parts.fragment:
        raise UserError(f"store URL {text!r}: no '?' or '#' allowed; expected {URL_FORMS}")
    if "@" in parts.netloc:
        raise UserError(
            f"store URL {text!r} carries credentials; give the keys in AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or --access-key-id and --secret-access-key-file) instead"
        )
    if ":" in parts.netloc:
        raise UserError(
            f"store URL {text!r}: the bucket comes after s3:// without a port; the server "
            "goes in --endpoint (e.g. --endpoint http://127.0.0.1:8333)"
        )
    bucket = parts.netloc
    if not bucket:
        raise UserError(f"store URL {text!r} names no bucket; expected s3://BUCKET[/PREFIX]")
    validate_bucket_name(bucket)
    prefix = parts.path.strip("/")
    if prefix:
        for part in prefix.split("/"):
            if part in ("", ".", ".."):
                raise UserError(
                    f"store URL {text!r}: the prefix {prefix!r} has an empty, '.' or '..' part"
                )
    return ParsedUrl(kind="s3", bucket=bucket, prefix=prefix)


def _parse_file(text: str, parts) -> ParsedUrl:
    if parts.query or parts.fragment:
        raise UserError(f"store URL {text!r}: no '?' or '#' allowed; expected file:///PATH")
    if parts.netloc not in ("", "localhost"):
        raise UserError(
            f"store URL {text!r}: {parts.netloc!r} is read as a host; a file store needs an "
            "absolute local path with three slashes, e.g. file:///srv/backups"
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise UserError(
            f"store URL {text!r} has a relative path; use an absolute one, e.g. file:///srv/backups"
        )
    if "\x00" in path or any(part in (".", "..") for part in path.split("/")):
        raise UserError(f"store URL {text!r}: the path must not contain '.', '..' or NUL")
    normalized = "/" + "/".join(part for part in path.split("/") if part)
    return ParsedUrl(kind="file", path=normalized)


def validate_endpoint(endpoint: str) -> str:
    """Return the endpoint without a trailing slash if it is ``http(s)://HOST[:PORT]``.

    Raises:
        UserError: another scheme, no host, credentials, a path, query or fragment.
    """
    parts = urlsplit(endpoint.strip())
    good = "e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:8333"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"invalid endpoint {endpoint!r}: expected http(s)://HOST[:PORT], {good}")
    if parts.username or parts.password:
        raise UserError(
            "invalid endpoint: it carries credentials; give the keys in AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY instead"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise UserError(
            f"invalid endpoint {endpoint!r}: no path, query or fragment allowed; the bucket "
            "and prefix go in --url"
        )
    try:
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as error:
        raise UserError(f"invalid endpoint {endpoint!r}: {error}") from error
    return f"{parts.scheme}://{parts.netloc}"


def validate_spec(spec: StoreSpec) -> ParsedUrl:
    """Check a whole store specification (pure): the URL, and the options its kind needs.

    Raises:
        UserError: a bad URL; an S3 store without an endpoint or with a bad one; a file
            store with an endpoint or Object Lock.
    """
    try:
        parsed = parse_store_url(spec.url)
        if parsed.kind == "s3":
            if not spec.endpoint:
                raise UserError(
                    "an s3:// store needs --endpoint URL "
                    "(e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:8333)"
                )
            validate_endpoint(spec.endpoint)
        else:
            # A region still matters for a file store (a mount of another site's storage):
            # policies count regions.
            if spec.endpoint:
                raise UserError("--endpoint applies to s3:// stores only")
            if spec.object_lock:
                raise UserError(
                    "a file:// store cannot have Object Lock; use an S3 store for the "
                    "immutable copy"
                )
    except UserError as error:
        raise UserError(f"store {spec.name!r}: {error}") from error
    return parsed


def open_store(
    spec: StoreSpec,
    access_key_id: str | None,
    secret_access_key: Secret | None,
    *,
    retry_attempts: int = 3,
    retry_backoff: float = 1.0,
    **s3_options: Any,
) -> Store:
    """Open the store ``spec`` describes, wrapped in a :class:`RetryingStore`.

    Args:
        spec: the configured store.
        access_key_id, secret_access_key: the S3 keys (ignored for file stores).
        retry_attempts, retry_backoff: the operation-level retries (1: none).
        s3_options: passed on to :class:`~drd.stores.s3.S3Store` (timeouts, botocore
            ``max_attempts``, multipart sizes, ``list_page_size``, ...).

    Raises:
        UserError: a bad spec (see :func:`validate_spec`), or an S3 store without keys.
    """
    parsed = validate_spec(spec)
    if parsed.kind == "file":
        store: Store = FilesystemStore(spec.name, parsed.path)
    else:
        if not access_key_id or not secret_access_key:
            raise UserError(
                f"store {spec.name!r} needs S3 keys: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or --access-key-id and --secret-access-key-file)"
            )
        from drd.stores.s3 import S3Store  # boto3 loads slowly; file stores do not need it

        store = S3Store(
            spec.name,
            endpoint=validate_endpoint(spec.endpoint),
            bucket=parsed.bucket,
            prefix=parsed.prefix,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            region=spec.region or "us-east-1",
            object_lock=True if spec.object_lock else None,
            **s3_options,
        )
    return RetryingStore(store, attempts=retry_attempts, backoff=retry_backoff)

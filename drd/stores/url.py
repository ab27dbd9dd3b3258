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
from drd.secrets import REDACTED, Secret, mask
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


def redact_url(text: str) -> str:
    """``text`` fit for a message or a log line: any user-info (``user:password@``) in
    front of the host becomes ``**redacted**@`` (pure; works on text no URL parser takes).

    A password may hold ``/``, ``?`` or ``#``, which end the host part for a URL parser;
    so when the host part has a ``:`` and an ``@`` follows later, everything up to the
    last ``@`` is redacted. That may hide more than the credentials, never less.
    """
    span = _user_info_span(text)
    if span is not None:
        start, end = span
        text = f"{text[:start]}{REDACTED}{text[end:]}"
    return mask(text)


def _user_info_span(text: str) -> tuple[int, int] | None:
    """Where the user-info of URL ``text`` starts and where its closing ``@`` is, or None."""
    _, separator, rest = text.partition("://")
    if not separator:
        rest = text
    start = len(text) - len(rest)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return start, start + authority.rindex("@")
    if ":" in authority and "@" in rest:
        return start, start + rest.rindex("@")
    return None


def _split(text: str, shown: str, what: str, expected: str):
    """``urlsplit(text)`` with its ValueError (a lone ``[``, a bad IPv6 host) as UserError."""
    try:
        parts = urlsplit(text)
        parts.hostname  # noqa: B018 -- checks a bracketed host
    except ValueError as error:
        # The parser's own text may quote the host; the message says it in other words.
        bracketed = "[" in text or "]" in text or "IPv6" in str(error)
        reason = "an unbalanced '[' or ']', or a bad IPv6 address" if bracketed else "a bad host"
        raise UserError(
            f"{what} {shown!r} is not a valid URL ({reason}); expected {expected}"
        ) from None
    return parts


def parse_store_url(url: str) -> ParsedUrl:
    """Parse ``s3://BUCKET[/PREFIX]`` or ``file:///ABSOLUTE/PATH`` (pure).

    Raises:
        UserError: an unknown scheme, a missing or invalid bucket, credentials, a port,
            a query or fragment in the URL, ``.``/``..`` or empty prefix parts, a relative
            or remote file path, text that is no URL. The message says what a good URL
            looks like, and never repeats credentials found in the URL.
    """
    text = (url or "").strip()
    if not text:
        raise UserError(f"empty store URL; expected {URL_FORMS}")
    shown = redact_url(text)
    if _user_info_span(text) is not None:
        if text.lower().startswith("file:"):
            where_keys_go = f"a file store takes none; expected {URL_FORMS}"
        else:
            where_keys_go = (
                "give the keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or --access-key-id and --secret-access-key-file) instead"
            )
        raise UserError(f"store URL {shown!r} carries credentials; {where_keys_go}")
    parts = _split(text, shown, "store URL", URL_FORMS)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return _parse_s3(shown, parts)
    if scheme == "file":
        return _parse_file(shown, parts)
    shown_scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    raise UserError(f"store URL {shown!r} has {shown_scheme}; expected {URL_FORMS}")


# Below, ``shown`` is the URL with any credentials redacted, and ``parts`` has none
# (parse_store_url refused them), so the host and path may be quoted.


def _parse_s3(shown: str, parts) -> ParsedUrl:
    if parts.query or parts.fragment:
        raise UserError(f"store URL {shown!r}: no '?' or '#' allowed; expected {URL_FORMS}")
    if ":" in parts.netloc:
        raise UserError(
            f"store URL {shown!r}: the bucket comes after s3:// without a port; the server "
            "goes in --endpoint (e.g. --endpoint http://127.0.0.1:8333)"
        )
    bucket = parts.netloc
    if not bucket:
        raise UserError(f"store URL {shown!r} names no bucket; expected s3://BUCKET[/PREFIX]")
    validate_bucket_name(bucket)
    prefix = parts.path.strip("/")
    if prefix:
        for part in prefix.split("/"):
            if part in ("", ".", ".."):
                raise UserError(
                    f"store URL {shown!r}: the prefix {prefix!r} has an empty, '.' or '..' part"
                )
    return ParsedUrl(kind="s3", bucket=bucket, prefix=prefix)


def _parse_file(shown: str, parts) -> ParsedUrl:
    if parts.query or parts.fragment:
        raise UserError(f"store URL {shown!r}: no '?' or '#' allowed; expected file:///PATH")
    if parts.netloc not in ("", "localhost"):
        raise UserError(
            f"store URL {shown!r}: {parts.netloc!r} is read as a host; a file store needs an "
            "absolute local path with three slashes, e.g. file:///srv/backups"
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise UserError(
            f"store URL {shown!r} has a relative path; use an absolute one, e.g. file:///srv/backups"
        )
    if "\x00" in path or any(part in (".", "..") for part in path.split("/")):
        raise UserError(f"store URL {shown!r}: the path must not contain '.', '..' or NUL")
    normalized = "/" + "/".join(part for part in path.split("/") if part)
    return ParsedUrl(kind="file", path=normalized)


_GOOD_ENDPOINTS = "e.g. https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:8333"


def validate_endpoint(endpoint: str) -> str:
    """Return the endpoint without a trailing slash if it is ``http(s)://HOST[:PORT]``.

    Raises:
        UserError: credentials, another scheme, no host, a bad port, a path, query or
            fragment, text that is no URL. The message never repeats the credentials.
    """
    text = endpoint.strip()
    shown = redact_url(text)
    if _user_info_span(text) is not None:
        raise UserError(
            f"invalid endpoint {shown!r}: it carries credentials; give the keys in "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    expected = f"http(s)://HOST[:PORT], {_GOOD_ENDPOINTS}"
    parts = _split(text, shown, "endpoint", expected)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"invalid endpoint {shown!r}: expected {expected}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise UserError(
            f"invalid endpoint {shown!r}: no path, query or fragment allowed; the bucket "
            "and prefix go in --url"
        )
    try:
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as error:
        raise UserError(f"invalid endpoint {shown!r}: {error}") from None
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

    The RetryingStore is the one retry layer: botocore makes one attempt per request
    (``max_attempts=1`` unless given), so an unresponsive server costs at most
    ``retry_attempts`` timeouts, not ``retry_attempts`` times botocore's own retries.

    Args:
        spec: the configured store.
        access_key_id, secret_access_key: the S3 keys (ignored for file stores).
        retry_attempts, retry_backoff: the operation-level retries (1: none).
        s3_options: passed on to :class:`~drd.stores.s3.S3Store` (timeouts, multipart
            sizes, ``list_page_size``, ...).

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

        s3_options.setdefault("max_attempts", 1)
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

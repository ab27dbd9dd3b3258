"""Botocore failures translated into store errors (pure: no request is made).

S3 servers answer with an error code (``NoSuchKey``, ``SignatureDoesNotMatch``, ...) and
an HTTP status; a HEAD has no body, so only the status (``"404"``, ``"403"``). Connection
failures come as botocore exceptions. Each becomes one typed :class:`StoreError`.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import botocore.exceptions
import botocore.parsers

from drd.secrets import Secret, mask
from drd.stores.errors import (
    ObjectLockUnsupported,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "Forbidden",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
    "AllAccessDisabled",
}
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "TooManyRequests",
    "500",
    "502",
    "503",
    "504",
}
NO_LOCK_CONFIGURATION = "ObjectLockConfigurationNotFoundError"


def error_code(error: botocore.exceptions.ClientError) -> tuple[str, str, int]:
    """``(code, message, http_status)`` of a ClientError (empty/0 where absent)."""
    response = error.response or {}
    details = response.get("Error", {})
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(details.get("Code", "") or status or ""), str(details.get("Message", "")), status


def translate_error(
    store: str,
    error: Exception,
    *,
    doing: str,
    key: str | None = None,
    bucket: str | None = None,
    endpoint: str | None = None,
    secrets_to_mask: tuple[Secret | str | None, ...] = (),
) -> StoreError:
    """Turn a botocore exception met while ``doing`` something into a :class:`StoreError`.

    Pure: no request is made. ``AccessDenied`` becomes :class:`StoreAuthError` here; a
    caller that knows the object is locked (``delete_version``) makes it
    :class:`ObjectLocked`. A 404 without a ``key`` is about the bucket:
    :class:`StoreNotFound`. Connection failures name ``endpoint`` and the cause
    (``cannot reach http://127.0.0.1:8333 (connection refused)``), not botocore's request
    URL. Any secret in the server's text is masked.
    """
    if isinstance(error, botocore.exceptions.ClientError):
        code, message, status = error_code(error)
        detail = mask(f"{code}: {message}" if message else code, secrets_to_mask)
        named = f"bucket {bucket!r}" if bucket else "the bucket"
        if code in _NOT_FOUND_CODES and key is None:
            return bucket_not_found(store, bucket, _shown_endpoint(endpoint, error), detail)
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(store, f"object {key!r} not found ({detail})", key=key)
        if code == "NoSuchBucket":
            shown = _shown_endpoint(endpoint, error)
            where = f" at {shown}" if shown else ""
            return StoreNotFound(store, f"{named} does not exist{where} ({detail})", key=key)
        if code in _AUTH_CODES or status == 403:
            return StoreAuthError(
                store,
                f"{doing}: access denied ({detail}); check the access key, the secret key "
                "and the key's rights on the bucket",
                key=key,
            )
        if code in _TRANSIENT_CODES or status >= 500:
            return StoreUnavailable(store, f"{doing}: server error ({detail})", key=key)
        if code == NO_LOCK_CONFIGURATION or "objectlock" in (code + message).lower().replace(
            " ", ""
        ):
            return ObjectLockUnsupported(
                store, f"{doing}: the bucket has no Object Lock ({detail})", key=key
            )
        return StoreError(store, f"{doing} failed ({detail})", key=key)
    if isinstance(error, _UNREACHABLE):
        shown = _shown_endpoint(endpoint, error) or "the store"
        cause = mask(_connection_cause(error), secrets_to_mask)
        return StoreUnavailable(store, f"cannot reach {shown} ({cause})", key=key)
    if isinstance(error, _BROKEN_OFF):
        shown = _shown_endpoint(endpoint, error)
        cause = mask(_transfer_cause(error), secrets_to_mask)
        where = f" from {shown}" if shown else ""
        return StoreUnavailable(store, f"{doing}: {cause}{where}", key=key)
    if isinstance(error, botocore.parsers.ResponseParserError):
        shown = _shown_endpoint(endpoint, error) or "the endpoint"
        return StoreError(
            store, f"{doing}: {shown} answered, but not as an S3 server; is it the right endpoint?"
        )
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return StoreAuthError(store, f"{doing}: no credentials configured", key=key)
    detail = mask(f"{type(error).__name__}: {error}", secrets_to_mask)
    return StoreError(store, f"{doing} failed ({detail})", key=key)


def bucket_not_found(
    store: str,
    bucket: str | None,
    endpoint: str | None,
    detail: str = "",
    *,
    key: str | None = None,
) -> StoreNotFound:
    """The error for a bare 404 about the bucket: no such bucket, or a wrong endpoint
    (another server, a port that is not the S3 one, answers 404 to everything)."""
    named = f"bucket {bucket!r}" if bucket else "the bucket"
    where = f" at {endpoint}" if endpoint else ""
    answer = f" ({detail})" if detail else ""
    return StoreNotFound(
        store,
        f"{named} not found{where}{answer}: it does not exist, or the endpoint is not the "
        "right server",
        key=key,
    )


# No connection was made: the store cannot be reached at all.
_UNREACHABLE = (botocore.exceptions.ConnectionError, ConnectionRefusedError)
# A connection was made, but the answer did not come, or not whole.
_BROKEN_OFF = (
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    ConnectionError,
    TimeoutError,
)
_READ_TIMEOUT = re.compile(r"read timeout=([0-9.]+)")


def _shown_endpoint(endpoint: str | None, error: Exception) -> str | None:
    """The endpoint as ``scheme://host:port``: given, or taken from botocore's request URL
    (whose path and query say nothing to a user); never with credentials. None if unknown.
    """
    if not endpoint:
        url = str(_botocore_arguments(error).get("endpoint_url") or "")
        try:
            parts = urlsplit(url)
            host = parts.netloc.rpartition("@")[2]
            endpoint = f"{parts.scheme}://{host}" if host else None
        except ValueError:
            endpoint = None
    return mask(endpoint) if endpoint else None


def _botocore_arguments(error: BaseException) -> dict:
    arguments = getattr(error, "kwargs", None)
    return arguments if isinstance(arguments, dict) else {}


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what lies under it: botocore's wrapped ``error``, causes, contexts."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = _botocore_arguments(current).get("error")
        if isinstance(wrapped, BaseException):
            pending.append(wrapped)
        pending += [current.__cause__, current.__context__]


def _socket_cause(error: BaseException) -> str | None:
    """The operating system's word for the failure under ``error`` (e.g. "connection
    refused", "host name not found"), or None."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return "host name not found"
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "verify_message", None) or cause.reason or "handshake failed"
            return f"TLS: {str(reason).lower()}"
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            text = cause.strerror or os.strerror(cause.errno)
            return text[:1].lower() + text[1:]
    return None


def _connection_cause(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ProxyConnectionError):
        return "the proxy cannot be reached"
    if isinstance(error, botocore.exceptions.ConnectTimeoutError):
        return "connection timed out"
    return _socket_cause(error) or "connection failed"


def _transfer_cause(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ReadTimeoutError | TimeoutError):
        for cause in _causes(error):
            match = _READ_TIMEOUT.search(str(cause))
            if match:
                return f"no answer within {float(match[1]):g} s"
        return "no answer in time"
    if isinstance(error, botocore.exceptions.ConnectionClosedError):
        return "the server closed the connection without an answer"
    cause = _socket_cause(error)
    return f"the transfer broke off ({cause})" if cause else "the transfer broke off"

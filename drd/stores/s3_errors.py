"""Botocore failures translated into store errors (pure: no request is made).

S3 servers answer with an error code (``NoSuchKey``, ``SignatureDoesNotMatch``, ...) and
an HTTP status; a HEAD has no body, so only the status (``"404"``, ``"403"``). Connection
failures come as botocore exceptions. Each becomes one typed :class:`StoreError`.
"""

from __future__ import annotations

import botocore.exceptions

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
    secrets_to_mask: tuple[Secret | str | None, ...] = (),
) -> StoreError:
    """Turn a botocore exception met while ``doing`` something into a :class:`StoreError`.

    Pure: no request is made. ``AccessDenied`` becomes :class:`StoreAuthError` here; a
    caller that knows the object is locked (``delete_version``) makes it
    :class:`ObjectLocked`. Any secret in the server's text is masked.
    """
    if isinstance(error, botocore.exceptions.ClientError):
        code, message, status = error_code(error)
        detail = mask(f"{code}: {message}" if message else code, secrets_to_mask)
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(store, f"object {key!r} not found ({detail})", key=key)
        if code == "NoSuchBucket":
            named = f"bucket {bucket!r}" if bucket else "the bucket"
            return StoreNotFound(store, f"{named} does not exist ({detail})", key=key)
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
    if isinstance(
        error,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.IncompleteReadError
        | ConnectionError
        | TimeoutError,
    ):
        detail = mask(str(error), secrets_to_mask)
        return StoreUnavailable(store, f"{doing}: cannot reach the store ({detail})", key=key)
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return StoreAuthError(store, f"{doing}: no credentials configured", key=key)
    detail = mask(f"{type(error).__name__}: {error}", secrets_to_mask)
    return StoreError(store, f"{doing} failed ({detail})", key=key)

"""The errors every store raises, whatever its kind (S3, filesystem).

Each is a :class:`StoreError`, an :class:`~drd.errors.OperationError` (exit status 1).
Its message is one line that names the store and the cause, and never carries a secret::

    store 'dc-a': authentication failed (SignatureDoesNotMatch): check the access key ...

Callers branch on the type, never on the text: :class:`ObjectNotFound` is an answer,
:class:`StoreUnavailable` is worth a retry (see :mod:`drd.stores.retry`), the others are not.
"""

from __future__ import annotations

from drd.errors import OperationError


class StoreError(OperationError):
    """A store operation failed. ``store`` is the store's name, ``key`` the object if any."""

    def __init__(self, store: str, cause: str, *, key: str | None = None) -> None:
        self.store = store
        self.key = key
        self.cause = " ".join(cause.split())  # one line, whatever the server sent
        super().__init__(f"store {store!r}: {self.cause}")


class ObjectNotFound(StoreError):
    """No object under the key (or the byte range asked for lies in no object)."""


class StoreNotFound(StoreError):
    """The bucket or directory that holds the store does not exist."""


class StoreAuthError(StoreError):
    """The store refused the credentials, or they lack the right for this operation."""


class StoreUnavailable(StoreError):
    """The store could not be reached or failed transiently (connection, timeout, 5xx).

    The only error that :class:`~drd.stores.retry.RetryingStore` retries.
    """


class ObjectExists(StoreError):
    """A create-only put (``create_only=True``) found an object under the key already."""


class ObjectLocked(StoreError):
    """The object (version) is under an Object Lock retention and cannot be deleted yet."""


class ObjectLockUnsupported(StoreError):
    """A retention was asked of a store (or bucket) that has no Object Lock."""


class InvalidKey(ValueError):
    """A key that no store accepts (empty, absolute, with ``.``/``..`` parts, ...).

    A programming error rather than a store failure, hence a ``ValueError``.
    """

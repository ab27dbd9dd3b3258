"""Stores: where the repositories' objects live (S3-compatible buckets, directories).

One interface (:class:`Store`, whose docstrings are the contract), two implementations
(:class:`~drd.stores.s3.S3Store`, :class:`FilesystemStore`), one wrapper
(:class:`RetryingStore`) and one way in from configuration (:func:`open_store`).
``drd.stores.s3`` is imported on demand, as boto3 takes a while to load.
"""

from drd.stores.base import ObjectInfo, Store, StoreCheck, validate_key
from drd.stores.errors import (
    InvalidKey,
    ObjectExists,
    ObjectLocked,
    ObjectLockUnsupported,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
)
from drd.stores.filesystem import FilesystemStore
from drd.stores.retry import RetryingStore
from drd.stores.url import ParsedUrl, StoreSpec, open_store, parse_store_url, validate_spec

__all__ = [
    "FilesystemStore",
    "InvalidKey",
    "ObjectExists",
    "ObjectInfo",
    "ObjectLockUnsupported",
    "ObjectLocked",
    "ObjectNotFound",
    "ParsedUrl",
    "RetryingStore",
    "Store",
    "StoreAuthError",
    "StoreCheck",
    "StoreError",
    "StoreNotFound",
    "StoreSpec",
    "StoreUnavailable",
    "open_store",
    "parse_store_url",
    "validate_key",
    "validate_spec",
]

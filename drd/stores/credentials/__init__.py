"""Credential brokers: each system's own keys in each store (see :mod:`.base`).

:func:`open_broker` is the one way in from the catalog's ``stores.credentials``;
:func:`detect_broker` chooses the kind when a store is added.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from drd.secrets import Secret
from drd.stores.credentials.base import (
    CredentialBroker,
    CredentialsUnsupported,
    Guarantees,
    IssuedCredential,
    RepositoryScope,
    principal_name,
)
from drd.stores.url import StoreSpec, parse_store_url

SHARED = "shared"
# the kinds that make a system's own keys (the others hand out the store's keys)
BROKERED_KINDS = ("seaweedfs", "aws-iam")
BROKER_KINDS = (*BROKERED_KINDS, SHARED)

SHARED_GUARANTEES = Guarantees(
    isolated=False, refuses_delete=False, refuses_overwrite=False, write_once=False,
    summary="shared: every agent gets the store's own keys -- any one of them can read, "
            "overwrite and delete every system's repository and the centre's catalog copies")

AWS_IAM_ENDPOINT = "https://iam.amazonaws.com"
AWS_CHINA_IAM_ENDPOINT = "https://iam.cn-north-1.amazonaws.com.cn"


def guarantees_of(kind: str | None) -> Guarantees:
    """What keys of a broker ``kind`` cannot do (pure; None and unknown kinds: nothing)."""
    from drd.stores.credentials.iam import AWS_GUARANTEES, SEAWEEDFS_GUARANTEES

    return {"seaweedfs": SEAWEEDFS_GUARANTEES, "aws-iam": AWS_GUARANTEES}.get(
        kind or "", SHARED_GUARANTEES)


def repository_scope(spec: StoreSpec, repository_path: str, system: str) -> RepositoryScope:
    """Where ``system``'s repository (``<department>/<system>``) lives in the store ``spec``."""
    parsed = parse_store_url(spec.url)
    if parsed.kind == "file":
        return RepositoryScope(store=spec.name, bucket="",
                               prefix=f"{parsed.path.strip('/')}/{repository_path}",
                               system=system)
    prefix = f"{parsed.prefix}/{repository_path}" if parsed.prefix else repository_path
    return RepositoryScope(store=spec.name, bucket=parsed.bucket, prefix=prefix, system=system)


def is_aws_endpoint(endpoint: str | None) -> bool:
    host = (urlsplit(endpoint).hostname or "") if endpoint else ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def default_iam_endpoint(kind: str, spec: StoreSpec) -> str | None:
    """The IAM API of a broker when the store does not name one: AWS's for AWS endpoints
    (China's for cn- regions), else the S3 endpoint itself (SeaweedFS, Ceph RGW)."""
    if kind == "aws-iam" and is_aws_endpoint(spec.endpoint):
        region = spec.region or ""
        return AWS_CHINA_IAM_ENDPOINT if region.startswith("cn-") else AWS_IAM_ENDPOINT
    return spec.endpoint


def open_broker(kind: str | None, spec: StoreSpec, access_key_id: str | None,
                secret_access_key: Secret | None, iam_endpoint: str | None = None,
                timeout: float = 10.0) -> CredentialBroker:
    """The broker of kind ``kind`` for the store ``spec``, using the store's own keys.

    Raises:
        CredentialsUnsupported: ``kind`` is None (not determined yet), ``shared`` (nothing
            to make: agents get the store's keys), unknown, or the store has no keys.
    """
    if kind not in BROKERED_KINDS:
        what = "not determined yet (run drd store check)" if kind is None else repr(kind)
        raise CredentialsUnsupported(spec.name, f"no credential broker: the store's is {what}")
    if not access_key_id or not secret_access_key:
        raise CredentialsUnsupported(spec.name, "the centre has no keys for this store: "
                                                "re-enter them with drd store set-keys")
    from drd.stores.credentials.iam import IamBroker  # boto3 loads slowly

    return IamBroker(spec.name, kind=kind,
                     iam_endpoint=iam_endpoint or default_iam_endpoint(kind, spec),
                     s3_endpoint=spec.endpoint or "", access_key_id=access_key_id,
                     secret_access_key=secret_access_key, region=spec.region, timeout=timeout)


def detect_broker(spec: StoreSpec, access_key_id: str | None,
                  secret_access_key: Secret | None, timeout: float = 10.0) -> str | None:
    """Which broker can make systems' keys in the store ``spec``; None when none can.

    File stores are ``shared`` (a directory cannot tell agents apart). An AWS endpoint is
    ``aws-iam``. Another S3 server is asked who it is: SeaweedFS says so in its ``Server``
    header; any other server is ``aws-iam`` if its endpoint answers the IAM API, else None
    (the administrator must choose ``--credentials shared`` knowingly).
    """
    if parse_store_url(spec.url).kind == "file":
        return SHARED
    if is_aws_endpoint(spec.endpoint):
        return "aws-iam"
    from drd.stores.credentials.probe import server_software, speaks_iam

    if "seaweedfs" in server_software(spec, timeout).lower():
        return "seaweedfs"
    if access_key_id and secret_access_key and speaks_iam(spec, access_key_id,
                                                           secret_access_key, timeout):
        return "aws-iam"
    return None


__all__ = [
    "BROKERED_KINDS",
    "BROKER_KINDS",
    "SHARED",
    "SHARED_GUARANTEES",
    "CredentialBroker",
    "CredentialsUnsupported",
    "Guarantees",
    "IssuedCredential",
    "RepositoryScope",
    "detect_broker",
    "guarantees_of",
    "open_broker",
    "principal_name",
    "repository_scope",
]

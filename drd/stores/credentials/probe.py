"""Asking an S3 server what it is, to choose its credential broker (one request each)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from drd.secrets import Secret
from drd.stores.url import StoreSpec


def server_software(spec: StoreSpec, timeout: float) -> str:
    """The ``Server`` header of an anonymous ``GET /`` to the store's endpoint ("" when it
    cannot be reached or sends none). Carries no credential."""
    parts = urlsplit(spec.endpoint or "")
    if not parts.hostname:
        return ""
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read(64 * 1024)
        return response.getheader("Server") or ""
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        connection.close()


def speaks_iam(spec: StoreSpec, access_key_id: str, secret_access_key: Secret,
               timeout: float) -> bool:
    """Whether the store's endpoint answers IAM's ``ListUsers`` with these keys."""
    client = boto3.session.Session().client(
        "iam", endpoint_url=spec.endpoint, aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key.reveal(),
        config=Config(region_name=spec.region or "us-east-1", connect_timeout=timeout,
                      read_timeout=timeout, retries={"total_max_attempts": 1}))
    try:
        client.list_users(MaxItems=1)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False
    return True

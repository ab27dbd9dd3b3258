"""Proving what a broker promises: a probe key tried as an attacker would use it.

A store that says it enforces a policy may not (an older server, a misread grammar, a
gateway in front that drops conditions). :func:`prove` makes a key for a throw-away
repository (``<store prefix>/_drd-probe/<random>``), then tries with it, and with the
store's own keys to set the scene, every right a backup needs and every right the
broker's :class:`~drd.stores.credentials.base.Guarantees` say a system's key lacks:

==========================  =====================================================
must work                   create an object; read it; list the repository;
                            write and delete a lock under ``locks/``
must be refused (isolated)  list the bucket; read an object outside the repository
must be refused (delete)    delete an object outside ``locks/``
must be refused (overwrite) replace an object without ``If-None-Match``
==========================  =====================================================

A promise the store does not keep, or a right a backup needs that it refuses, raises
:class:`~drd.stores.credentials.base.CredentialsUnsupported` naming it. The probe's user
is removed and its objects deleted with the store's keys afterwards (in a versioned
bucket their old versions stay: a few bytes each).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import boto3
import botocore.exceptions
from botocore.config import Config

from drd.secrets import Secret
from drd.stores.credentials.base import CredentialBroker, CredentialsUnsupported
from drd.stores.url import StoreSpec

PROBE_PREFIX = "_drd-probe"


@dataclass(frozen=True)
class Proof:
    """What the probe key could and could not do, in one line each."""

    allowed: tuple[str, ...]
    refused: tuple[str, ...]

    def summary(self) -> str:
        return (f"measured with a probe key: refused {', '.join(self.refused) or 'nothing'}; "
                f"allowed {', '.join(self.allowed)}")


def _client(spec: StoreSpec, access_key_id: str, secret: Secret):
    return boto3.session.Session().client(
        "s3", endpoint_url=spec.endpoint, aws_access_key_id=access_key_id,
        aws_secret_access_key=secret.reveal(),
        config=Config(region_name=spec.region or "us-east-1", connect_timeout=10,
                      read_timeout=20, retries={"total_max_attempts": 1},
                      s3={"addressing_style": "path"}))


def _done(call, **arguments) -> bool:
    try:
        call(**arguments)
    except botocore.exceptions.ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status in (403, 412) or error.response["Error"]["Code"] in (
                "AccessDenied", "PreconditionFailed"):
            return False
        raise
    return True


def prove(broker: CredentialBroker, spec: StoreSpec, admin_key_id: str,
          admin_secret: Secret) -> Proof:
    """Try a probe key in the store ``spec`` (see the module docstring).

    Raises:
        CredentialsUnsupported: a promise broken, or a needed right refused.
        StoreError: the store cannot be reached (from the broker).
    """
    from drd.stores.credentials import repository_scope

    token = secrets.token_hex(6)
    scope = repository_scope(spec, f"{PROBE_PREFIX}/{token}", f"probe-{token}")
    issued = broker.issue(scope)
    admin = _client(spec, admin_key_id, admin_secret)
    probe = _client(spec, issued.access_key_id, issued.secret_access_key)
    bucket, own = scope.bucket, scope.prefix
    outside = f"{own.rsplit('/', 1)[0]}/outside-{token}"
    allowed: list[str] = []
    refused: list[str] = []
    try:
        admin.put_object(Bucket=bucket, Key=outside, Body=b"not yours")
        trials = [
            ("create an object", True, lambda: probe.put_object(
                Bucket=bucket, Key=f"{own}/data/probe", Body=b"probe", IfNoneMatch="*")),
            ("read it", True, lambda: probe.get_object(Bucket=bucket, Key=f"{own}/data/probe")),
            ("list its repository", True, lambda: probe.list_objects_v2(
                Bucket=bucket, Prefix=f"{own}/")),
            ("write a lock", True, lambda: probe.put_object(
                Bucket=bucket, Key=f"{own}/locks/probe", Body=b"lock", IfNoneMatch="*")),
            ("delete a lock", True, lambda: probe.delete_object(
                Bucket=bucket, Key=f"{own}/locks/probe")),
            ("list the bucket", not broker.guarantees.isolated,
             lambda: probe.list_objects_v2(Bucket=bucket)),
            ("read outside its repository", not broker.guarantees.isolated,
             lambda: probe.get_object(Bucket=bucket, Key=outside)),
            ("delete its data", not broker.guarantees.refuses_delete,
             lambda: probe.delete_object(Bucket=bucket, Key=f"{own}/data/probe")),
            ("overwrite its data", not broker.guarantees.refuses_overwrite,
             lambda: probe.put_object(Bucket=bucket, Key=f"{own}/data/probe", Body=b"x")),
        ]
        for what, expected, call in trials:
            done = _done(call)
            (allowed if done else refused).append(what)
            if done != expected:
                verdict = ("allowed a system's key to" if done else
                           "refused a system's key the right to")
                raise CredentialsUnsupported(
                    spec.name, f"the store {verdict} {what}, against what its "
                               f"{broker.kind} credentials promise; check the store's "
                               "version and set-up (docs/administrators.md)")
    finally:
        broker.remove(issued.principal)
        for key in (outside, f"{own}/data/probe", f"{own}/locks/probe"):
            with contextlib.suppress(botocore.exceptions.BotoCoreError,
                                     botocore.exceptions.ClientError):
                admin.delete_object(Bucket=bucket, Key=key)
    return Proof(tuple(allowed), tuple(refused))

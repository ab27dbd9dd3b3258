"""The policy documents that scope a system's key to its repository (pure).

Two dialects of the same rights (see :mod:`drd.stores.credentials.base`):

``seaweedfs``
    SeaweedFS's IAM API (4.x, embedded in the S3 gateway) takes *Allow* statements only
    ("not a valid effect: 'Deny'"), and drops a statement whose condition it does not
    know (``s3:if-none-match``), so this dialect grants exactly what a backup needs and
    nothing else, with one condition it does evaluate: ``s3:prefix`` on listings. It
    cannot refuse an overwrite: Object Lock on the store keeps the good versions.
``aws``
    AWS IAM (and stores that evaluate AWS's policy grammar): the same grants, but a write
    outside ``locks/`` is allowed only when it carries ``If-None-Match`` (S3's conditional
    write), so an existing object cannot be replaced; the parts of a multipart upload are
    exempted through ``s3:ObjectCreationOperation``, as AWS documents ("Enforce
    conditional writes on Amazon S3 buckets").

Neither grants ``s3:DeleteObjectVersion``, ``s3:BypassGovernanceRetention``,
``s3:PutBucket*`` or ``s3:ListAllMyBuckets``; listing is allowed only with a prefix inside
the repository, so other systems' names are not even seen.

A store prefix may hold ``*``, ``?`` or ``$``, which a policy reads as wildcards or the
start of a variable: the ``aws`` dialect writes them as IAM's literals ``${*}``, ``${?}``,
``${$}``; SeaweedFS has no such escape, so its dialect refuses them (a wildcard there
would widen the key to other repositories). AWS caps the inline policies of a user at
2,048 characters without white space (:data:`AWS_USER_POLICY_LIMIT`,
:func:`policy_size`): a very long bucket name and repository prefix do not fit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from drd.stores.credentials.base import LOCKS, RepositoryScope

VERSION = "2012-10-17"
POLICY_NAME = "drd-repository"
DIALECTS = ("seaweedfs", "aws")

READ = ("s3:GetObject",)
# No s3:PutObjectRetention: with it a key could lock its objects until any date (SeaweedFS
# evaluates no cap on it), making its repository unprunable for decades. A system's
# objects are locked by the bucket's default retention instead, which the centre sets
# (drd.credentials.retention) and agents leave to the bucket (they send no lock headers).
WRITE = ("s3:PutObject",)
LIST = ("s3:ListBucket",)
# what the agent's store client asks of the bucket: never its contents
BUCKET_FACTS = ("s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration")
# IAM's quota for all inline policies of one user, in characters other than white space
AWS_USER_POLICY_LIMIT = 2048
# characters a policy reads as wildcards (``*``, ``?``) or as the start of a variable (``$``)
_SPECIAL = re.compile(r"[*?$]")


def partition_of(region: str | None) -> str:
    """The ARN partition of an AWS region: ``aws-cn`` for China's regions (``cn-north-1``,
    ``cn-northwest-1``), ``aws-us-gov`` for GovCloud, else ``aws``."""
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def repository_policy(scope: RepositoryScope, dialect: str,
                      partition: str = "aws") -> dict[str, Any]:
    """The identity policy of ``scope``'s principal in ``dialect`` (one of :data:`DIALECTS`),
    with ARNs in ``partition`` (:func:`partition_of`).

    Raises ValueError for an unknown dialect.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown policy dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    if dialect == "seaweedfs" and _SPECIAL.search(f"{scope.bucket}/{scope.prefix}"):
        raise ValueError(f"the repository prefix {scope.prefix!r} holds '*', '?' or '$', "
                         "which SeaweedFS's policies read as wildcards; use a store prefix "
                         "without them")
    prefix = _literal(scope.prefix) if dialect == "aws" else scope.prefix
    bucket = f"arn:{partition}:s3:::{scope.bucket}"
    objects = f"{bucket}/{prefix}/*"
    locks = f"{bucket}/{prefix}/{LOCKS}*"
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadOwnRepository", "Effect": "Allow", "Action": list(READ),
         "Resource": [objects]},
    ]
    if dialect == "seaweedfs":
        statements += [
            {"Sid": "WriteOwnRepository", "Effect": "Allow", "Action": list(WRITE),
             "Resource": [objects]},
            {"Sid": "RemoveOwnLocks", "Effect": "Allow", "Action": ["s3:DeleteObject"],
             "Resource": [locks]},
        ]
    else:
        statements += [
            # AWS's own statements ("Enforce conditional writes on Amazon S3 buckets",
            # example 1): S3 accepts only "*" in If-None-Match on a write, so present
            # means "create only"
            {"Sid": "CreateOnlyInOwnRepository", "Effect": "Allow", "Action": list(WRITE),
             "Resource": [objects],
             "Condition": {"Null": {"s3:if-none-match": "false"}}},
            # CreateMultipartUpload and UploadPart carry no conditional header; the upload
            # only becomes an object at CompleteMultipartUpload, which must carry it. A
            # CreateMultipartUpload with Object Lock headers needs the retention right too
            {"Sid": "UploadPartsInOwnRepository", "Effect": "Allow", "Action": list(WRITE),
             "Resource": [objects],
             "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}}},
            # one statement for restic's locks (written again by refreshes, then removed):
            # each statement costs a resource ARN out of AWS's 2,048 characters
            {"Sid": "OwnLocks", "Effect": "Allow",
             "Action": [*WRITE, "s3:DeleteObject"], "Resource": [locks]},
        ]
    statements += [
        {"Sid": "ListOwnRepository", "Effect": "Allow", "Action": list(LIST),
         "Resource": [bucket],
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
        {"Sid": "BucketFacts", "Effect": "Allow", "Action": list(BUCKET_FACTS),
         "Resource": [bucket]},
    ]
    return {"Version": VERSION, "Statement": statements}


def policy_size(document: dict[str, Any]) -> int:
    """The size of ``document`` as IAM counts it against its quotas: the characters of its
    JSON other than white space (pure)."""
    text = json.dumps(document, separators=(",", ":"))
    return sum(1 for character in text if not character.isspace())


def _literal(text: str) -> str:
    """``text`` with the characters a policy would read as wildcards or variables written
    as IAM's literal variables ``${*}``, ``${?}`` and ``${$}``."""
    return _SPECIAL.sub(lambda match: "${" + match.group() + "}", text)

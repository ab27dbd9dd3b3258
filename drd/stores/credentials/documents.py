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
"""

from __future__ import annotations

from typing import Any

from drd.stores.credentials.base import RepositoryScope

VERSION = "2012-10-17"
POLICY_NAME = "drd-repository"
DIALECTS = ("seaweedfs", "aws")

READ = ("s3:GetObject",)
# a retention set on a new object (COMPLIANCE mode, which can be lengthened, never shortened)
WRITE = ("s3:PutObject", "s3:PutObjectRetention")
LIST = ("s3:ListBucket",)
# what the agent's store client asks of the bucket: never its contents
BUCKET_FACTS = ("s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration")


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
    bucket = f"arn:{partition}:s3:::{scope.bucket}"
    objects = f"{bucket}/{scope.objects}"
    locks = f"{bucket}/{scope.locks}"
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadOwnRepository", "Effect": "Allow", "Action": list(READ),
         "Resource": [objects]},
    ]
    if dialect == "seaweedfs":
        statements.append({"Sid": "WriteOwnRepository", "Effect": "Allow",
                           "Action": list(WRITE), "Resource": [objects]})
    else:
        statements += [
            {"Sid": "CreateOnlyInOwnRepository", "Effect": "Allow", "Action": list(WRITE),
             "Resource": [objects],
             # S3 accepts only "*" in If-None-Match on a write: present means "create only"
             "Condition": {"Null": {"s3:if-none-match": "false"}}},
            # CreateMultipartUpload and UploadPart carry no conditional header; the upload
            # only becomes an object at CompleteMultipartUpload, which must carry it
            {"Sid": "UploadPartsInOwnRepository", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": [objects],
             "Condition": {"Bool": {"s3:ObjectCreationOperation": "false"}}},
            {"Sid": "WriteOwnLocks", "Effect": "Allow", "Action": list(WRITE),
             "Resource": [locks]},
        ]
    statements += [
        {"Sid": "RemoveOwnLocks", "Effect": "Allow", "Action": ["s3:DeleteObject"],
         "Resource": [locks]},
        {"Sid": "ListOwnRepository", "Effect": "Allow", "Action": list(LIST),
         "Resource": [bucket],
         "Condition": {"StringLike": {"s3:prefix": [f"{scope.prefix}/*"]}}},
        {"Sid": "BucketFacts", "Effect": "Allow", "Action": list(BUCKET_FACTS),
         "Resource": [bucket]},
    ]
    return {"Version": VERSION, "Statement": statements}

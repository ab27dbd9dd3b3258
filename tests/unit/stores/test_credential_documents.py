"""The policy documents that scope a system's key, read as AWS reads them (pure, no I/O).

Two checks of every document, for both dialects and many scopes:

* :func:`grammar_problems` parses it by AWS's policy grammar (Version ``2012-10-17``, a
  Statement list, unique alphanumeric Sids, ``Allow`` only, actions from S3's list of
  actions, ARNs of the right partition, condition operators and keys that exist) and
  proves the *scope*: every object resource lies inside ``<bucket>/<prefix>/``, deletes
  inside ``<prefix>/locks/``, and the bucket ARN carries only listing (with an
  ``s3:prefix`` condition inside the prefix) and two facts about the bucket.
* :func:`allowed` evaluates it for a request (action, resource, condition keys) as IAM
  evaluates Allow statements (wildcards, ``${*}``-style literals, StringLike, Null,
  Bool), so that the rights a backup needs, and no others, are shown request by request.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drd.names import NAME_PATTERN
from drd.secrets import Secret
from drd.stores.credentials import (
    SHARED,
    CredentialsUnsupported,
    RepositoryScope,
    guarantees_of,
    principal_name,
    repository_scope,
)
from drd.stores.credentials.documents import (
    AWS_USER_POLICY_LIMIT,
    DIALECTS,
    partition_of,
    policy_size,
    repository_policy,
)
from drd.stores.url import StoreSpec, validate_bucket_name
from tests.conftest import need

# -- AWS's policy grammar, as much of it as an S3 identity policy uses ----------------------

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
TOP_LEVEL = {"Version", "Id", "Statement"}
STATEMENT_ELEMENTS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                      "Principal", "NotPrincipal", "Condition"}

# S3's actions (Service Authorization Reference, "Actions defined by Amazon S3"), by the
# resource type they act on; an action given a resource of another type matches nothing
OBJECT_ACTIONS = {
    "AbortMultipartUpload", "BypassGovernanceRetention", "DeleteObject", "DeleteObjectTagging",
    "DeleteObjectVersion", "DeleteObjectVersionTagging", "GetObject", "GetObjectAcl",
    "GetObjectAttributes", "GetObjectLegalHold", "GetObjectRetention", "GetObjectTagging",
    "GetObjectTorrent", "GetObjectVersion", "GetObjectVersionAcl", "GetObjectVersionAttributes",
    "GetObjectVersionForReplication", "GetObjectVersionTagging", "GetObjectVersionTorrent",
    "ListMultipartUploadParts", "PutObject", "PutObjectAcl", "PutObjectLegalHold",
    "PutObjectRetention", "PutObjectTagging", "PutObjectVersionAcl", "PutObjectVersionTagging",
    "ReplicateDelete", "ReplicateObject", "ReplicateTags", "RestoreObject",
}
BUCKET_ACTIONS = {
    "CreateBucket", "DeleteBucket", "DeleteBucketPolicy", "DeleteBucketWebsite",
    "GetAccelerateConfiguration", "GetBucketAcl", "GetBucketCORS", "GetBucketLocation",
    "GetBucketLogging", "GetBucketNotification", "GetBucketObjectLockConfiguration",
    "GetBucketOwnershipControls", "GetBucketPolicy", "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock", "GetBucketRequestPayment", "GetBucketTagging",
    "GetBucketVersioning", "GetBucketWebsite", "GetEncryptionConfiguration",
    "GetLifecycleConfiguration", "GetReplicationConfiguration", "ListBucket",
    "ListBucketMultipartUploads", "ListBucketVersions", "PutAccelerateConfiguration",
    "PutBucketAcl", "PutBucketCORS", "PutBucketLogging", "PutBucketNotification",
    "PutBucketObjectLockConfiguration", "PutBucketOwnershipControls", "PutBucketPolicy",
    "PutBucketPublicAccessBlock", "PutBucketRequestPayment", "PutBucketTagging",
    "PutBucketVersioning", "PutBucketWebsite", "PutEncryptionConfiguration",
    "PutLifecycleConfiguration", "PutReplicationConfiguration",
}
ACCOUNT_ACTIONS = {"ListAllMyBuckets", "GetAccountPublicAccessBlock",
                   "PutAccountPublicAccessBlock"}
S3_ACTIONS = OBJECT_ACTIONS | BUCKET_ACTIONS | ACCOUNT_ACTIONS

# "IAM JSON policy elements: Condition operators"
CONDITION_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan",
    "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals",
    "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
    "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals",
    "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
}
# condition keys: S3's (with their type) and the global ones an S3 policy may meet
CONDITION_KEYS = {
    "s3:prefix": "String", "s3:delimiter": "String", "s3:max-keys": "Numeric",
    "s3:if-none-match": "String", "s3:if-match": "String", "s3:ObjectCreationOperation": "Bool",
    "s3:x-amz-acl": "String", "s3:x-amz-content-sha256": "String",
    "s3:x-amz-copy-source": "String", "s3:x-amz-server-side-encryption": "String",
    "s3:x-amz-storage-class": "String", "s3:object-lock-mode": "String",
    "s3:object-lock-retain-until-date": "Date", "s3:object-lock-remaining-retention-days":
    "Numeric", "s3:object-lock-legal-hold": "String", "s3:versionid": "String",
    "s3:signatureversion": "String", "s3:authType": "String", "s3:TlsVersion": "Numeric",
    "s3:ResourceAccount": "String", "s3:LocationConstraint": "String",
    "aws:SecureTransport": "Bool", "aws:SourceIp": "IPAddress", "aws:CurrentTime": "Date",
    "aws:EpochTime": "Numeric", "aws:PrincipalArn": "ARN", "aws:username": "String",
    "aws:userid": "String", "aws:RequestedRegion": "String", "aws:SourceVpce": "String",
    "aws:MultiFactorAuthPresent": "Bool", "aws:PrincipalAccount": "String",
}
OPERATOR_FAMILY = {"String": "String", "Numeric": "Numeric", "Date": "Date", "Bool": "Bool",
                   "Binary": "Binary", "IpAddress": "IPAddress", "NotIpAddress": "IPAddress",
                   "Arn": "ARN"}
SID = re.compile(r"^[A-Za-z0-9]+$")
ARN = re.compile(r"^arn:(?P<partition>[^:]+):s3:(?P<region>[^:]*):(?P<account>[^:]*):"
                 r"(?P<resource>.+)$")

# what a system's key may do with its bucket and its objects, and nothing more
OBJECT_RIGHTS = {"s3:GetObject", "s3:PutObject", "s3:PutObjectRetention", "s3:DeleteObject"}
BUCKET_FACTS = {"s3:GetBucketLocation", "s3:GetBucketObjectLockConfiguration"}
NEVER = {"s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:ListAllMyBuckets",
         "s3:PutBucketPolicy", "s3:DeleteBucket", "s3:PutBucketVersioning",
         "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration"}


def tokens(pattern: str) -> list[str]:
    """A policy string as IAM reads it: literal characters, and ``*`` / ``?`` as wildcards
    (``WILD*`` / ``WILD?``); ``${*}``, ``${?}``, ``${$}`` are the literal characters.
    Raises ValueError for any other policy variable (none belongs in these documents)."""
    result: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("${", index):
            end = pattern.find("}", index)
            inner = pattern[index + 2:end] if end > 0 else ""
            if inner not in ("*", "?", "$"):
                raise ValueError(f"a policy variable {pattern[index:end + 1]!r}")
            result.append(inner)
            index = end + 1
        elif pattern[index] in "*?":
            result.append("WILD" + pattern[index])
            index += 1
        else:
            result.append(pattern[index])
            index += 1
    return result


def fixed_start(pattern: str) -> str:
    """The literal text every string ``pattern`` matches begins with."""
    start = []
    for token in tokens(pattern):
        if token.startswith("WILD"):
            break
        start.append(token)
    return "".join(start)


def matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as IAM matches ARNs and StringLike values."""
    expression = "".join(".*" if token == "WILD*" else "." if token == "WILD?"
                         else re.escape(token) for token in tokens(pattern))
    return re.fullmatch(expression, text, flags=re.DOTALL) is not None


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def grammar_problems(document: dict, scope: RepositoryScope, partition: str) -> list[str]:
    """Everything in ``document`` that AWS's grammar refuses, or that reaches outside
    ``scope`` (empty when the document is good)."""
    problems: list[str] = []
    bucket_arn = f"arn:{partition}:s3:::{scope.bucket}"
    inside = f"{scope.bucket}/{scope.prefix}/"
    if set(document) - TOP_LEVEL:
        problems.append(f"unknown top-level elements {set(document) - TOP_LEVEL}")
    if document.get("Version") != "2012-10-17":
        problems.append(f"Version {document.get('Version')!r}")
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "Statement is not a non-empty list"]
    sids = [statement.get("Sid") for statement in statements]
    if len(set(sids)) != len(sids):
        problems.append(f"Sids not unique: {sids}")
    for number, statement in enumerate(statements):
        where = f"statement {number} ({statement.get('Sid')})"
        problems += [f"{where}: {problem}" for problem in
                     _statement_problems(statement, scope, bucket_arn, inside, partition)]
    return problems


def _statement_problems(statement: dict, scope: RepositoryScope, bucket_arn: str,
                        inside: str, partition: str) -> list[str]:
    problems: list[str] = []
    unknown = set(statement) - STATEMENT_ELEMENTS
    if unknown:
        return [f"unknown elements {unknown}"]
    for element in ("NotAction", "NotResource", "Principal", "NotPrincipal"):
        if element in statement:
            problems.append(f"{element} (widens the grant, or does not belong in an "
                            "identity policy)")
    if "Sid" in statement and not (isinstance(statement["Sid"], str)
                                   and SID.match(statement["Sid"])):
        problems.append(f"Sid {statement['Sid']!r} is not alphanumeric")
    if statement.get("Effect") != "Allow":
        problems.append(f"Effect {statement.get('Effect')!r}, not Allow")
    actions = as_list(statement.get("Action", []))
    resources = as_list(statement.get("Resource", []))
    if not actions or not resources:
        problems.append("no Action or no Resource")
    if not all(isinstance(item, str) for item in actions + resources):
        return [*problems, "an Action or Resource that is not a string"]
    for action in actions:
        service, _, name = action.partition(":")
        if service != "s3" or name not in S3_ACTIONS:
            problems.append(f"{action!r} is not an S3 action")
        if action in NEVER or action not in OBJECT_RIGHTS | BUCKET_FACTS | {"s3:ListBucket"}:
            problems.append(f"{action!r} is not a right a system's key may have")
    conditions = statement.get("Condition", {})
    problems += _condition_problems(conditions)
    for resource in resources:
        parsed = ARN.match(resource)
        if not parsed:
            problems.append(f"{resource!r} is not an S3 ARN")
            continue
        if parsed["partition"] != partition or parsed["partition"] not in PARTITIONS:
            problems.append(f"{resource!r} is not in partition {partition}")
        if parsed["region"] or parsed["account"]:
            problems.append(f"{resource!r}: S3 ARNs carry no region or account")
        try:
            start = fixed_start(parsed["resource"])
        except ValueError as error:
            problems.append(f"{resource!r}: {error}")
            continue
        if resource == bucket_arn:
            problems += _bucket_statement_problems(actions, conditions, scope)
        elif start.startswith(inside):
            wrong = [action for action in actions if action.partition(":")[2] not in
                     OBJECT_ACTIONS]
            if wrong:
                problems.append(f"{wrong} do not act on objects: {resource!r} grants nothing")
            if "s3:DeleteObject" in actions and not start.startswith(f"{inside}locks/"):
                problems.append(f"DeleteObject outside locks/: {resource!r}")
        else:
            problems.append(f"{resource!r} reaches outside {inside!r}")
    return problems


def _bucket_statement_problems(actions: list[str], conditions: dict,
                               scope: RepositoryScope) -> list[str]:
    problems = []
    for action in actions:
        if action == "s3:ListBucket":
            continue
        if action not in BUCKET_FACTS:
            problems.append(f"{action!r} on the bucket itself")
    if "s3:ListBucket" in actions:
        if set(actions) != {"s3:ListBucket"}:
            problems.append("ListBucket shares its statement (and its condition) with "
                            f"{actions}")
        prefixes = [(operator, value) for operator, keys in conditions.items()
                    for key, values in keys.items() if key == "s3:prefix"
                    for value in as_list(values)]
        if not prefixes:
            problems.append("ListBucket without an s3:prefix condition lists every system")
        for operator, value in prefixes:
            if operator not in ("StringLike", "StringEquals"):
                # an ...IfExists operator lets a listing without a prefix through
                problems.append(f"s3:prefix under {operator}")
            if not fixed_start(value).startswith(f"{scope.prefix}/"):
                problems.append(f"s3:prefix {value!r} reaches outside {scope.prefix}/")
    return problems


def _condition_problems(conditions) -> list[str]:
    if not isinstance(conditions, dict):
        return ["Condition is not a map"]
    problems = []
    for operator, keys in conditions.items():
        bare = re.sub(r"^For(AnyValue|AllValues):", "", operator)
        if bare.endswith("IfExists") and bare != "Null":
            bare = bare[:-len("IfExists")]
        if bare not in CONDITION_OPERATORS:
            problems.append(f"unknown condition operator {operator!r}")
            continue
        if not isinstance(keys, dict) or not keys:
            problems.append(f"{operator}: not a map of keys")
            continue
        for key, values in keys.items():
            if key not in CONDITION_KEYS:
                problems.append(f"unknown condition key {key!r}")
                continue
            if not all(isinstance(value, str) for value in as_list(values)):
                problems.append(f"{operator} {key}: values must be strings")
            family = next((family for stem, family in OPERATOR_FAMILY.items()
                           if bare.startswith(stem)), None)
            if bare == "Null" or family == "Bool":
                if not set(as_list(values)) <= {"true", "false"}:
                    problems.append(f"{operator} {key}: {values!r} is not true/false")
            if bare != "Null" and family != CONDITION_KEYS[key]:
                problems.append(f"{operator} on {key}, a {CONDITION_KEYS[key]} key")
    return problems


# -- IAM's evaluation of Allow statements, for one request -----------------------------------

@dataclass(frozen=True)
class Request:
    """One S3 request as IAM sees it: the action, the resource ARN and the request's
    condition keys (a key absent from ``context`` is absent from the request)."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


def _condition_holds(operator: str, key: str, expected, context: dict[str, str]) -> bool:
    present = key in context
    values = as_list(expected)
    if operator == "Null":
        return any((value == "true") == (not present) for value in values)
    if not present:
        return False
    actual = context[key]
    if operator == "StringLike":
        return any(matches(value, actual) for value in values)
    if operator == "StringEquals":
        return any("".join(tokens(value)) == actual for value in values)
    if operator == "Bool":
        return actual in values
    raise AssertionError(f"the evaluator does not know {operator}")


def allowed(document: dict, request: Request) -> bool:
    """Whether some Allow statement of ``document`` grants ``request`` (IAM: action and
    resource match, every condition operator holds, every key within it holds)."""
    context = dict(request.context)
    for statement in document["Statement"]:
        if request.action not in as_list(statement["Action"]):
            continue
        if not any(matches(pattern, request.resource)
                   for pattern in as_list(statement["Resource"])):
            continue
        if all(_condition_holds(operator, key, expected, context)
               for operator, keys in statement.get("Condition", {}).items()
               for key, expected in keys.items()):
            return True
    return False


# -- scopes ----------------------------------------------------------------------------------

def bucket_names():
    def valid(name: str) -> bool:
        try:
            validate_bucket_name(name)
        except Exception:  # noqa: BLE001 -- UserError: not a valid name, draw another
            return False
        return True

    return st.from_regex(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z").filter(valid)


names = st.from_regex(NAME_PATTERN.replace("^", r"\A").replace("$", r"\Z"))
PLAIN = string.ascii_letters + string.digits + "-_. +=@~"


def store_prefixes(wildcards: bool):
    """Store prefixes as ``drd store add`` takes them: parts of anything but '/', never
    '.' or '..'; with ``wildcards``, also '*', '?' and '$', which a policy must not read
    as wildcards or variables."""
    part = st.text(alphabet=PLAIN + ("*?$" if wildcards else ""), min_size=1, max_size=12)
    return st.lists(part.filter(lambda text: text not in (".", "..")), max_size=3).map("/".join)


REGIONS = ("us-east-1", "eu-central-1", "cn-north-1", "cn-northwest-1", "us-gov-west-1", None)


@st.composite
def scopes(draw, wildcards: bool = True) -> RepositoryScope:
    bucket = draw(bucket_names())
    store_prefix = draw(store_prefixes(wildcards))
    department, system = draw(names), draw(names)
    repository = f"{department}/{system}"
    prefix = f"{store_prefix}/{repository}" if store_prefix else repository
    return RepositoryScope(store="store", bucket=bucket, prefix=prefix, system=system)


@st.composite
def dialect_scopes(draw) -> tuple[str, RepositoryScope]:
    """A dialect and a scope it can express (SeaweedFS refuses wildcard prefixes)."""
    dialect = draw(st.sampled_from(DIALECTS))
    return dialect, draw(scopes(wildcards=dialect == "aws"))


def object_arn(partition: str, bucket: str, key: str) -> str:
    return f"arn:{partition}:s3:::{bucket}/{key}"


EXAMPLES = [
    # (store URL, region): a store prefix or none; AWS, China, GovCloud
    ("s3://backups", "us-east-1"),
    ("s3://backups/drd", "eu-central-1"),
    ("s3://city-dr.backups/drd/2026", "cn-north-1"),
    ("s3://city-dr/drd", "cn-northwest-1"),
    ("s3://govbucket/x", "us-gov-west-1"),
]


def example_scope(url: str) -> RepositoryScope:
    return repository_scope(StoreSpec(name="dc-a", url=url), "finance/fileserver", "fileserver")


# -- the tests -------------------------------------------------------------------------------

def test_partitions_follow_the_region():
    assert partition_of("cn-north-1") == "aws-cn"
    assert partition_of("cn-northwest-1") == "aws-cn"
    assert partition_of("us-gov-west-1") == "aws-us-gov"
    assert partition_of("eu-central-1") == partition_of(None) == partition_of("") == "aws"


@pytest.mark.parametrize(("url", "region"), EXAMPLES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_examples_follow_the_grammar_and_stay_inside(url, region, dialect):
    scope = example_scope(url)
    partition = partition_of(region)
    document = repository_policy(scope, dialect, partition)
    assert grammar_problems(document, scope, partition) == []
    # the ARNs are in the region's partition, China's included
    resources = [resource for statement in document["Statement"]
                 for resource in as_list(statement["Resource"])]
    assert all(resource.startswith(f"arn:{partition}:s3:::{scope.bucket}")
               for resource in resources)


def test_a_china_store_gets_aws_cn_arns():
    scope = example_scope("s3://city-dr/drd")
    document = repository_policy(scope, "aws", partition_of("cn-north-1"))
    text = json.dumps(document)
    assert "arn:aws-cn:s3:::city-dr/drd/finance/fileserver/*" in text
    assert "arn:aws:" not in text


def test_the_aws_dialect_is_awss_conditional_write_example():
    """The statements AWS documents ("Enforce conditional writes on Amazon S3 buckets",
    example 1: Allow s3:PutObject with Null s3:if-none-match false, and Allow
    s3:PutObject with Bool s3:ObjectCreationOperation false), scoped to the repository."""
    scope = example_scope("s3://backups/drd")
    document = repository_policy(scope, "aws")
    conditional = {statement["Sid"]: statement for statement in document["Statement"]
                   if "Condition" in statement and "s3:PutObject" in statement["Action"]}
    assert [statement["Condition"] for statement in conditional.values()] == [
        {"Null": {"s3:if-none-match": "false"}},
        {"Bool": {"s3:ObjectCreationOperation": "false"}},
    ]
    for statement in conditional.values():
        assert statement["Resource"] == ["arn:aws:s3:::backups/drd/finance/fileserver/*"]
    unconditional_puts = [statement["Resource"] for statement in document["Statement"]
                          if "s3:PutObject" in statement["Action"]
                          and "Condition" not in statement]
    assert unconditional_puts == [["arn:aws:s3:::backups/drd/finance/fileserver/locks/*"]]


def test_the_seaweedfs_dialect_has_no_condition_seaweedfs_would_drop():
    document = repository_policy(example_scope("s3://backups/drd"), "seaweedfs")
    conditions = [statement.get("Condition") for statement in document["Statement"]]
    assert [condition for condition in conditions if condition] == [
        {"StringLike": {"s3:prefix": ["drd/finance/fileserver/*"]}}]


def test_an_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="unknown policy dialect"):
        repository_policy(example_scope("s3://backups"), "minio")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes(), region=st.sampled_from(REGIONS))
def test_aws_documents_follow_the_grammar_and_stay_inside(scope, region):
    partition = partition_of(region)
    document = repository_policy(scope, "aws", partition)
    assert grammar_problems(document, scope, partition) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes(wildcards=False))
def test_seaweedfs_documents_follow_the_grammar_and_stay_inside(scope):
    document = repository_policy(scope, "seaweedfs")
    assert grammar_problems(document, scope, "aws") == []


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes(wildcards=False), special=st.sampled_from("*?$"), at=st.integers(0, 20))
def test_seaweedfs_refuses_a_prefix_it_would_read_as_a_wildcard(scope, special, at):
    at = min(at, len(scope.prefix) - 1)
    prefix = f"{scope.prefix[:at]}{special}{scope.prefix[at:]}"
    with pytest.raises(ValueError, match="wildcards"):
        repository_policy(RepositoryScope(scope.store, scope.bucket, prefix, scope.system),
                          "seaweedfs")


def test_a_wildcard_in_a_store_prefix_is_a_literal_in_aws_documents():
    """A store prefix ``a*`` must not reach the repositories under ``ab/``."""
    scope = RepositoryScope(store="s", bucket="backups", prefix="a*/finance/fs", system="fs")
    document = repository_policy(scope, "aws")
    assert "arn:aws:s3:::backups/a${*}/finance/fs/*" in json.dumps(document)
    read = Request("s3:GetObject", object_arn("aws", "backups", "a*/finance/fs/config"))
    assert allowed(document, read)
    assert not allowed(document, Request("s3:GetObject",
                                         object_arn("aws", "backups", "ab/finance/fs/config")))
    listing = Request("s3:ListBucket", "arn:aws:s3:::backups",
                      (("s3:prefix", "ab/finance/fs/"),))
    assert not allowed(document, listing)


# restic's object names, and names a compromised agent would try
OWN_KEYS = ("config", "keys/" + "a" * 64, "data/ab/" + "b" * 64, "index/" + "c" * 64,
            "snapshots/" + "d" * 64, "drd/manifests/x.json", "drd/password.sealed")
keys_in_repository = st.one_of(st.sampled_from(OWN_KEYS),
                               st.text(string.printable, min_size=1, max_size=40))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect_scope=dialect_scopes(), region=st.sampled_from(REGIONS),
       key=keys_in_repository, lock=st.text(string.hexdigits, min_size=1, max_size=64))
def test_a_backup_can_do_what_it_needs_in_its_own_repository(dialect_scope, region, key,
                                                             lock):
    dialect, scope = dialect_scope
    partition = partition_of(region)
    document = repository_policy(scope, dialect, partition)
    own = object_arn(partition, scope.bucket, f"{scope.prefix}/{key}")
    own_lock = object_arn(partition, scope.bucket, f"{scope.prefix}/locks/{lock}")
    bucket = f"arn:{partition}:s3:::{scope.bucket}"
    create = (("s3:if-none-match", "*"), ("s3:ObjectCreationOperation", "true"))
    part = (("s3:ObjectCreationOperation", "false"),)
    for request in (
        Request("s3:GetObject", own),
        Request("s3:PutObject", own, create),  # PutObject / CompleteMultipartUpload
        Request("s3:PutObject", own, part),  # CreateMultipartUpload, UploadPart
        Request("s3:PutObject", own_lock, (("s3:ObjectCreationOperation", "true"),)),
        Request("s3:DeleteObject", own_lock),
        Request("s3:ListBucket", bucket, (("s3:prefix", f"{scope.prefix}/"),)),
        Request("s3:ListBucket", bucket, (("s3:prefix", f"{scope.prefix}/data/"),)),
        Request("s3:GetBucketLocation", bucket),
        Request("s3:GetBucketObjectLockConfiguration", bucket),
    ):
        assert allowed(document, request), request
    # no retention of its own choosing, ever: the bucket's default locks what it writes
    # (a key that could set one could lock its repository until 2090)
    for context in ((), create, part):
        assert not allowed(document, Request("s3:PutObjectRetention", own, context))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect_scope=dialect_scopes(), region=st.sampled_from(REGIONS),
       key=keys_in_repository)
def test_nothing_of_its_own_can_be_deleted_but_locks_nor_overwritten_on_aws(dialect_scope,
                                                                         region, key):
    dialect, scope = dialect_scope
    assume(not key.startswith("locks/"))
    partition = partition_of(region)
    document = repository_policy(scope, dialect, partition)
    own = object_arn(partition, scope.bucket, f"{scope.prefix}/{key}")
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                   "s3:PutObjectAcl", "s3:PutObjectLegalHold", "s3:GetObjectVersion"):
        assert not allowed(document, Request(action, own)), action
    overwrite = Request("s3:PutObject", own, (("s3:ObjectCreationOperation", "true"),))
    # SeaweedFS cannot refuse it (no conditional-write keys): Object Lock keeps the versions
    assert allowed(document, overwrite) is (dialect == "seaweedfs")
    assert guarantees_of("seaweedfs").refuses_overwrite is False
    assert guarantees_of("aws-iam").refuses_overwrite is True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialect_scope=dialect_scopes(), region=st.sampled_from(REGIONS),
       key=st.text(string.printable, max_size=60), other=names)
def test_nothing_outside_its_own_repository(dialect_scope, region, key, other):
    dialect, scope = dialect_scope
    assume(not key.startswith(f"{scope.prefix}/"))
    partition = partition_of(region)
    document = repository_policy(scope, dialect, partition)
    bucket = f"arn:{partition}:s3:::{scope.bucket}"
    sibling = f"{scope.prefix}{other}/"  # finance/fs -> finance/fs2: another system
    foreign = [k for k in (key, "_drd-centre/catalog.sqlite.sealed", f"{sibling}config",
                           f"{scope.prefix}", f"x/{scope.prefix}/config")
               # "x/" + "x/x" + "/config" lies inside a repository "x/x": not foreign
               if not k.startswith(f"{scope.prefix}/")]
    for foreign_key in foreign:
        arn = object_arn(partition, scope.bucket, foreign_key)
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                       "s3:PutObjectRetention"):
            for context in ((), (("s3:if-none-match", "*"),
                                 ("s3:ObjectCreationOperation", "true")),
                            (("s3:ObjectCreationOperation", "false"),)):
                assert not allowed(document, Request(action, arn, context)), (action, arn)
    for listed in ("", key, sibling, scope.prefix, f"{scope.prefix}{other}"):
        assert not allowed(document, Request("s3:ListBucket", bucket,
                                             (("s3:prefix", listed),))), listed
    assert not allowed(document, Request("s3:ListBucket", bucket))  # no prefix at all
    other_bucket = f"arn:{partition}:s3:::{scope.bucket}x"
    assert not allowed(document, Request("s3:GetObject",
                                         f"{other_bucket}/{scope.prefix}/config"))
    for action in ("s3:ListAllMyBuckets", "s3:PutBucketPolicy", "s3:DeleteBucket",
                   "s3:PutBucketVersioning", "s3:ListBucketVersions"):
        assert not allowed(document, Request(action, bucket)), action


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes(), region=st.sampled_from(REGIONS))
def test_moto_validates_the_aws_document_as_iam_would(scope, region):
    """A second reader of the grammar: moto's copy of IAM's PutUserPolicy validation."""
    try:
        from moto.iam.policy_validation import IAMPolicyDocumentValidator
    except ImportError:
        IAMPolicyDocumentValidator = None  # noqa: N806
    need("moto", IAMPolicyDocumentValidator is not None, "pip install 'moto[server]'")
    document = json.dumps(repository_policy(scope, "aws", partition_of(region)))
    IAMPolicyDocumentValidator(document).validate()


# -- sizes -----------------------------------------------------------------------------------

def test_the_longest_names_fit_awss_user_policy_quota():
    """Bucket, department and system at their longest (63 each) with a short store
    prefix: IAM takes at most 2,048 characters for a user's inline policies."""
    scope = RepositoryScope(store="s", bucket="b" * 63,
                            prefix=f"drd/{'d' * 63}/{'s' * 63}", system="s" * 63)
    for partition in PARTITIONS:
        assert policy_size(repository_policy(scope, "aws", partition)) <= AWS_USER_POLICY_LIMIT


def test_policy_size_counts_no_white_space():
    assert policy_size({"a": "b c"}) == len('{"a":"bc"}')


def test_a_document_over_the_quota_is_refused_before_any_user_is_made():
    """issue() says why instead of leaving a user without a policy behind: the IAM
    endpoint here answers nothing, so an attempt to call it would raise StoreUnavailable."""
    from drd.stores.credentials.iam import IamBroker

    broker = IamBroker("dc-a", kind="aws-iam", iam_endpoint="http://127.0.0.1:9",
                       s3_endpoint="http://127.0.0.1:9", access_key_id="AKIAEXAMPLE",
                       secret_access_key=Secret("not-used"), region="cn-north-1", timeout=0.5)
    scope = RepositoryScope(store="dc-a", bucket="b" * 63,
                            prefix=f"{'p' * 100}/{'d' * 63}/{'s' * 63}", system="s" * 63)
    with pytest.raises(CredentialsUnsupported, match="over IAM's 2048"):
        broker.issue(scope)
    seaweed = IamBroker("dc-b", kind="seaweedfs", iam_endpoint=None,
                        s3_endpoint="http://127.0.0.1:9", access_key_id="admin",
                        secret_access_key=Secret("not-used"), timeout=0.5)
    wildcard = RepositoryScope(store="dc-b", bucket="backups", prefix="a*/d/s", system="s")
    with pytest.raises(CredentialsUnsupported, match="wildcards"):
        seaweed.issue(wildcard)


# -- principals and guarantees ---------------------------------------------------------------

IAM_USER_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scope=scopes(), system=st.text(min_size=1, max_size=100))
def test_principal_names_are_legal_iam_user_names(scope, system):
    for candidate in (scope, RepositoryScope(scope.store, scope.bucket, scope.prefix, system)):
        name = principal_name(candidate)
        assert IAM_USER_NAME.match(name), name
        assert name.startswith("drd-")
        assert principal_name(candidate) == name  # stable: the next key finds its user


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=scopes(), second=scopes())
def test_principal_names_differ_for_different_repositories(first, second):
    assume((first.bucket, first.prefix) != (second.bucket, second.prefix))
    # the same system name in both, the hardest case
    second = RepositoryScope(second.store, second.bucket, second.prefix, first.system)
    assert principal_name(first) != principal_name(second)


def test_principal_names_differ_for_the_same_system_in_two_buckets_or_prefixes():
    names_seen = {principal_name(RepositoryScope("s", bucket, prefix, "fs"))
                  for bucket in ("backups", "backups2")
                  for prefix in ("finance/fs", "drd/finance/fs", "finance/fs2")}
    assert len(names_seen) == 6


def test_the_longest_system_name_keeps_its_digest():
    scope = RepositoryScope("s", "backups", f"{'d' * 63}/{'s' * 63}", "s" * 63)
    name = principal_name(scope)
    assert len(name) == 64
    assert re.fullmatch(r"drd-s+-[0-9a-f]{10}", name)


@pytest.mark.parametrize(("kind", "isolated", "refuses_delete", "refuses_overwrite",
                          "needs_object_lock"), [
    ("seaweedfs", True, True, False, True),
    ("aws-iam", True, True, True, False),
    (SHARED, False, False, False, True),
    (None, False, False, False, True),
    ("something-else", False, False, False, True),
])
def test_guarantees_of_each_kind(kind, isolated, refuses_delete, refuses_overwrite,
                                 needs_object_lock):
    guarantees = guarantees_of(kind)
    assert (guarantees.isolated, guarantees.refuses_delete, guarantees.refuses_overwrite,
            guarantees.needs_object_lock) == (isolated, refuses_delete, refuses_overwrite,
                                              needs_object_lock)
    assert guarantees.summary


def test_a_key_that_writes_once_is_one_whose_store_evaluates_it():
    # the agent sends If-None-Match where write_once is set; only IAM stores get it
    assert guarantees_of("aws-iam").write_once and guarantees_of("seaweedfs").write_once
    assert not guarantees_of(SHARED).write_once


# -- the checker itself: it must catch what it is there to catch -----------------------------

@pytest.mark.parametrize(("change", "expected"), [
    (lambda doc: doc.update(Version="2008-10-17"), "Version"),
    (lambda doc: doc["Statement"][0].update(Sid="Read-Own"), "not alphanumeric"),
    (lambda doc: doc["Statement"][1].update(Sid=doc["Statement"][0]["Sid"]), "not unique"),
    (lambda doc: doc["Statement"][0].update(Effect="Deny"), "not Allow"),
    (lambda doc: doc["Statement"][0].update(Action=["s3:GetObjects"]), "not an S3 action"),
    (lambda doc: doc["Statement"][0].update(Action=["s3:*"]), "not an S3 action"),
    (lambda doc: doc["Statement"][0].update(Action=["s3:DeleteObjectVersion"]),
     "not a right"),
    (lambda doc: doc["Statement"][0].update(Resource=["arn:aws:s3:::backups/*"]),
     "reaches outside"),
    (lambda doc: doc["Statement"][0].update(Resource=["arn:aws:s3:::backups/drd/fin*"]),
     "reaches outside"),
    (lambda doc: doc["Statement"][0].update(
        Resource=["arn:aws-cn:s3:::backups/drd/finance/fs/*"]), "not in partition"),
    (lambda doc: doc["Statement"][0].update(
        Resource=["arn:aws:s3:::backups/drd/finance/fs/${aws:username}"]), "policy variable"),
    (lambda doc: doc["Statement"][0].update(Principal="*"), "Principal"),
    (lambda doc: doc["Statement"][0].update(Condition={"StringLikeIgnoreCase": {}}),
     "unknown condition operator"),
    (lambda doc: doc["Statement"][0].update(Condition={"Null": {"s3:if-none-matches": "false"}}),
     "unknown condition key"),
    (lambda doc: doc["Statement"][0].update(Condition={"Bool": {"s3:prefix": "true"}}),
     "a String key"),
    (lambda doc: doc["Statement"][-2]["Condition"].update(
        StringLike={"s3:prefix": ["drd/*"]}), "reaches outside"),
    (lambda doc: doc["Statement"][-2].update(
        Condition={"StringLikeIfExists": {"s3:prefix": ["drd/finance/fs/*"]}}),
     "s3:prefix under"),
    (lambda doc: doc["Statement"][-2].pop("Condition"), "lists every system"),
    (lambda doc: doc["Statement"][-1].update(Action=["s3:PutBucketPolicy"]), "not a right"),
    (lambda doc: doc["Statement"][-1].update(Action=["s3:GetObject"]), "on the bucket"),
    (lambda doc: doc["Statement"][0].update(
        Action=["s3:DeleteObject"]), "DeleteObject outside locks/"),
    (lambda doc: doc["Statement"][0].update(Action=["s3:GetBucketLocation"]),
     "grants nothing"),
])
def test_the_checker_catches_a_bad_document(change, expected):
    scope = RepositoryScope("s", "backups", "drd/finance/fs", "fs")
    document = repository_policy(scope, "aws")
    assert grammar_problems(document, scope, "aws") == []
    change(document)
    problems = grammar_problems(document, scope, "aws")
    assert any(expected in problem for problem in problems), problems

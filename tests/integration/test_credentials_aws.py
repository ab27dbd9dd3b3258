"""A system's own key, tried on servers that enforce it: moto (aws-iam) and SeaweedFS.

The centre makes the key with :func:`drd.stores.credentials.open_broker`, then a rights
matrix is played with boto3 and that key alone, as an attacker holding the agent's home
would: what a backup needs must succeed, everything else must be refused.

**moto** (``moto_server``, with ``INITIAL_NO_AUTH_ACTION_COUNT=3``: the first three
requests make the centre's admin user, its policy and its key; every later request is
authenticated and authorised against the caller's IAM policies). What moto 5.x enforces,
read in its source (``moto/iam/access_control.py``, ``moto/iam/policy_conditions.py``):
the signature, the action (``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject``,
``s3:DeleteObjectVersion``, ``s3:ListBucket``, ...) and the resource ARN with wildcards,
in the partition of the signing region (``arn:aws-cn:`` for ``cn-north-1``), and the
``If-None-Match: *`` precondition itself (412 when the object exists). What it does not:
**conditions in identity policies** -- it evaluates only ``StringEquals``, and only for
role trust policies; every other condition is taken as met -- so it cannot refuse a
listing outside ``s3:prefix`` nor a write without ``s3:if-none-match``; and it authorises
a CopyObject against its destination only (AWS also needs ``s3:GetObject`` on the
source). Those rows are marked xfail with that reason, never passed silently: on AWS
they are refused.

**SeaweedFS** (kind ``seaweedfs``, its embedded IAM API): enforces all of the matrix but
the overwrite -- its policies have no conditional-write keys, so a key that may write
may replace. That is expected and declared (``guarantees.refuses_overwrite`` is False,
``needs_object_lock`` is True): a policy must put Object Lock on such a store, so that
the good version stays and verification heals the change.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from drd.secrets import Secret
from drd.stores.credentials import (
    CredentialsUnsupported,
    IssuedCredential,
    RepositoryScope,
    open_broker,
    principal_name,
    repository_scope,
)
from drd.stores.credentials.documents import partition_of
from drd.stores.errors import StoreError
from drd.stores.url import StoreSpec
from tests.conftest import need

pytestmark = pytest.mark.integration

# the requests moto lets through before it authenticates: create_user, put_user_policy,
# create_access_key for the centre's own admin user
UNAUTHENTICATED_SETUP_REQUESTS = 3
START_SECONDS = 30
ADMIN_POLICY = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*",'
                '"Resource":"*"}]}')

MOTO_NO_CONDITIONS = (
    "moto does not evaluate conditions in identity policies (moto/iam/policy_conditions.py "
    "evaluates only StringEquals, for role trust policies): {what} is let through here; "
    "AWS IAM refuses it")
MOTO_NO_COPY_SOURCE = (
    "moto authorises CopyObject against its destination only; AWS IAM also needs "
    "s3:GetObject on the source, which this key has not")
SEAWEEDFS_OVERWRITES = (
    "SeaweedFS cannot refuse a write without If-None-Match (its policies have no "
    "conditional-write keys): expected, and why a policy must put Object Lock on a "
    "seaweedfs store (guarantees.needs_object_lock), so that the replaced version stays "
    "and verification heals it")


def _client(service: str, endpoint: str, region: str, access_key_id: str,
            secret_access_key: str):
    return boto3.session.Session().client(
        service, endpoint_url=endpoint, aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(region_name=region, s3={"addressing_style": "path"},
                      retries={"total_max_attempts": 1}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """An S3 server with an IAM API and the centre's admin keys for it."""

    kind: str  # the broker kind: "aws-iam" (moto) or "seaweedfs"
    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str

    def client(self, service: str = "s3"):
        return _client(service, self.endpoint, self.region, self.access_key_id,
                       self.secret_access_key)

    def broker(self, spec: StoreSpec):
        return open_broker(self.kind, spec, self.access_key_id, Secret(self.secret_access_key),
                           iam_endpoint=self.endpoint, timeout=5.0)


def _wait_for_moto(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"moto_server exited:\n{log.read_text()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"moto_server did not start:\n{log.read_text()}"
            time.sleep(0.1)


@pytest.fixture(scope="module", params=["us-east-1", "cn-north-1"])
def moto(request, tmp_path_factory) -> Iterator[Server]:
    """A ``moto_server`` that authorises every request after the admin's set-up, signed
    in a region of AWS's partition and in one of China's (``arn:aws-cn:``)."""
    need("moto", importlib.util.find_spec("moto") is not None,
         "pip install 'moto[server]' (make deps)")
    region = request.param
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("AWS_", "MOTO_", "DRD_"))}
    environment["INITIAL_NO_AUTH_ACTION_COUNT"] = str(UNAUTHENTICATED_SETUP_REQUESTS)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=environment, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_moto(process, port, log)
        endpoint = f"http://127.0.0.1:{port}"
        setup = _client("iam", endpoint, region, "AKIASETUPSETUPSETUP0", "setup")
        setup.create_user(UserName="drd-centre-admin")
        setup.put_user_policy(UserName="drd-centre-admin", PolicyName="admin",
                              PolicyDocument=ADMIN_POLICY)
        key = setup.create_access_key(UserName="drd-centre-admin")["AccessKey"]
        server = Server("aws-iam", endpoint, region, key["AccessKeyId"],
                        key["SecretAccessKey"])
        # from here on moto checks every request: an unknown key is refused
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            _client("s3", endpoint, region, "AKIAUNKNOWNUNKNOWN00", "x").list_buckets()
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        yield server
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def seaweedfs(seaweed_session) -> Server:
    """The session's SeaweedFS server (started with ``-s3.iam.readOnly=false``)."""
    return Server("seaweedfs", seaweed_session.endpoint, "us-east-1",
                  seaweed_session.access_key, seaweed_session.secret_key)


def _new_bucket(server: Server) -> str:
    bucket = f"drd-cred-{uuid.uuid4().hex[:12]}"
    location = ({} if server.region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": server.region}})
    server.client().create_bucket(Bucket=bucket, **location)
    return bucket


# -- the repository a compromised agent attacks -------------------------------------------

@dataclass
class Repository:
    """One system's repository in a bucket, with the objects the centre put there, and
    the system's own S3 client (made from the key the broker issued)."""

    server: Server
    bucket: str
    scope: RepositoryScope
    credential: IssuedCredential
    agent: object  # boto3 S3 client with the system's key
    other_bucket: str
    versions: dict[str, str]

    @property
    def prefix(self) -> str:
        return self.scope.prefix

    def own(self, key: str) -> str:
        return f"{self.prefix}/{key}"


OTHER = "drd/health/records"  # another system's repository
SIBLING_SUFFIX = "2"  # finance/fileserver2: a name that extends ours
CENTRE = "_drd-centre/catalog.sqlite.sealed"
SEEDED_OWN = ("config", "keys/" + "a" * 64, "data/ab/" + "b" * 64, "index/" + "c" * 64,
              "snapshots/" + "d" * 64, "drd/manifests/latest.json", "drd/password.sealed")


def _repository(server: Server) -> Repository:
    bucket = _new_bucket(server)
    admin = server.client()
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    spec = StoreSpec(name=f"store-{bucket}", url=f"s3://{bucket}/drd", endpoint=server.endpoint,
                     region=server.region)
    scope = repository_scope(spec, "finance/fileserver", "fileserver")
    versions = {}
    for key in (*[f"{scope.prefix}/{name}" for name in SEEDED_OWN],
                *[f"{scope.prefix}/locks/{name}" for name in ("one",)],
                f"{OTHER}/config", f"{scope.prefix}{SIBLING_SUFFIX}/config", CENTRE):
        answer = admin.put_object(Bucket=bucket, Key=key, Body=b"written by the centre")
        versions[key] = answer.get("VersionId")
    credential = server.broker(spec).issue(scope)
    agent = _client("s3", server.endpoint, server.region, credential.access_key_id,
                    credential.secret_access_key.reveal())
    return Repository(server, bucket, scope, credential, agent, _new_bucket(server), versions)


@pytest.fixture(scope="module")
def moto_repository(moto) -> Repository:
    return _repository(moto)


@pytest.fixture(scope="module")
def seaweedfs_repository(seaweedfs) -> Repository:
    return _repository(seaweedfs)


# -- the rights matrix ----------------------------------------------------------------------

ALLOWED, REFUSED, EXISTS = "allowed", "refused (403 AccessDenied)", "refused (412, exists)"


@dataclass(frozen=True)
class Row:
    """One request with the system's key. ``expected`` is what AWS IAM with drd's policy
    answers; ``seaweedfs`` overrides it, with the reason, where SeaweedFS cannot refuse;
    ``moto_gap`` names what moto does not evaluate where it lets the request through."""

    name: str
    request: Callable[[Repository], object]
    expected: str
    seaweedfs: tuple[str, str] | None = None
    moto_gap: str | None = None


def _put(repository: Repository, key: str, **extra):
    return repository.agent.put_object(Bucket=repository.bucket, Key=key, Body=b"agent", **extra)


def _new_key(repository: Repository, folder: str = "data/ef") -> str:
    return repository.own(f"{folder}/{uuid.uuid4().hex}")


def _list(repository: Repository, prefix: str | None) -> list[str]:
    arguments = {"Prefix": prefix} if prefix is not None else {}
    answer = repository.agent.list_objects_v2(Bucket=repository.bucket, **arguments)
    return [item["Key"] for item in answer.get("Contents", [])]


def _list_own(repository: Repository) -> None:
    keys = _list(repository, f"{repository.prefix}/")
    assert repository.own("config") in keys
    assert all(key.startswith(f"{repository.prefix}/") for key in keys)


def _multipart(repository: Repository) -> None:
    key = _new_key(repository, "data/mp")
    agent = repository.agent
    upload = agent.create_multipart_upload(Bucket=repository.bucket, Key=key)["UploadId"]
    part = agent.upload_part(Bucket=repository.bucket, Key=key, UploadId=upload, PartNumber=1,
                             Body=b"p" * 1024)
    agent.complete_multipart_upload(
        Bucket=repository.bucket, Key=key, UploadId=upload, IfNoneMatch="*",
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})


def _delete_version(repository: Repository) -> None:
    key = repository.own("data/ab/" + "b" * 64)
    repository.agent.delete_object(Bucket=repository.bucket, Key=key,
                                   VersionId=repository.versions[key])


def _copy_other_into_own(repository: Repository) -> None:
    repository.agent.copy_object(Bucket=repository.bucket, Key=_new_key(repository),
                                 CopySource={"Bucket": repository.bucket,
                                             "Key": f"{OTHER}/config"})


def _list_buckets(repository: Repository) -> None:
    names = [bucket["Name"] for bucket in repository.agent.list_buckets()["Buckets"]]
    assert repository.other_bucket not in names, f"other buckets shown: {names}"


def _get(key: str) -> Callable[[Repository], object]:
    return lambda repository: repository.agent.get_object(Bucket=repository.bucket,
                                                          Key=key.format(p=repository.prefix))


def _delete(key: str) -> Callable[[Repository], object]:
    return lambda repository: repository.agent.delete_object(Bucket=repository.bucket,
                                                             Key=key.format(p=repository.prefix))


ROWS = [
    # what a backup needs
    Row("list own repository", _list_own, ALLOWED),
    Row("read own config", _get("{p}/config"), ALLOWED),
    Row("read own data object", _get("{p}/data/ab/" + "b" * 64), ALLOWED),
    Row("create own object with If-None-Match",
        lambda r: _put(r, _new_key(r), IfNoneMatch="*"), ALLOWED),
    Row("multipart upload into own repository, If-None-Match on completion", _multipart,
        ALLOWED),
    Row("write own lock (no If-None-Match: restic refreshes locks)",
        lambda r: _put(r, _new_key(r, "locks")), ALLOWED),
    Row("delete own lock", _delete("{p}/locks/one"), ALLOWED),
    Row("bucket location", lambda r: r.agent.get_bucket_location(Bucket=r.bucket), ALLOWED),
    # no overwrite
    Row("overwrite own config with If-None-Match",
        lambda r: _put(r, r.own("config"), IfNoneMatch="*"), EXISTS),
    Row("overwrite own config without If-None-Match", lambda r: _put(r, r.own("config")),
        REFUSED, seaweedfs=(ALLOWED, SEAWEEDFS_OVERWRITES),
        moto_gap=MOTO_NO_CONDITIONS.format(what="a write without s3:if-none-match")),
    Row("overwrite own data object without If-None-Match",
        lambda r: _put(r, r.own("data/ab/" + "b" * 64)), REFUSED,
        seaweedfs=(ALLOWED, SEAWEEDFS_OVERWRITES),
        moto_gap=MOTO_NO_CONDITIONS.format(what="a write without s3:if-none-match")),
    Row("create own object without If-None-Match", lambda r: _put(r, _new_key(r)), REFUSED,
        seaweedfs=(ALLOWED, SEAWEEDFS_OVERWRITES),
        moto_gap=MOTO_NO_CONDITIONS.format(what="a write without s3:if-none-match")),
    # no delete outside locks/
    *[Row(f"delete own {name if len(name) < 30 else name[:8] + '...'}",
          _delete("{p}/" + name), REFUSED) for name in SEEDED_OWN],
    Row("delete a version of own data object", _delete_version, REFUSED),
    # nothing outside its repository
    Row("read another system's config", _get(f"{OTHER}/config"), REFUSED),
    Row("read a sibling repository (finance/fileserver2)",
        _get("{p}" + SIBLING_SUFFIX + "/config"), REFUSED),
    Row("write into another system's repository",
        lambda r: _put(r, f"{OTHER}/data/ab/new", IfNoneMatch="*"), REFUSED),
    Row("delete another system's config", _delete(f"{OTHER}/config"), REFUSED),
    Row("list another system's repository", lambda r: _list(r, f"{OTHER}/"), REFUSED,
        moto_gap=MOTO_NO_CONDITIONS.format(what="a listing outside s3:prefix")),
    Row("list own prefix without its slash (shows the sibling's names)",
        lambda r: _list(r, r.prefix), REFUSED,
        moto_gap=MOTO_NO_CONDITIONS.format(what="a listing outside s3:prefix")),
    Row("list the whole bucket", lambda r: _list(r, None), REFUSED,
        moto_gap=MOTO_NO_CONDITIONS.format(what="a listing without s3:prefix")),
    Row("copy another system's object into own repository", _copy_other_into_own, REFUSED,
        moto_gap=MOTO_NO_COPY_SOURCE),
    Row("read the centre's catalog copy", _get(CENTRE), REFUSED),
    Row("overwrite the centre's catalog copy", lambda r: _put(r, CENTRE), REFUSED),
    Row("delete the centre's catalog copy", _delete(CENTRE), REFUSED),
    Row("read own repository in another bucket",
        lambda r: r.agent.get_object(Bucket=r.other_bucket, Key=r.own("config")), REFUSED),
    # nothing on the bucket
    Row("put a bucket policy", lambda r: r.agent.put_bucket_policy(
        Bucket=r.bucket, Policy='{"Version":"2012-10-17","Statement":[]}'), REFUSED),
    Row("suspend versioning", lambda r: r.agent.put_bucket_versioning(
        Bucket=r.bucket, VersioningConfiguration={"Status": "Suspended"}), REFUSED),
    Row("delete the bucket", lambda r: r.agent.delete_bucket(Bucket=r.bucket), REFUSED),
    Row("list every bucket", _list_buckets, REFUSED,
        seaweedfs=(ALLOWED, "SeaweedFS answers ListBuckets to every identity, but with the "
                            "buckets its policy names only: the other bucket is not shown")),
]


def _outcome(row: Row, repository: Repository) -> str:
    try:
        row.request(repository)
    except botocore.exceptions.ClientError as error:
        code = error.response["Error"]["Code"]
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        if status == 412 or code == "PreconditionFailed":
            return EXISTS
        if status == 403 and code == "AccessDenied":
            return REFUSED
        return f"failed otherwise ({status} {code})"
    return ALLOWED


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_rights_of_an_aws_iam_key_on_moto(moto_repository, row):
    outcome = _outcome(row, moto_repository)
    if row.moto_gap and outcome == ALLOWED and row.expected != ALLOWED:
        pytest.xfail(row.moto_gap)
    assert outcome == row.expected, f"{row.name}: {outcome}"


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_rights_of_a_seaweedfs_key(seaweedfs_repository, row):
    expected, why = row.seaweedfs or (row.expected, "")
    outcome = _outcome(row, seaweedfs_repository)
    assert outcome == expected, f"{row.name}: {outcome}; expected {expected} {why}".strip()


def test_seaweedfs_declares_what_it_cannot_refuse(seaweedfs_repository):
    """The rows where SeaweedFS lets a key through are the ones its broker declares."""
    guarantees = seaweedfs_repository.server.broker(
        StoreSpec(name="s", url=f"s3://{seaweedfs_repository.bucket}/drd",
                  endpoint=seaweedfs_repository.server.endpoint)).guarantees
    assert guarantees.isolated and guarantees.refuses_delete
    assert not guarantees.refuses_overwrite and guarantees.needs_object_lock


def test_moto_stored_the_policy_in_the_regions_partition(moto_repository):
    """What moto matched the requests against: ARNs of the signing region's partition
    (``arn:aws-cn:`` in China), as AWS would."""
    iam = moto_repository.server.client("iam")
    document = iam.get_user_policy(UserName=moto_repository.credential.principal,
                                   PolicyName="drd-repository")["PolicyDocument"]
    partition = partition_of(moto_repository.server.region)
    resources = [resource for statement in document["Statement"]
                 for resource in statement["Resource"]]
    assert resources and all(resource.startswith(f"arn:{partition}:s3:::")
                             for resource in resources)


# -- the broker's life cycle: check, issue, keys, disable, remove ---------------------------

def _works(server: Server, bucket: str, scope: RepositoryScope,
           credential: IssuedCredential) -> bool:
    agent = _client("s3", server.endpoint, server.region, credential.access_key_id,
                    credential.secret_access_key.reveal())
    try:
        agent.list_objects_v2(Bucket=bucket, Prefix=f"{scope.prefix}/", MaxKeys=1)
    except botocore.exceptions.ClientError as error:
        assert error.response["Error"]["Code"] in ("InvalidAccessKeyId", "AccessDenied")
        return False
    return True


def _stops_working(server: Server, bucket: str, scope: RepositoryScope,
                   credential: IssuedCredential, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _works(server, bucket, scope, credential):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _life_cycle(server: Server) -> None:
    bucket = _new_bucket(server)
    spec = StoreSpec(name=f"store-{bucket}", url=f"s3://{bucket}/drd", endpoint=server.endpoint,
                     region=server.region)
    broker = server.broker(spec)
    assert broker.check().startswith(f"{server.kind}: ")
    scope = repository_scope(spec, "finance/fileserver", "fileserver")
    principal = principal_name(scope)
    assert broker.keys(principal) == []

    first = broker.issue(scope)
    assert first.principal == principal
    assert _works(server, bucket, scope, first)
    second = broker.issue(scope)  # rotation: a new key while the old one still works
    assert set(broker.keys(principal)) == {first.access_key_id, second.access_key_id}
    assert _works(server, bucket, scope, first) and _works(server, bucket, scope, second)

    broker.disable(principal, first.access_key_id)
    assert _stops_working(server, bucket, scope, first)
    assert _works(server, bucket, scope, second)
    assert broker.keys(principal) == [second.access_key_id]
    broker.disable(principal, first.access_key_id)  # done already: not an error

    broker.remove(principal)
    assert broker.keys(principal) == []
    assert _stops_working(server, bucket, scope, second)
    broker.remove(principal)  # gone already: not an error
    if server.kind == "aws-iam":
        with pytest.raises(botocore.exceptions.ClientError) as missing:
            server.client("iam").get_user(UserName=principal)
        assert missing.value.response["Error"]["Code"] == "NoSuchEntity"

    again = broker.issue(scope)  # a retired system enrolled again gets a new user
    assert _works(server, bucket, scope, again)
    broker.remove(principal)


def test_broker_life_cycle_on_moto(moto):
    _life_cycle(moto)


def test_broker_life_cycle_on_seaweedfs(seaweedfs):
    _life_cycle(seaweedfs)


def test_aws_allows_two_keys_per_user(moto):
    """IAM's quota (moto keeps it too): a third key is refused, saying why, so rotation
    must disable the old key before a second rotation; the two keys still work."""
    bucket = _new_bucket(moto)
    spec = StoreSpec(name="q", url=f"s3://{bucket}", endpoint=moto.endpoint, region=moto.region)
    broker = moto.broker(spec)
    scope = repository_scope(spec, "finance/fileserver", "fileserver")
    first, second = broker.issue(scope), broker.issue(scope)
    with pytest.raises(StoreError, match="AccessKeysPerUser"):
        broker.issue(scope)
    assert set(broker.keys(first.principal)) == {first.access_key_id, second.access_key_id}
    broker.remove(first.principal)


def _agent_cannot_make_keys(server: Server) -> None:
    """check() with a system's own key (not the store's) says the centre's key lacks the
    right to make users: an agent's key can make no user of its own."""
    bucket = _new_bucket(server)
    spec = StoreSpec(name="k", url=f"s3://{bucket}", endpoint=server.endpoint,
                     region=server.region)
    broker = server.broker(spec)
    credential = broker.issue(repository_scope(spec, "finance/fileserver", "fileserver"))
    try:
        as_agent = open_broker(server.kind, spec, credential.access_key_id,
                               credential.secret_access_key, iam_endpoint=server.endpoint,
                               timeout=5.0)
        with pytest.raises(CredentialsUnsupported, match="cannot make users"):
            as_agent.check()
    finally:
        broker.remove(credential.principal)


def test_a_systems_key_cannot_make_keys_on_moto(moto):
    _agent_cannot_make_keys(moto)


def test_a_systems_key_cannot_make_keys_on_seaweedfs(seaweedfs):
    _agent_cannot_make_keys(seaweedfs)

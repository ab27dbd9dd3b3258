"""A compromised department system, as an attacker would use it: issue 14's proof.

A real centre (uvicorn in a thread, as tests/integration/test_agent_centre.py serves it)
with three SeaweedFS stores in two regions, each on its own server, each an Object Lock
bucket, policy ``min_copies: 2``. Two systems enrol and back up through real agents
(``drd-agent`` in subprocesses, restic through the fan-out). Then the attacker, holding
``fs1``'s agent home, reads the keys out of ``assignment.json`` and tries, with boto3 and
restic, what ransomware would: every attempt is refused by the stores, or -- the one thing
SeaweedFS cannot refuse, overwriting fs1's own objects -- found by verification, healed
from the locked version and alerted as ``tamper`` naming fs1; nothing of fs2 is touched,
the centre's catalog copies stay, and fs1 still backs up (a store down: the quorum),
restores with its own keys, and its drill passes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from drd.config import load_config
from drd.crypto.keystore import KeyStore
from drd.devstores import start_seaweed
from drd.recovery.copies import publish
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.stores.url import StoreSpec
from tests.integration.test_agent_centre import BIN, Centre, agent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}
PREFIX = "city"


def policy_text(source: Path) -> str:
    return f"""\
policy: agent-test
schedule: "0 3 * * *"
sources:
  - path: {source}
stores: [dc-a, dc-b, region-b]
min_copies: 2
retention: {{keep_daily: 7}}
object_lock_days: 1
rpo: 2d
rto: 1h
"""


@pytest.fixture
def centre(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    servers = {name: start_seaweed(tmp_path / f"weed-{name}", name=name) for name in STORES}
    home = tmp_path / "centre"
    initialise(home, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    for name, region in STORES.items():
        server = servers[name]
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"s3://drd-{name}/{PREFIX}", endpoint=server.endpoint,
            region=region, object_lock=True), server.access_key, server.secret)
    source = tmp_path / "share"  # both systems back up this tree, each to its repository
    for index in range(30):
        folder = source / f"d{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.txt").write_bytes(os.urandom(2000 + index * 300))
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(source))
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))
    from drd.api.app import create_app

    keystore = KeyStore(config.keys_dir, master_key)
    served = Centre(home, catalog, keystore, create_app(catalog, master_key, config),
                    tmp_path / "vault")
    served.start()
    served.servers, served.config, served.master_key = servers, config, master_key
    served.source = source
    yield served
    served.stop()
    catalog.dispose()
    for server in servers.values():
        server.stop()


def enroll(centre, tmp_path: Path, system: str) -> Path:
    home = tmp_path / f"agent-{system}"
    agent("enroll", "--server", centre.url, "--token", "-", home=home,
          input=centre.token(system) + "\n")
    return home


def stolen_keys(home: Path) -> dict[str, dict]:
    """What an attacker reads out of the agent's home."""
    assignment = json.loads((home / "assignment.json").read_text())
    return {store["name"]: store for store in assignment["stores"]}


def s3(centre, store: dict):
    return boto3.client("s3", endpoint_url=store["endpoint"], region_name="us-east-1",
                        aws_access_key_id=store["access_key_id"],
                        aws_secret_access_key=store["secret_access_key"],
                        config=Config(retries={"total_max_attempts": 1}))


def admin(centre, name: str):
    server = centre.servers[name]
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.access_key,
                        aws_secret_access_key=server.secret_key)


def refused(call, **arguments) -> str | None:
    """The error code when the store refuses ``call(**arguments)``; None when it is done."""
    try:
        call(**arguments)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return None


def keys_of(client, bucket: str, prefix: str) -> dict[str, str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def drd(centre, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DRD_", "AWS_"))}
    environment["DRD_HOME"] = str(centre.home)
    result = subprocess.run([str(BIN / "drd"), *args], env=environment, capture_output=True,
                            text=True, timeout=600)
    if check is not None:
        assert result.returncode == check, (args, result.stdout, result.stderr)
    return result


def test_a_stolen_agent_home_destroys_nothing(centre, tmp_path: Path) -> None:
    fs1 = enroll(centre, tmp_path, "fs1")
    fs2 = enroll(centre, tmp_path, "fs2")
    for home in (fs1, fs2):
        result = json.loads(agent("backup", "--json", home=home).stdout)
        assert result["ok"] and all(result["stores"].values())
    publish(centre.catalog, centre.master_key, centre.keystore, centre.config)
    before = {name: keys_of(admin(centre, name), f"drd-{name}", f"{PREFIX}/")
              for name in STORES}
    assert all(any("/_drd-centre/" in key or key.startswith(f"{PREFIX}/_drd-centre/")
                   for key in keys) for keys in before.values())
    # restic's locks were removed through the fan-out with the agent's own keys
    assert not [key for keys in before.values() for key in keys if "/locks/" in key]

    stolen = stolen_keys(fs1)
    for name, store in stolen.items():
        assert store["access_key_id"] != centre.servers[name].access_key
        attacker = s3(centre, store)
        bucket = f"drd-{name}"
        own = f"{PREFIX}/parks/fs1/"
        data = sorted(key for key in before[name] if key.startswith(own + "data/"))
        snapshots = [key for key in before[name] if key.startswith(own + "snapshots/")]
        assert refused(attacker.delete_object, Bucket=bucket, Key=data[0]) \
            == "AccessDenied"
        assert refused(attacker.delete_object, Bucket=bucket, Key=snapshots[0]) \
            == "AccessDenied"
        assert refused(attacker.delete_objects, Bucket=bucket, Delete={
            "Objects": [{"Key": key} for key in data]}) in (None, "AccessDenied")
        assert refused(attacker.list_objects_v2,
            Bucket=bucket, Prefix=f"{PREFIX}/parks/fs2/") == "AccessDenied"
        assert refused(attacker.list_objects_v2, Bucket=bucket) == "AccessDenied"
        other = next(key for key in before[name] if key.startswith(f"{PREFIX}/parks/fs2/data/"))
        assert refused(attacker.get_object, Bucket=bucket, Key=other) == "AccessDenied"
        assert refused(attacker.delete_object, Bucket=bucket, Key=other) \
            == "AccessDenied"
        assert refused(attacker.put_object, Bucket=bucket, Key=other, Body=b"x") \
            == "AccessDenied"
        for key in (key for key in before[name] if "_drd-centre/" in key):
            assert refused(attacker.delete_object, Bucket=bucket, Key=key) \
                == "AccessDenied"
        versions = admin(centre, name).list_object_versions(Bucket=bucket, Prefix=data[0])
        version = versions["Versions"][0]["VersionId"]
        assert refused(attacker.delete_object, Bucket=bucket, Key=data[0],
                                                      VersionId=version) == "AccessDenied"

    # restic itself, with the stolen keys and password, cannot forget or prune
    store = stolen["region-b"]
    password = (fs1 / "repository.password").read_text().strip()
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                   "AWS_ACCESS_KEY_ID": store["access_key_id"],
                   "AWS_SECRET_ACCESS_KEY": store["secret_access_key"],
                   "RESTIC_PASSWORD": password, "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
                   "RESTIC_REPOSITORY":
                       f"s3:{store['endpoint']}/drd-region-b/{PREFIX}/parks/fs1"}
    forget = subprocess.run(["restic", "forget", "latest", "--prune"],
                            env=environment, capture_output=True, text=True, timeout=300)
    assert forget.returncode != 0
    after = {name: keys_of(admin(centre, name), f"drd-{name}", f"{PREFIX}/")
             for name in STORES}
    for name in STORES:
        lost = set(before[name]) - set(after[name])
        assert not [key for key in lost if "/locks/" not in key], (name, lost)
        assert all(after[name][key] == before[name][key] for key in before[name]
                   if "/locks/" not in key)

    # the one thing SeaweedFS cannot refuse: overwriting fs1's own objects, everywhere
    victim = next(key for key in sorted(before["dc-a"])
                  if key.startswith(f"{PREFIX}/parks/fs1/data/"))
    for name, store in stolen.items():
        s3(centre, store).put_object(Bucket=f"drd-{name}", Key=victim, Body=b"ransom")
    # no store holds a good current copy: each is healed from the newest version whose
    # bytes hash to the pack's name (its own locked one, or another store's)
    verified = json.loads(drd(centre, "verify", "fs1", "--full", "--json").stdout)
    assert verified["ok"] and verified["lost"] == 0, verified["problems"]
    healed = {(finding["store"], finding["key"]) for run in verified["runs"]
              for finding in run["healed"]}
    assert {(name, victim.split("/parks/fs1/", 1)[1]) for name in STORES} <= healed
    alerts = json.loads(drd(centre, "alerts", "--json").stdout)
    tamper = [alert for alert in alerts if alert["kind"] == "tamper"]
    assert tamper and all("fs1" in json.dumps(alert) for alert in tamper)
    for name in STORES:  # healed: the good bytes are back in every store
        body = admin(centre, name).get_object(Bucket=f"drd-{name}", Key=victim)["Body"].read()
        assert body != b"ransom"
        assert __import__("hashlib").sha256(body).hexdigest() == victim.rsplit("/", 1)[1]

    # fs1 still backs up with one store down (the quorum), and restores with its own keys
    centre.servers["dc-b"].stop()
    (centre.source / "new.txt").write_text("after the attack\n")
    result = json.loads(agent("backup", "--json", home=fs1).stdout)
    assert result["ok"] and result["stores"] == {"dc-a": True, "dc-b": False,
                                                 "region-b": True}
    target = tmp_path / "restored"
    agent("restore", "--target", str(target), "--store", "region-b", "--json", home=fs1)
    restored = next(target.rglob("new.txt"))
    assert restored.read_text() == "after the attack\n"
    centre.servers["dc-b"] = start_seaweed(centre.servers["dc-b"].data_dir, name="dc-b")
    # reports are claims: replication (the daemon's job, here by hand) confirms the
    # snapshots the stores hold, and brings dc-b up to date
    drd(centre, "replicate", "fs1")
    drill = json.loads(drd(centre, "drill", "run", "fs1", "--store", "region-b",
                           "--json").stdout)
    assert drill["passed"], drill

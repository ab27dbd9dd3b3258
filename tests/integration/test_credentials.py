"""Systems' own store keys on a real SeaweedFS, through the centre's services.

A centre (``drd init``'s service, the catalog on SQLite and on PostgreSQL) with two
SeaweedFS stores (Object Lock buckets, each its own server); systems get keys through the
enrollment preview, as agents do, and the tests use those keys with boto3 as an agent --
or an attacker holding its home -- would. Checked: each system's key works in its own
repository only; retiring a system or revoking its agent token disables its keys in every
store; a store that is down when a key must be disabled is retried and ``pending_work``
shows it until done; a rotation keeps the old key working until the agent's heartbeat
names the new one; a store added to the policy gets keys for every system of the policy;
a recovered catalog (no secrets) replaces the keys.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
import sqlalchemy as sa
from botocore.config import Config
from sqlalchemy.orm import selectinload

from drd.alerting.evaluate import run_rules
from drd.catalog.models import StoreCredential, System
from drd.config import load_config
from drd.credentials.reconcile import reconcile
from drd.crypto.keystore import KeyStore
from drd.crypto.pem import public_key_pem
from drd.devstores import start_seaweed
from drd.services import agents as agent_service
from drd.services import credentials, enrollment
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.services.protocol import HeartbeatRequest
from drd.stores.url import StoreSpec

pytestmark = [pytest.mark.integration]

POLICY = """\
policy: keys-test
schedule: "0 * * * *"
sources: [{{path: /srv}}]
stores: [{stores}]
min_copies: 1
retention: {{keep_daily: 7}}
object_lock_days: 1
rpo: 2h
rto: 1h
"""


@pytest.fixture
def servers(seaweed):
    dc_a, region_b = seaweed(2)  # started in parallel, killed at teardown
    started = {"dc-a": dc_a, "region-b": region_b}
    yield started
    for server in started.values():  # one a test restarted is not the factory's
        if server.is_running():
            server.kill()


@pytest.fixture
def centre(tmp_path: Path, database_url: str, servers, monkeypatch):
    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", "correct horse battery staple 42")
    home = tmp_path / "centre"
    initialise(home, database_url)
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    for name, region in (("dc-a", "region-a"), ("region-b", "region-b")):
        server = servers[name]
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"s3://drd-{name}/city", endpoint=server.endpoint, region=region,
            object_lock=True), server.access_key, server.secret)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(stores="dc-a, region-b"))
    policy_service.apply(catalog, [policy], store_service.store_regions(catalog))

    class Centre:
        pass

    state = Centre()
    state.home, state.config, state.catalog, state.master_key = home, config, catalog, master_key
    state.keystore = KeyStore(config.keys_dir, master_key)
    state.policy = policy
    yield state
    catalog.dispose()


def escrow_pem(centre) -> str:
    return public_key_pem(centre.keystore.escrow_public_key()).decode()


def preview(centre, system: str) -> dict:
    """Issue a token for ``system`` and preview it, as ``drd-agent enroll`` does: the
    assignment's stores with the keys the agent would get."""
    issued = enrollment.issue_token(centre.catalog, system=system, department="parks",
                                    policy="keys-test",
                                    ca_sha256=centre.keystore.ca_fingerprint(),
                                    server="https://127.0.0.1:1")
    answer = enrollment.preview(centre.catalog, issued.token.text.reveal(), centre.master_key,
                                escrow_pem(centre))
    return {store.name: store for store in answer.assignment.stores}


def enrol(centre, system: str) -> dict:
    """Preview, then mark ``system`` enrolled with an agent token, as enrollment leaves it."""
    stores = preview(centre, system)
    with centre.catalog.session() as session:
        row = session.scalar(sa.select(System).where(System.name == system))
        row.status = "enrolled"
        from drd.catalog.models import Token

        session.add(Token(name=f"agent:{system}", role="agent",
                          token_hash=Token.hash_token(f"agent-token-{system}"),
                          departments=["parks"], systems=[system]))
    return stores


def client(servers, store, access: str | None = None, secret: str | None = None):
    server = servers[store.name]
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=access or store.access_key_id,
                        aws_secret_access_key=secret or store.secret_access_key,
                        config=Config(retries={"total_max_attempts": 1}))


def refused(call, **arguments) -> str | None:
    """The error code when the store refuses ``call(**arguments)``; None when it is done."""
    try:
        call(**arguments)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    return None


def alert_views(catalog) -> list[dict]:
    from drd.services.alerts import list_alerts

    return [view.as_dict() for view in list_alerts(catalog)]


def keys(centre, system: str) -> list[StoreCredential]:
    with centre.catalog.read_session() as session:
        return list(session.scalars(sa.select(StoreCredential).join(System)
                                    .where(System.name == system)
                                    .options(selectinload(StoreCredential.store))
                                    .order_by(StoreCredential.id)))


def test_each_system_gets_keys_of_its_own_that_work_in_its_repository_only(centre, servers):
    fs1 = enrol(centre, "fs1")
    fs2 = enrol(centre, "fs2")
    for name in ("dc-a", "region-b"):
        store = fs1[name]
        assert store.credentials == "seaweedfs" and store.write_once
        assert store.access_key_id not in (servers[name].access_key,)
        assert store.secret_access_key != servers[name].secret_key
        own = client(servers, store)
        bucket = f"drd-{name}"
        assert refused(own.put_object, Bucket=bucket, Key="city/parks/fs1/data/aa/x",
                                              Body=b"x") is None
        assert refused(own.list_objects_v2, Bucket=bucket,
                                                   Prefix="city/parks/fs1/") is None
        # the other system's repository, the centre's copies, the whole bucket
        other = client(servers, fs2[name])
        assert refused(other.put_object, Bucket=bucket, Key="city/parks/fs2/config",
                                                Body=b"c") is None
        assert refused(own.get_object, Bucket=bucket,
                                              Key="city/parks/fs2/config") == "AccessDenied"
        assert refused(own.list_objects_v2, Bucket=bucket,
                                                   Prefix="city/parks/fs2/") == "AccessDenied"
        assert refused(own.list_objects_v2, Bucket=bucket) == "AccessDenied"
        assert refused(own.delete_object,
            Bucket=bucket, Key="city/_drd-centre/copy") == "AccessDenied"
        assert refused(own.delete_object,
            Bucket=bucket, Key="city/parks/fs1/data/aa/x") == "AccessDenied"
        assert refused(own.put_object, Bucket=bucket, Key="city/parks/fs1/locks/l1",
                                              Body=b"l") is None
        assert refused(own.delete_object, Bucket=bucket,
                                                 Key="city/parks/fs1/locks/l1") is None
    # a second preview of the same token hands out the same keys, not new ones
    token = token_for(centre, "fs3")
    again = preview_with(centre, token)
    assert preview_with(centre, token)["dc-a"].access_key_id == again["dc-a"].access_key_id
    assert len([k for k in keys(centre, "fs3") if k.state == "active"]) == 2


def test_retiring_a_system_disables_its_keys_in_every_store(centre, servers):
    fs1 = enrol(centre, "fs1")
    revoked = credentials.retire_system(centre.catalog, "fs1")
    assert revoked >= 1
    done = credentials.apply_now(centre.catalog, centre.master_key)
    assert done.disabled == 2 and not done.failures
    for name, store in fs1.items():
        code = refused(client(servers, store).list_objects_v2,
            Bucket=f"drd-{name}", Prefix="city/parks/fs1/")
        assert code == "InvalidAccessKeyId"
    assert {k.state for k in keys(centre, "fs1")} == {"disabled"}
    assert credentials.pending_work(centre.catalog) == []


def test_a_revoked_agent_token_cuts_the_system_off_and_a_store_down_is_retried(centre,
                                                                            servers):
    fs1 = enrol(centre, "fs1")
    servers["region-b"].stop()
    from drd.services.tokens import revoke_token

    revoke_token(centre.catalog, "agent:fs1")
    done = credentials.apply_now(centre.catalog, centre.master_key, timeout=2)
    assert done.disabled == 1 and len(done.failures) == 1
    assert "region-b" in done.failures[0]
    waiting = credentials.pending_work(centre.catalog)
    assert [(k.store, k.state, k.reason) for k in waiting] == [
        ("region-b", "disabling", "agent token revoked")]
    assert waiting[0].last_error
    # a second failed pass: the alert rules say the key still works there
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert reconcile(centre.catalog, centre.master_key, now=later, timeout=2).failures
    run_rules(centre.catalog)
    (alert,) = [a for a in alert_views(centre.catalog) if a["kind"] == "keys_not_disabled"]
    assert alert["severity"] == "critical" and "fs1" in alert["message"]
    # the daemon's next pass after the backoff, once the store is back on its port
    servers["region-b"] = start_seaweed(servers["region-b"].data_dir, name="region-b")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    assert reconcile(centre.catalog, centre.master_key, now=later).disabled == 1
    assert credentials.pending_work(centre.catalog) == []
    run_rules(centre.catalog)
    assert not [a for a in alert_views(centre.catalog) if a["kind"] == "keys_not_disabled"]
    code = refused(client(servers, fs1["region-b"]).list_objects_v2,
        Bucket="drd-region-b", Prefix="city/parks/fs1/")
    assert code == "InvalidAccessKeyId"


def test_a_rotation_keeps_the_old_key_until_the_agent_names_the_new_one(centre, servers):
    fs1 = enrol(centre, "fs1")
    assert credentials.request_rotation(centre.catalog, "fs1") == 2
    done = credentials.apply_now(centre.catalog, centre.master_key)
    assert done.issued == 2 and done.disabled == 0
    with centre.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        fresh = agent_service.build_assignment(
            session, system, centre.master_key,
            escrow_pem(centre))
    new = {store.name: store for store in fresh.stores}
    assert new["dc-a"].access_key_id != fs1["dc-a"].access_key_id
    # both work until the agent says it holds the new one
    for store in (fs1["dc-a"], new["dc-a"]):
        assert refused(client(servers, store).list_objects_v2,
            Bucket="drd-dc-a", Prefix="city/parks/fs1/") is None
    identity = agent_service.authenticate_agent(centre.catalog, "agent-token-fs1")
    heartbeat = HeartbeatRequest(hostname="h", agent_version="1", restic_version="0.14",
                                 store_keys={name: store.access_key_id
                                             for name, store in fs1.items()})
    answer = agent_service.record_heartbeat(centre.catalog, identity, heartbeat)
    assert reconcile(centre.catalog, centre.master_key).disabled == 0
    heartbeat.store_keys = {name: store.access_key_id for name, store in new.items()}
    second = agent_service.record_heartbeat(centre.catalog, identity, heartbeat)
    assert second.keys_version == answer.keys_version  # the centre's keys did not change
    assert reconcile(centre.catalog, centre.master_key).disabled == 2
    assert refused(client(servers, fs1["dc-a"]).list_objects_v2,
        Bucket="drd-dc-a", Prefix="city/parks/fs1/") == "InvalidAccessKeyId"
    assert refused(client(servers, new["dc-a"]).list_objects_v2,
        Bucket="drd-dc-a", Prefix="city/parks/fs1/") is None


def test_a_store_added_to_the_policy_gets_keys_for_every_system(centre, servers, seaweed):
    enrol(centre, "fs1")
    enrol(centre, "fs2")
    (server,) = seaweed(1)
    store_service.add_store(centre.catalog, centre.master_key, StoreSpec(
        name="dc-b", url="s3://drd-dc-b/city", endpoint=server.endpoint,
        region="region-a", object_lock=True), server.access_key, server.secret)
    centre.policy.write_text(POLICY.format(stores="dc-a, region-b, dc-b"))
    policy_service.apply(centre.catalog, [centre.policy],
                         store_service.store_regions(centre.catalog))
    assert reconcile(centre.catalog, centre.master_key).issued == 2
    for system in ("fs1", "fs2"):
        assert {k.store.name for k in keys(centre, system) if k.state == "active"} >= {"dc-b"}


def test_a_key_whose_secret_the_centre_lost_is_replaced(centre, servers):
    fs1 = enrol(centre, "fs1")
    with centre.catalog.session() as session:  # what a recovered catalog holds
        session.execute(sa.update(StoreCredential).values(secret_encrypted=None))
    done = reconcile(centre.catalog, centre.master_key)
    assert done.superseded == 2 and done.issued == 2
    states = sorted(k.state for k in keys(centre, "fs1"))
    assert states == ["active", "active", "superseded", "superseded"]
    # the old key still works: the agent holds it until it fetches its new one
    assert refused(client(servers, fs1["dc-a"]).list_objects_v2,
        Bucket="drd-dc-a", Prefix="city/parks/fs1/") is None


def test_a_key_made_but_never_recorded_is_disabled_before_the_next_one(centre, servers):
    fs1 = enrol(centre, "fs1")
    # a pass that died between the store's answer and the catalog's commit
    from drd.stores.credentials import open_broker, repository_scope

    server = servers["dc-a"]
    spec = StoreSpec(name="dc-a", url="s3://drd-dc-a/city", endpoint=server.endpoint,
                     region="region-a")
    broker = open_broker("seaweedfs", spec, server.access_key, server.secret)
    lost = broker.issue(repository_scope(spec, "parks/fs1", "fs1"))
    credentials.request_rotation(centre.catalog, "fs1")
    assert credentials.apply_now(centre.catalog, centre.master_key).issued == 2
    assert refused(lambda: client(servers, fs1["dc-a"], lost.access_key_id,
                                  lost.secret_access_key.reveal()).list_objects_v2(
        Bucket="drd-dc-a", Prefix="city/parks/fs1/")) == "InvalidAccessKeyId"
    # the superseded key is known: it still works until the agent moves on
    assert refused(client(servers, fs1["dc-a"]).list_objects_v2,
        Bucket="drd-dc-a", Prefix="city/parks/fs1/") is None


def test_a_recovered_centre_replaces_the_keys_once_it_has_the_stores_keys(centre, servers,
                                                                         tmp_path, monkeypatch):
    from drd.catalog import Catalog, migrate
    from drd.recovery.dump import dump_lines, load_lines
    from drd.services.store_keys import set_store_keys

    fs1 = enrol(centre, "fs1")
    lines = list(dump_lines(centre.catalog, {}))
    # another centre: its own master key, the catalog from the copy (no secret in it)
    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", "another centre, another passphrase")
    home = tmp_path / "rebuilt"
    initialise(home, f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    rebuilt_key = open_master_key(load_config(home))
    url = f"sqlite:///{tmp_path / 'loaded.sqlite'}"
    migrate(url)
    rebuilt = Catalog(url)
    try:
        with rebuilt.session() as session:
            load_lines(lines, session)
        with rebuilt.read_session() as session:
            loaded = list(session.scalars(sa.select(StoreCredential)))
        assert [row.state for row in loaded] == ["active", "active"]
        assert all(row.secret_encrypted is None for row in loaded)
        # without the stores' own keys nothing can be done yet, and nothing is lost
        waiting = reconcile(rebuilt, rebuilt_key)
        assert waiting.failures and not waiting.changed
        for name in ("dc-a", "region-b"):
            set_store_keys(rebuilt, rebuilt_key, name, servers[name].access_key,
                           servers[name].secret)
        done = credentials.apply_now(rebuilt, rebuilt_key)
        assert done.superseded == 2 and done.issued == 2 and not done.failures
        # the agent's keys keep working until it fetches the new ones
        assert refused(client(servers, fs1["dc-a"]).list_objects_v2, Bucket="drd-dc-a",
                       Prefix="city/parks/fs1/") is None
    finally:
        rebuilt.dispose()


def test_the_leader_rotates_keys_older_than_credential_rotation_days(centre, servers):
    from drd.daemon.watch import Watch

    fs1 = enrol(centre, "fs1")
    with centre.catalog.session() as session:
        session.execute(sa.update(StoreCredential).values(
            issued_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=100)))  # 90 + spread
    centre.config.credential_rotation_days = 90
    Watch(centre.config, centre.catalog, centre.master_key)._keys()
    states = sorted(k.state for k in keys(centre, "fs1"))
    assert states == ["active", "active", "superseded", "superseded"]
    assert refused(client(servers, fs1["dc-a"]).list_objects_v2, Bucket="drd-dc-a",
                   Prefix="city/parks/fs1/") is None
    centre.config.credential_rotation_days = 0  # never: nothing more happens
    Watch(centre.config, centre.catalog, centre.master_key)._keys()
    assert sorted(k.state for k in keys(centre, "fs1")) == states


def test_a_new_key_never_reaches_the_log_even_at_debug(servers, caplog):
    import logging

    from drd.secrets import WIRE_LOGGERS, quiet_wire_loggers
    from drd.stores.credentials import open_broker, repository_scope

    server = servers["dc-a"]
    spec = StoreSpec(name="dc-a", url="s3://drd-dc-a/city", endpoint=server.endpoint,
                     region="region-a")
    broker = open_broker("seaweedfs", spec, server.access_key, server.secret)
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                 aws_access_key_id=server.access_key,
                 aws_secret_access_key=server.secret_key).create_bucket(Bucket="drd-dc-a")
    caplog.set_level(logging.DEBUG)
    try:
        for name in WIRE_LOGGERS:  # what botocore does at DEBUG when nothing holds it
            logging.getLogger(name).setLevel(logging.NOTSET)
        loud = broker.issue(repository_scope(spec, "parks/loud", "loud"))
        assert loud.secret_access_key.reveal() in caplog.text
        caplog.clear()
        quiet_wire_loggers()  # as drd, drd-agent and drd serve set logging up
        quiet = broker.issue(repository_scope(spec, "parks/quiet", "quiet"))
        assert quiet.secret_access_key.reveal() not in caplog.text
        assert server.secret_key not in caplog.text
    finally:
        quiet_wire_loggers()


def token_for(centre, system: str, expires: dt.timedelta = dt.timedelta(hours=1)) -> str:
    issued = enrollment.issue_token(centre.catalog, system=system, department="parks",
                                    policy="keys-test",
                                    ca_sha256=centre.keystore.ca_fingerprint(),
                                    server="https://127.0.0.1:1", expires_in=expires)
    return issued.token.text.reveal()


def preview_with(centre, token: str) -> dict:
    answer = enrollment.preview(centre.catalog, token, centre.master_key, escrow_pem(centre))
    return {store.name: store for store in answer.assignment.stores}


def works(servers, store, system: str = "fs1") -> bool:
    return refused(client(servers, store).list_objects_v2, Bucket=f"drd-{store.name}",
                   Prefix=f"city/parks/{system}/") is None


def test_a_previewed_enrollment_token_leaves_no_working_key_once_it_expires(centre, servers):
    token = token_for(centre, "fs1", expires=dt.timedelta(minutes=1))
    seen = preview_with(centre, token)  # whoever held the token (or stole it)
    assert works(servers, seen["dc-a"])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    from unittest import mock

    with mock.patch("drd.credentials.reconcile.utcnow", return_value=later):
        done = reconcile(centre.catalog, centre.master_key, now=later)
    assert done.disabled == 2
    assert not works(servers, seen["dc-a"]) and not works(servers, seen["region-b"])


def test_a_new_token_means_new_keys_and_enrolment_replaces_the_previewed_ones(centre,
                                                                             servers):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drd.crypto.seal import password_context, seal
    from drd.services.protocol import EnrollRequest

    leaked = preview_with(centre, token_for(centre, "fs1"))
    token = token_for(centre, "fs1")  # the administrator issues another one
    credentials.apply_now(centre.catalog, centre.master_key)
    assert not works(servers, leaked["dc-a"])  # the first token's keys are gone
    previewed = preview_with(centre, token)
    assert previewed["dc-a"].access_key_id != leaked["dc-a"].access_key_id
    sealed = seal(centre.keystore.escrow_public_key(), b"password", password_context("fs1"))
    key = Ed25519PrivateKey.generate()
    enrolled = enrollment.enroll(centre.catalog, EnrollRequest(
        token=token, hostname="fs1.parks", sealed_password=base64.b64encode(sealed).decode(),
        agent_public_key=public_key_pem(key.public_key()).decode()),
        master_key=centre.master_key)
    with centre.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        fresh = {store.name: store for store in agent_service.build_assignment(
            session, system, centre.master_key, escrow_pem(centre)).stores}
    assert fresh["dc-a"].access_key_id != previewed["dc-a"].access_key_id
    assert works(servers, previewed["dc-a"])  # until the agent holds its new keys
    identity = agent_service.authenticate_agent(centre.catalog,
                                                enrolled.agent_token.reveal())
    agent_service.record_heartbeat(centre.catalog, identity, HeartbeatRequest(
        hostname="h", agent_version="1", restic_version="0.14",
        store_keys={name: store.access_key_id for name, store in fresh.items()}))
    assert reconcile(centre.catalog, centre.master_key).disabled == 2
    assert not works(servers, previewed["dc-a"]) and works(servers, fresh["dc-a"])


def test_the_agent_computes_the_keys_version_the_centre_sends(centre, servers):
    from agents.assignment import keys_version, parse_assignment

    enrol(centre, "fs1")
    with centre.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        assignment = agent_service.build_assignment(session, system, centre.master_key,
                                                    escrow_pem(centre))
    identity = agent_service.authenticate_agent(centre.catalog, "agent-token-fs1")
    answer = agent_service.record_heartbeat(centre.catalog, identity, HeartbeatRequest(
        hostname="h", agent_version="1", restic_version="0.14"))
    parsed = parse_assignment(assignment.model_dump(mode="json"))
    assert answer.keys_version == keys_version(parsed)
    credentials.request_rotation(centre.catalog, "fs1")
    credentials.apply_now(centre.catalog, centre.master_key)
    after = agent_service.record_heartbeat(centre.catalog, identity, HeartbeatRequest(
        hostname="h", agent_version="1", restic_version="0.14"))
    assert after.keys_version != answer.keys_version  # the agent will fetch its new keys


def test_a_stores_broker_changes_only_when_its_policies_still_hold_and_its_keys_are_gone(
        centre, servers):
    from drd.errors import UserError

    fs1 = enrol(centre, "fs1")
    with pytest.raises(UserError, match="allow_shared_credentials"):
        store_service.change_broker(centre.catalog, centre.master_key, "dc-a", "shared")
    assert works(servers, fs1["dc-a"])  # refused: nothing changed
    centre.policy.write_text(POLICY.format(stores="dc-a, region-b")
                             + "allow_shared_credentials: true\n")
    policy_service.apply(centre.catalog, [centre.policy],
                         store_service.store_regions(centre.catalog))
    assert store_service.change_broker(centre.catalog, centre.master_key, "dc-a",
                                       "shared") == "shared"
    assert not works(servers, fs1["dc-a"])  # the system's own key there is gone
    assert works(servers, fs1["region-b"])
    with centre.catalog.session() as session:
        system = session.scalar(sa.select(System).where(System.name == "fs1"))
        handed = {store.name: store for store in agent_service.build_assignment(
            session, system, centre.master_key, escrow_pem(centre)).stores}
    assert handed["dc-a"].access_key_id == servers["dc-a"].access_key  # shared, as allowed


def test_a_store_that_does_not_keep_its_brokers_promises_is_refused(servers, tmp_path,
                                                                    monkeypatch):
    """SeaweedFS taken for an AWS-grammar store: drd's probe key finds out at store add."""
    from drd.stores.credentials import CredentialsUnsupported

    monkeypatch.setenv("DRD_MASTER_PASSPHRASE", "correct horse battery staple 42")
    home = tmp_path / "centre"
    initialise(home, f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    config = load_config(home)
    catalog = open_catalog(config)
    try:
        server = servers["dc-a"]
        spec = StoreSpec(name="liar", url="s3://drd-liar/city", endpoint=server.endpoint,
                         region="region-a", object_lock=True)
        with pytest.raises(CredentialsUnsupported, match="against what its aws-iam"):
            store_service.add_store(catalog, open_master_key(config), spec,
                                    server.access_key, server.secret, credentials="aws-iam")
        assert store_service.store_rows(catalog) == []
        proof = store_service.prove_broker(spec, "seaweedfs", server.access_key,
                                           server.secret)
        assert "refused list the bucket, read outside its repository, delete its data" \
            in proof and "overwrite its data" in proof.split("allowed")[1]
    finally:
        catalog.dispose()


def test_the_buckets_lock_what_systems_write_and_follow_the_policies(centre, servers):
    from drd.credentials.retention import ensure_default_retention

    fs1 = enrol(centre, "fs1")  # the preview set the buckets' default retention
    admin = boto3.client("s3", endpoint_url=servers["dc-a"].endpoint, region_name="us-east-1",
                         aws_access_key_id=servers["dc-a"].access_key,
                         aws_secret_access_key=servers["dc-a"].secret_key)

    def default_days() -> int:
        rule = admin.get_object_lock_configuration(Bucket="drd-dc-a")[
            "ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
        assert rule["Mode"] == "COMPLIANCE"
        return rule["Days"]

    assert default_days() == 1 and fs1["dc-a"].locked_by_bucket
    own = client(servers, fs1["dc-a"])
    own.put_object(Bucket="drd-dc-a", Key="city/parks/fs1/data/aa/pack", Body=b"x",
                   IfNoneMatch="*")
    retention = admin.get_object_retention(Bucket="drd-dc-a",
                                           Key="city/parks/fs1/data/aa/pack")["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert refused(own.put_object_retention, Bucket="drd-dc-a",
                   Key="city/parks/fs1/data/aa/pack",
                   Retention={"Mode": "COMPLIANCE",
                              "RetainUntilDate": dt.datetime(2090, 1, 1, tzinfo=dt.UTC)}) \
        == "AccessDenied"
    centre.policy.write_text(POLICY.format(stores="dc-a, region-b").replace(
        "object_lock_days: 1", "object_lock_days: 3"))
    policy_service.apply(centre.catalog, [centre.policy],
                         store_service.store_regions(centre.catalog))
    done = ensure_default_retention(centre.catalog, centre.master_key)  # the leader's pass
    assert done["dc-a"] == "3 days (set)" and default_days() == 3
    assert ensure_default_retention(centre.catalog, centre.master_key)["dc-a"] == "3 days"

"""The agent protocol against the real app and a real catalog (SQLite and PostgreSQL).

Each test builds a centre with ``drd init``'s service in a temporary home, registers
stores and applies a policy, and talks to :func:`drd.api.app.create_app` through
FastAPI's ``TestClient`` playing the agent: preview, enroll, assignment, heartbeat,
snapshot reports and manifests, and everything an agent may get wrong or try on.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi.testclient import TestClient

from drd.api.app import create_app
from drd.api.limits import DEFAULT_LIMIT
from drd.catalog import Catalog
from drd.catalog.models import (
    AuditEntry,
    Snapshot,
    SnapshotCopy,
    SnapshotManifest,
    System,
    Token,
)
from drd.catalog.models import Store as StoreRow
from drd.config import load_config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import public_key_pem
from drd.crypto.seal import (
    SEAL_HEAD_SIZE,
    manifest_context,
    recipient_fingerprint,
    seal,
    unseal,
)
from drd.crypto.signing import sign
from drd.errors import UserError
from drd.recorded.catalog import backfill_records, catalog_bytes, records_of
from drd.recorded.keys import manifest_keys, sealed_manifest_keys
from drd.services import agents, enrollment, snapshots, status
from drd.services import policies as policy_service
from drd.services import stores as store_service
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.services.enrollment_token import decode_token
from drd.services.protocol import EnrollRequest, keys_digest
from drd.services.refusals import Conflict
from drd.services.snapshots import canonical_json
from drd.stores.url import StoreSpec

pytestmark = pytest.mark.integration

UTC = dt.UTC
T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
S3_SECRET = "s3-secret-key-value"
POLICY = """\
policy: fileserver
schedule: "0 * * * *"
sources: [{path: /srv/share}]
stores: [dc-a, dc-b, vault-s3]
min_copies: 2
allow_shared_credentials: true    # the agent protocol's tests: every store's own keys
retention: {keep_last: 7}
rpo: 1h
rto: 4h
"""


class Clock:
    """A clock the test moves; the app reads it for every request."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Centre:
    home: Path
    catalog: Catalog
    master_key: MasterKey
    keystore: KeyStore
    clock: Clock
    client: TestClient
    policy_file: Path

    def token(self, system: str = "fs1", department: str = "parks",
              expires_in: dt.timedelta = dt.timedelta(hours=24)) -> str:
        issued = enrollment.issue_token(
            self.catalog, system=system, department=department, policy="fileserver",
            ca_sha256=self.keystore.ca_fingerprint(), server="https://centre.test:8443",
            expires_in=expires_in, now=self.clock.now)
        return issued.token.text.reveal()


@pytest.fixture
def centre(tmp_path: Path, database_url: str, monkeypatch) -> Iterator[Centre]:
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    home = tmp_path / "centre"
    initialise(home, database_url)
    config = load_config(home)
    catalog = open_catalog(config)
    master_key = open_master_key(config)
    for name in ("dc-a", "dc-b"):
        store_service.add_store(catalog, master_key, StoreSpec(
            name=name, url=f"file://{tmp_path / 'vault' / name}", region="region-a"),
            None, None)
    with catalog.session() as session:  # an S3 store without a server to check it against
        session.add(StoreRow(name="vault-s3", kind="s3", url="s3://drd/city",
                             endpoint="https://s3.region-b.test", region="region-b",
                             object_lock=True, access_key_id="AKIAVAULT",
                             credentials="shared",
                             secret_encrypted=master_key.encrypt(
                                 S3_SECRET.encode(), store_service.secret_context("vault-s3"))))
    policy_file = tmp_path / "fileserver.yaml"
    policy_file.write_text(POLICY)
    policy_service.apply(catalog, [policy_file], store_service.store_regions(catalog))
    clock = Clock(T0)
    keystore = KeyStore(config.keys_dir, master_key)
    app = create_app(catalog, master_key, config, clock=clock)
    with TestClient(app) as client:
        yield Centre(home, catalog, master_key, keystore, clock, client, policy_file)
    catalog.dispose()


class Agent:
    """What drd-agent does, by hand: its key, its password sealed to the escrow key."""

    def __init__(self, centre: Centre, token: str, hostname: str = "fs1.parks.city") -> None:
        self.centre = centre
        self.token = token
        self.system = decode_token(token).system
        self.hostname = hostname
        self.key = Ed25519PrivateKey.generate()
        self.password = base64.b64encode(b"restic-password-" + self.system.encode()).decode()
        self.agent_token: str | None = None

    def enroll_body(self, **changes) -> dict:
        escrow = self.centre.keystore.escrow_public_key()
        sealed = seal(escrow, self.password.encode(),
                      b"drd-repository-password:" + self.system.encode())
        body = {"token": self.token, "hostname": self.hostname,
                "agent_public_key": public_key_pem(self.key.public_key()).decode(),
                "sealed_password": base64.b64encode(sealed).decode()}
        body.update(changes)
        return body

    def enroll(self) -> dict:
        response = self.centre.client.post("/v1/agent/enroll", json=self.enroll_body())
        assert response.status_code == 201, response.text
        self.agent_token = response.json()["agent_token"]
        return response.json()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.agent_token}"}

    def get(self, path: str):
        return self.centre.client.get(path, headers=self.headers)

    def post(self, path: str, body):
        return self.centre.client.post(path, json=body, headers=self.headers)

    def put_manifest(self, snapshot_id: str, manifest: dict, key=None, signature=None,
                     sealed: dict | None = None):
        if signature is None:
            signature = base64.b64encode(sign(key or self.key, canonical_json(manifest)))
            signature = signature.decode()
        body = {"manifest": manifest, "signature": signature}
        if sealed is not None:
            body["sealed"] = sealed
        return self.centre.client.put(f"/v1/agent/snapshots/{snapshot_id}/manifest",
                                      json=body, headers=self.headers)

    def seal(self, snapshot_id: str, manifest: dict, *, system: str | None = None,
             sealed_for: str | None = None, escrow=None) -> tuple[bytes, dict]:
        """The manifest sealed as the agent stores it, and the upload's ``sealed``."""
        escrow = escrow or self.centre.keystore.escrow_public_key()
        blob = seal(escrow, canonical_json(manifest),
                    manifest_context(system or self.system, sealed_for or snapshot_id))
        return blob, {"head": base64.b64encode(blob[:SEAL_HEAD_SIZE]).decode(),
                      "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob),
                      "key": recipient_fingerprint(escrow)}


def _manifest(snapshot_id: str, files: int = 2) -> dict:
    return {"version": 1, "snapshot_id": snapshot_id, "files": [
        {"path": f"/srv/share/f{i}.txt", "size": i, "mtime": "2026-12-02T09:00:00Z",
         "sha256": f"{i:064x}"} for i in range(files)]}


def _report(snapshot_id: str, *, report_id: str | None = None, partial: bool = False,
            time: dt.datetime = T0, missing: int = 3, manifest: dict | None = None) -> dict:
    return {
        "report_id": report_id or str(uuid.uuid4()), "snapshot_id": snapshot_id,
        "time": time.isoformat(), "hostname": "fs1.parks.city", "paths": ["/srv/share"],
        "tags": ["drd-run:1"], "tree": "e" * 64, "files": 5204, "bytes": 444000000,
        "duration_seconds": 9.4,
        "stores": {"dc-a": {"complete": True, "missing_objects": 0, "missing": []},
                   "dc-b": {"complete": True},
                   "vault-s3": {"complete": missing == 0, "missing_objects": missing,
                                "missing": [f"data/ab/{'ab' * 32}"][:missing]}},
        "manifest_sha256": hashlib.sha256(canonical_json(manifest)).hexdigest()
        if manifest else None,
        "partial": partial,
    }


def _tokens(catalog: Catalog) -> list[Token]:
    with catalog.session() as session:
        return list(session.scalars(sa.select(Token).order_by(Token.id)))


def _system(catalog: Catalog, name: str = "fs1") -> System:
    with catalog.session() as session:
        return session.scalar(sa.select(System).where(System.name == name))


def _confirm(catalog: Catalog, snapshot_id: str) -> None:
    """What the daemon's confirmation does once the stores hold a reported snapshot."""
    with catalog.session() as session:
        session.execute(sa.update(Snapshot).where(Snapshot.restic_id == snapshot_id)
                        .values(status="active"))


def _actions(catalog: Catalog) -> list[str]:
    with catalog.session() as session:
        return list(session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


# -- unauthenticated ----------------------------------------------------------------------


def test_health_readiness_and_the_ca_certificate(centre: Centre) -> None:
    assert centre.client.get("/healthz").json() == {"status": "ok"}
    ready = centre.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    ca = centre.client.get("/v1/ca.pem")
    assert ca.status_code == 200 and ca.content == centre.keystore.ca_certificate_pem()
    assert "/v1/agent/enroll" in centre.client.get("/openapi.json").json()["paths"]


def test_readyz_says_503_when_the_catalog_is_gone(centre: Centre, tmp_path: Path) -> None:
    config = load_config(centre.home)
    broken = Catalog("postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app(broken, centre.master_key, config)
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "not ready" in response.json()["detail"]
        beat = client.post("/v1/agent/heartbeat", json={}, headers={
            "Authorization": "Bearer x"})
        assert beat.status_code in (422, 503)
    broken.dispose()


# -- the whole flow -----------------------------------------------------------------------


def test_the_whole_enrollment_flow(centre: Centre) -> None:
    token = centre.token()
    agent = Agent(centre, token)
    assert _system(centre.catalog).status == "pending"

    preview = centre.client.post("/v1/agent/enroll/preview", json={"token": token})
    assert preview.status_code == 200, preview.text
    assert preview.json()["system"] == "fs1" and preview.json()["department"] == "parks"
    assignment = preview.json()["assignment"]
    assert assignment["repository_path"] == "parks/fs1"
    assert [s["name"] for s in assignment["stores"]] == ["dc-a", "dc-b", "vault-s3"]
    # preview does not consume the token
    assert centre.client.post("/v1/agent/enroll/preview",
                              json={"token": token}).status_code == 200

    enrolled = agent.enroll()
    assert enrolled["system"] == "fs1" and enrolled["department"] == "parks"
    assert len(enrolled["agent_token"]) >= 43

    # the catalog keeps hashes only, and the system as enrolled
    rows = _tokens(centre.catalog)
    assert {row.role for row in rows} == {"enrollment", "agent"}
    assert all(token not in row.token_hash and agent.agent_token not in row.token_hash
               for row in rows)
    assert rows[0].used_at == T0 and rows[1].systems == ["fs1"]
    system = _system(centre.catalog)
    assert system.status == "enrolled" and system.hostname == "fs1.parks.city"
    assert system.enrolled_at == T0
    assert system.agent_public_key == public_key_pem(agent.key.public_key()).decode()
    password = unseal(centre.keystore.escrow_private_key(), system.sealed_password,
                      b"drd-repository-password:fs1")
    assert password.decode() == agent.password
    assert "system.enroll" in _actions(centre.catalog)

    # the token is spent
    again = centre.client.post("/v1/agent/enroll/preview", json={"token": token})
    assert again.status_code == 409 and "used already" in again.json()["detail"]
    second = centre.client.post("/v1/agent/enroll", json=agent.enroll_body())
    assert second.status_code == 409

    # assignment: the policy, the stores with their keys, the escrow key
    response = agent.get("/v1/agent/assignment")
    assert response.status_code == 200, response.text
    assignment = response.json()
    assert assignment["system"] == "fs1" and assignment["policy_version"] == 1
    assert assignment["policy"]["policy"] == "fileserver"
    assert assignment["policy"]["stores"] == ["dc-a", "dc-b", "vault-s3"]
    stores = {store["name"]: store for store in assignment["stores"]}
    assert stores["vault-s3"] == {
        "name": "vault-s3", "kind": "s3", "url": "s3://drd/city",
        "endpoint": "https://s3.region-b.test", "region": "region-b", "object_lock": True,
        "access_key_id": "AKIAVAULT", "secret_access_key": S3_SECRET,
        "credentials": "shared", "write_once": False, "locked_by_bucket": False}
    assert stores["dc-a"]["kind"] == "file" and stores["dc-a"]["secret_access_key"] is None
    assert assignment["escrow_public_key"] == public_key_pem(
        centre.keystore.escrow_public_key()).decode()

    # heartbeat, and one backup-now handed over exactly once
    beat = {"hostname": "fs1.parks.city", "agent_version": "0.1.0",
            "restic_version": "0.17.3", "last_backup_at": None, "spooled_reports": 2}
    no_keys = keys_digest([])  # every store here is shared: no key of the system's own
    assert agent.post("/v1/agent/heartbeat", beat).json() == {
        "backup_now": False, "policy_version": 1, "keys_version": no_keys}
    assert _system(centre.catalog).last_seen_at == T0
    assert _system(centre.catalog).last_heartbeat["spooled_reports"] == 2
    agents.request_backup(centre.catalog, "fs1")
    assert agent.post("/v1/agent/heartbeat", beat).json()["backup_now"] is True
    assert agent.post("/v1/agent/heartbeat", beat).json()["backup_now"] is False

    # a snapshot report, delivered twice, is recorded once
    snapshot_id = "a" * 64
    manifest = _manifest(snapshot_id)
    report = _report(snapshot_id, manifest=manifest)
    first = agent.post("/v1/agent/snapshots", report)
    assert first.status_code == 201, first.text
    assert first.json() == {"snapshot_id": snapshot_id, "report_id": report["report_id"],
                            "duplicate": False}
    repeat = agent.post("/v1/agent/snapshots", report)
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    other_report = agent.post("/v1/agent/snapshots", _report(snapshot_id))
    assert other_report.status_code == 200 and other_report.json()["duplicate"] is True
    (view,) = snapshots.list_snapshots(centre.catalog, "fs1")
    assert view.snapshot_id == snapshot_id and view.files == 5204 and view.bytes == 444000000
    assert view.status == "unconfirmed"  # a claim, until the daemon sees it in the stores
    assert view.copies["dc-a"]["state"] == "present"
    assert view.copies["vault-s3"] == {"state": "missing", "missing_objects": 3,
                                       "verified_at": None}
    assert view.manifest is False
    with centre.catalog.session() as session:
        missing = session.scalar(sa.select(SnapshotCopy.missing).join(StoreRow).where(
            StoreRow.name == "vault-s3"))
    assert missing == [f"data/ab/{'ab' * 32}"]

    # the manifest: kept once its signature verifies
    bad = agent.put_manifest(snapshot_id, manifest, key=Ed25519PrivateKey.generate())
    assert bad.status_code == 400 and "does not verify" in bad.json()["detail"]
    tampered = copy.deepcopy(manifest)
    tampered["files"][0]["size"] = 999
    forged = agent.put_manifest(snapshot_id, tampered,
                                signature=base64.b64encode(
                                    sign(agent.key, canonical_json(manifest))).decode())
    assert forged.status_code == 400
    assert agent.put_manifest(snapshot_id, manifest).status_code == 204
    assert agent.put_manifest(snapshot_id, manifest).status_code == 204  # idempotent
    different = agent.put_manifest(snapshot_id, tampered)  # signed, but not the reported one
    assert different.status_code == 400 and "report said" in different.json()["detail"]
    with centre.catalog.session() as session:
        kept = session.scalar(sa.select(SnapshotManifest))
    assert kept.content == canonical_json(manifest)
    assert snapshots.list_snapshots(centre.catalog)[0].manifest is True

    unknown = agent.put_manifest("f" * 64, _manifest("f" * 64))
    assert unknown.status_code == 404 and "report the snapshot first" in unknown.json()["detail"]


def test_a_manifest_must_match_the_reported_digest_and_snapshot(centre: Centre) -> None:
    agent = Agent(centre, centre.token())
    agent.enroll()
    manifest = _manifest("a" * 64)
    assert agent.post("/v1/agent/snapshots",
                      _report("a" * 64, manifest=manifest)).status_code == 201
    other = _manifest("a" * 64, files=3)
    response = agent.put_manifest("a" * 64, other)
    assert response.status_code == 400 and "report said" in response.json()["detail"]
    assert agent.post("/v1/agent/snapshots", _report("b" * 64)).status_code == 201
    named = agent.put_manifest("b" * 64, _manifest("a" * 64))
    assert named.status_code == 400 and "names snapshot" in named.json()["detail"]
    # without a reported digest any signed manifest is kept, then no other one
    assert agent.put_manifest("b" * 64, _manifest("b" * 64)).status_code == 204
    clash = agent.put_manifest("b" * 64, _manifest("b" * 64, files=5))
    assert clash.status_code == 409


def test_a_sealed_manifest_is_recorded_by_the_digest_of_what_the_stores_hold(
        centre: Centre) -> None:
    agent = Agent(centre, centre.token())
    agent.enroll()
    manifest = _manifest("a" * 64)
    assert agent.post("/v1/agent/snapshots",
                      _report("a" * 64, manifest=manifest)).status_code == 201

    def refused(sealed: dict, status_code: int = 400) -> str:
        response = agent.put_manifest("a" * 64, manifest, sealed=sealed)
        assert response.status_code == status_code, response.text
        return str(response.json()["detail"])

    blob, sealed = agent.seal("a" * 64, manifest)
    assert "not the object" in refused(sealed | {"sha256": "0" * 64})
    assert "not the object" in refused(sealed | {"size": sealed["size"] + 1})
    for other in (agent.seal("a" * 64, manifest, sealed_for="b" * 64)[1],
                  agent.seal("a" * 64, manifest, system="fs2")[1],
                  agent.seal("a" * 64, _manifest("a" * 64, files=3))[1]):
        assert "not the object" in refused(other)  # another context, or other bytes
    broken = base64.b64encode(b"\x02" + blob[1:SEAL_HEAD_SIZE]).decode()
    assert "first 45 bytes" in refused(sealed | {"head": broken})
    assert "head" in refused(sealed | {"head": "!" * 60})
    assert "head" in refused(sealed | {"head": "AAAA"}, 422)
    with centre.catalog.session() as session:
        assert session.scalar(sa.select(SnapshotManifest)) is None  # nothing kept yet

    assert agent.put_manifest("a" * 64, manifest, sealed=sealed).status_code == 204
    assert agent.put_manifest("a" * 64, manifest, sealed=sealed).status_code == 204
    sealed_key, signature_key = sealed_manifest_keys("a" * 64)
    system_id = _system(centre.catalog).id
    with centre.catalog.session() as session:
        kept = session.scalar(sa.select(SnapshotManifest))
        assert kept.content == canonical_json(manifest)
        assert kept.sealed_head == blob[:SEAL_HEAD_SIZE]
        records = records_of(session, system_id)
        assert (records[sealed_key].sha256, records[sealed_key].size) == \
            (hashlib.sha256(blob).hexdigest(), len(blob))
        assert signature_key in records and manifest_keys("a" * 64)[0] not in records
        # the catalog writes back exactly what the agent stored, never the plaintext
        assert catalog_bytes(session, system_id, sealed_key,
                             centre.keystore) == blob
        assert catalog_bytes(session, system_id, sealed_key) is None
        assert catalog_bytes(session, system_id,
                             manifest_keys("a" * 64)[0], centre.keystore) is None
    assert "escrow.unseal_manifest" not in _actions(centre.catalog)

    # sealed to another escrow key (a backup made with the assignment cached across an
    # escrow rotation): kept, its digest recorded as reported, but not checked
    manifest = _manifest("b" * 64)
    assert agent.post("/v1/agent/snapshots",
                      _report("b" * 64, manifest=manifest)).status_code == 201
    blob, sealed = agent.seal("b" * 64, manifest,
                              escrow=X25519PrivateKey.generate().public_key())
    assert agent.put_manifest("b" * 64, manifest, sealed=sealed).status_code == 204
    sealed_key = sealed_manifest_keys("b" * 64)[0]
    with centre.catalog.session() as session:
        record = records_of(session, system_id)[sealed_key]
        assert (record.sha256, record.size) == (hashlib.sha256(blob).hexdigest(), len(blob))
        assert "unchecked" in record.source
        for key in (sealed_key, manifest_keys("b" * 64)[0]):
            assert catalog_bytes(session, system_id, key, centre.keystore) is None
        assert backfill_records(session, system_id) == 0  # no plaintext .json recorded


# -- tokens that do not work --------------------------------------------------------------


def test_expired_forged_garbage_and_replaced_tokens_get_401(centre: Centre) -> None:
    def preview(token: str):
        return centre.client.post("/v1/agent/enroll/preview", json={"token": token})

    expired = centre.token(expires_in=dt.timedelta(hours=1))
    centre.clock.now = T0 + dt.timedelta(hours=2)
    response = preview(expired)
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    agent = Agent(centre, expired)
    assert centre.client.post("/v1/agent/enroll",
                              json=agent.enroll_body()).status_code == 401
    assert _tokens(centre.catalog)[0].used_at is None

    fresh = centre.token()
    decoded = decode_token(fresh)
    forged = enrollment_token_with(decoded, secret="B" * 43)
    response = preview(forged)
    assert response.status_code == 401 and "unknown enrollment token" in response.json()[
        "detail"]
    assert response.headers["www-authenticate"] == "Bearer"

    garbage = preview("drd-enroll-1.bm90IGpzb24")
    assert garbage.status_code == 401 and "damaged" in garbage.json()["detail"]
    assert preview("hello").status_code == 401

    newer = centre.token()
    replaced = preview(fresh)
    assert replaced.status_code == 401 and "newer" in replaced.json()["detail"]
    assert preview(newer).status_code == 200
    assert _system(centre.catalog).status == "pending"


def enrollment_token_with(token, **changes) -> str:
    from drd.services.enrollment_token import new_token

    fields = {"server": token.server, "ca_sha256": token.ca_sha256, "system": token.system,
              "expires": token.expires} | changes
    secret = fields.pop("secret")
    return new_token(fields["server"], fields["ca_sha256"], fields["system"],
                     fields["expires"], secret=secret).text.reveal()


def test_issuing_tokens(centre: Centre) -> None:
    centre.token("fs1", "parks")
    centre.token("fs1", "water")  # a pending system may move before it enrolls
    assert _system(centre.catalog).department_id is not None
    with pytest.raises(UserError, match="no policy named"):
        enrollment.issue_token(centre.catalog, system="fs2", department="parks",
                               policy="missing", ca_sha256="a" * 64, server="https://c:1")
    with pytest.raises(UserError, match="not a valid system name"):
        centre.token("FS 2")
    with pytest.raises(UserError, match="between"):
        centre.token("fs2", expires_in=dt.timedelta(days=90))
    Agent(centre, centre.token("fs3")).enroll()
    with pytest.raises(UserError, match="already enrolled"):
        centre.token("fs3")
    assert _system(centre.catalog, "fs2") is None  # nothing half-made by the refusals
    assert _actions(centre.catalog).count("system.token") == 3


def _enroll_at_once(catalog: Catalog, bodies: list[EnrollRequest]) -> list[str]:
    """Enroll with every body in its own thread, all released together; the outcomes."""
    barrier = threading.Barrier(len(bodies))
    outcomes: list[str] = []

    def enroll(body: EnrollRequest) -> None:
        barrier.wait()
        try:
            enrollment.enroll(catalog, body, now=T0)
            outcomes.append("enrolled")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=enroll, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(outcomes)


def test_two_agents_enrolling_with_one_token_at_once(centre: Centre) -> None:
    for attempt in range(3):
        token = centre.token(f"race{attempt}")
        bodies = [EnrollRequest.model_validate(Agent(centre, token).enroll_body())
                  for _ in range(2)]
        assert _enroll_at_once(centre.catalog, bodies) == ["conflict", "enrolled"]
    agent_tokens = [row for row in _tokens(centre.catalog) if row.role == "agent"]
    assert len(agent_tokens) == 3


# -- authentication and isolation ---------------------------------------------------------


def test_agents_reach_only_their_own_system(centre: Centre) -> None:
    first = Agent(centre, centre.token("fs1"))
    first.enroll()
    second = Agent(centre, centre.token("fs2", "water"), hostname="fs2.water.city")
    second.enroll()

    assert first.get("/v1/agent/assignment").json()["repository_path"] == "parks/fs1"
    assert second.get("/v1/agent/assignment").json()["repository_path"] == "water/fs2"

    report = _report("a" * 64)
    assert first.post("/v1/agent/snapshots", report).status_code == 201
    # another system's snapshot is not there for this agent
    response = second.put_manifest("a" * 64, _manifest("a" * 64))
    assert response.status_code == 404
    # nor is its report id
    stolen = second.post("/v1/agent/snapshots", _report("b" * 64,
                                                        report_id=report["report_id"]))
    assert stolen.status_code == 409
    # the same restic id may exist in two repositories
    assert second.post("/v1/agent/snapshots", _report("a" * 64)).status_code == 201
    assert [v.system for v in snapshots.list_snapshots(centre.catalog)] == ["fs1", "fs2"]
    assert first.put_manifest("a" * 64, _manifest("a" * 64)).status_code == 204
    assert second.put_manifest("a" * 64, _manifest("a" * 64), key=first.key).status_code == 400


def test_requests_without_a_good_agent_token(centre: Centre) -> None:
    token = centre.token()
    client = centre.client
    missing = client.get("/v1/agent/assignment")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    unknown = client.get("/v1/agent/assignment", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and "unknown agent token" in unknown.json()["detail"]
    basic = client.get("/v1/agent/assignment", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    enrolling = client.get("/v1/agent/assignment",
                           headers={"Authorization": f"Bearer {token}"})
    assert enrolling.status_code == 403 and "enroll first" in enrolling.json()["detail"]

    agent = Agent(centre, token)
    agent.enroll()
    assert agent.get("/v1/agent/assignment").status_code == 200
    with centre.catalog.session() as session:
        session.execute(sa.update(System).values(status="retired"))
    retired = agent.get("/v1/agent/assignment")
    assert retired.status_code == 403 and "retired" in retired.json()["detail"]
    with centre.catalog.session() as session:
        session.execute(sa.update(System).values(status="enrolled"))
        session.execute(sa.update(Token).where(Token.role == "agent").values(revoked_at=T0))
    revoked = agent.get("/v1/agent/assignment")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


# -- bad input ----------------------------------------------------------------------------


def test_bad_bodies_get_4xx_with_a_reason_never_500(centre: Centre) -> None:
    token = centre.token()
    agent = Agent(centre, token)
    client = centre.client

    def expect(response, status_code: int, text: str = "") -> None:
        assert response.status_code == status_code, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and text in detail

    expect(client.post("/v1/agent/enroll/preview", content=b"{not json",
                       headers={"Content-Type": "application/json"}), 422, "not valid JSON")
    expect(client.post("/v1/agent/enroll/preview", json=[token]), 422)
    expect(client.post("/v1/agent/enroll/preview", json={}), 422, "body.token")
    expect(client.post("/v1/agent/enroll/preview", json={"token": 5}), 422)
    expect(client.post("/v1/agent/enroll",
                       json=agent.enroll_body(agent_public_key="not a key")), 400,
           "agent_public_key")
    expect(client.post("/v1/agent/enroll", json=agent.enroll_body(
        agent_public_key=public_key_pem(centre.keystore.escrow_public_key()).decode())),
        400, "Ed25519")
    expect(client.post("/v1/agent/enroll", json=agent.enroll_body(sealed_password="@@")),
           400, "sealed_password")
    expect(client.post("/v1/agent/enroll", json=agent.enroll_body(
        sealed_password=base64.b64encode(b"\x07" * 80).decode())), 400, "version")
    expect(client.post("/v1/agent/enroll", json=agent.enroll_body(hostname="a\x1b[2Jb")), 422,
           "hostname")
    assert _system(centre.catalog).status == "pending"  # nothing half-enrolled
    assert _tokens(centre.catalog)[0].used_at is None

    agent.enroll()
    expect(agent.post("/v1/agent/heartbeat", {"hostname": "fs1"}), 422, "agent_version")
    expect(agent.post("/v1/agent/snapshots", {"snapshot_id": "a" * 64}), 422, "and")
    expect(agent.post("/v1/agent/snapshots", _report("A" * 64)), 422, "snapshot_id")
    unknown_store = _report("a" * 64)
    unknown_store["stores"]["nowhere"] = {"complete": True}
    expect(agent.post("/v1/agent/snapshots", unknown_store), 400, "nowhere")
    expect(agent.put_manifest("not-hex", {}), 422, "snapshot_id")
    assert agent.post("/v1/agent/snapshots", _report("a" * 64)).status_code == 201
    expect(agent.put_manifest("a" * 64, {}, signature="!!"), 400, "base64")
    expect(agent.put_manifest("a" * 64, {}, signature="AAAA"), 400, "64 bytes")

    big = {"token": "x" * (DEFAULT_LIMIT + 1)}
    expect(client.post("/v1/agent/enroll/preview", json=big), 413, "larger than")

    def chunks():
        for _ in range(DEFAULT_LIMIT // 65536 + 2):
            yield b" " * 65536

    expect(client.post("/v1/agent/enroll/preview", content=chunks(),
                       headers={"Content-Type": "application/json"}), 413)
    expect(client.get("/v1/agent/nothing-here"), 404)


# -- what the centre makes of it ----------------------------------------------------------


def test_status_follows_the_reports_against_the_rpo(centre: Centre) -> None:
    agent = Agent(centre, centre.token())
    agent.enroll()

    def fs1(now: dt.datetime) -> status.SystemStatus:
        (only,) = status.system_statuses(centre.catalog, now=now)
        return only

    assert not fs1(T0 + dt.timedelta(minutes=30)).late  # one RPO of grace after enrolling
    assert fs1(T0 + dt.timedelta(hours=2)).late
    # durable in two of three stores: a good backup
    centre.clock.now = T0 + dt.timedelta(hours=1)
    assert agent.post("/v1/agent/snapshots", _report("a" * 64, time=T0 + dt.timedelta(
        hours=1))).status_code == 201
    # a report counts once the daemon has seen it in the stores (these hold no
    # repository: the confirmation is done here as the daemon does it, see
    # test_snapshot_confirmation.py)
    assert fs1(T0 + dt.timedelta(hours=1, minutes=30)).last_backup_at is None
    _confirm(centre.catalog, "a" * 64)
    standing = fs1(T0 + dt.timedelta(hours=1, minutes=30))
    assert not standing.late and standing.last_backup_at == T0 + dt.timedelta(hours=1)
    assert standing.age == dt.timedelta(minutes=30) and standing.snapshots == 1
    # a partial one does not count
    partial = _report("b" * 64, partial=True, time=T0 + dt.timedelta(hours=3))
    centre.clock.now = T0 + dt.timedelta(hours=3)
    assert agent.post("/v1/agent/snapshots", partial).status_code == 201
    _confirm(centre.catalog, "b" * 64)
    # a snapshot "from the future" would hide a late system: refused
    ahead = _report("c" * 64, time=T0 + dt.timedelta(hours=5))
    refused = agent.post("/v1/agent/snapshots", ahead)
    assert refused.status_code == 400 and "future" in refused.json()["detail"]
    late = fs1(T0 + dt.timedelta(hours=3, minutes=5))
    assert late.late and late.last_backup_at == T0 + dt.timedelta(hours=1)
    assert status.totals([late]) == {"systems": 1, "enrolled": 1, "pending": 0, "late": 1}


def test_a_new_policy_version_reaches_the_agent(centre: Centre) -> None:
    agent = Agent(centre, centre.token())
    agent.enroll()
    centre.policy_file.write_text(centre.policy_file.read_text().replace("rpo: 1h", "rpo: 2h"))
    policy_service.apply(centre.catalog, [centre.policy_file],
                         store_service.store_regions(centre.catalog))
    beat = {"hostname": "fs1", "agent_version": "0.1.0", "restic_version": "0.17.3"}
    assert agent.post("/v1/agent/heartbeat", beat).json()["policy_version"] == 2
    assert agent.get("/v1/agent/assignment").json()["policy"]["rpo"] == "2h"


def test_backup_now_needs_an_enrolled_system(centre: Centre) -> None:
    with pytest.raises(UserError, match="no system named"):
        agents.request_backup(centre.catalog, "nope")
    centre.token()
    with pytest.raises(UserError, match="not enrolled"):
        agents.request_backup(centre.catalog, "fs1")
    with pytest.raises(UserError, match="no system named"):
        snapshots.list_snapshots(centre.catalog, "nope")


def test_an_undecodable_body_is_a_422_with_a_reason(centre: Centre) -> None:
    answer = centre.client.post("/v1/agent/enroll/preview", content=b'{"token": "\xff\xfe"}',
                                headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and "JSON" in answer.json()["detail"]
    nested = b"[" * 10_000 + b"]" * 10_000
    answer = centre.client.post("/v1/agent/enroll/preview", content=nested,
                                headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500


def test_a_bug_is_one_500_with_a_generic_detail_and_the_next_request_works(
        centre: Centre, caplog) -> None:
    app = centre.client.app

    @app.get("/v1/test-only/bug")
    def bug() -> None:
        raise RuntimeError("a bug with a secret-looking value s3cr3t")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/test-only/bug")
        assert answer.status_code == 500
        assert answer.json() == {"detail": "internal error in the centre: see its log"}
        assert client.get("/healthz").status_code == 200
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1

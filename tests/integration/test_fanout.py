"""The agent's fan-out endpoint with real restic in front and real SeaweedFS stores behind.

restic backs up through the endpoint into three stores; each store alone must then be a
complete restic repository that plain ``restic -r s3:...`` restores byte for byte. One
store dying before or during a backup must not fail it while ``min_copies`` stores
remain, and must show in the report with what it missed.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.fanout import FanoutEndpoint, FanoutReport
from drd.restic import Repository, Restic, ResticError, ResticStopped
from drd.secrets import Secret, url_password
from drd.stores import Store, StoreSpec, open_store
from drd.stores.base import ObjectInfo, StoreCheck

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "fanout-integration-password-7e1c"
REPOSITORY_PATH = "parks/fs1"


# --- helpers --------------------------------------------------------------------------------


def make_tree(root: Path, *, files: int = 300, seed: int = 3) -> Path:
    """A tree of ``files`` files of mixed sizes in a few directories: mostly small, some of
    hundreds of KiB, a few of MiBs; half random (incompressible), half repetitive text."""
    rng = random.Random(seed)
    for index in range(files):
        directory = root / f"dir{index % 7}" / f"sub{index % 3}"
        directory.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        size = (rng.randint(0, 8_000) if roll < 0.8
                else rng.randint(50_000, 600_000) if roll < 0.97
                else rng.randint(2_000_000, 4_000_000))
        if index % 2:
            data = rng.randbytes(size)
        else:
            line = f"line {index} of a text file that compresses well\n".encode()
            data = (line * (size // len(line) + 1))[:size]
        (directory / f"file{index}.bin").write_bytes(data)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def open_stores(servers, *, bucket: str = "drd-fanout", object_lock: bool = False,
                first: int = 0) -> list[Store]:
    """One store per server (``store-<first>``, ...), rooted at the system's repository,
    its bucket created."""
    stores = []
    for index, server in enumerate(servers, start=first):
        store = open_store(
            StoreSpec(f"store-{index}", f"s3://{bucket}/backups/{REPOSITORY_PATH}",
                      endpoint=server.endpoint, object_lock=object_lock),
            server.access_key,
            server.secret,
            retry_attempts=2,
            retry_backoff=0.2,
            connect_timeout=2.0,
        )
        store.create_if_missing(object_lock=object_lock)
        stores.append(store)
    return stores


def endpoint_repository(endpoint: FanoutEndpoint) -> Repository:
    """restic through ``endpoint``, with 4 MiB packs (restic's smallest): more objects."""
    return Repository(url=endpoint.restic_url, password=Secret(PASSWORD),
                      env={"RESTIC_PACK_SIZE": "4"}, display="fan-out")


def store_repository(store: Store) -> Repository:
    """The repository of ``store`` opened directly with plain ``restic -r s3:...``."""
    url, env = store.restic_location()
    return Repository(url=Secret(url), password=Secret(PASSWORD), env=env, display=store.name)


def keys_of(store: Store) -> set[str]:
    return {info.key for info in store.list("")}


def restore_and_compare(restic: Restic, repository: Repository, snapshot_id: str,
                        source: Path, target: Path) -> None:
    restic.restore(repository, snapshot_id, target, verify=True)
    restored = target / str(source).lstrip("/")
    assert tree_digest(restored) == tree_digest(source)


def init_through(stores: list[Store], restic: Restic, *, min_copies: int) -> FanoutReport:
    with FanoutEndpoint(stores, min_copies=min_copies) as endpoint:
        restic.init(endpoint_repository(endpoint))
    return endpoint.report()


@pytest.fixture
def restic(restic_binary: str, tmp_path: Path) -> Restic:
    return Restic(restic_binary, cache_dir=tmp_path / "restic-cache")


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("fanout-source") / "share")


# --- a backup into three stores -------------------------------------------------------------


def test_backup_lands_in_every_store_and_each_restores_alone(
    seaweed, restic: Restic, source_tree: Path, tmp_path: Path
):
    stores = open_stores(seaweed(3))
    init_report = init_through(stores, restic, min_copies=3)
    assert init_report.durable and init_report.objects == 2  # config and one key

    with FanoutEndpoint(stores, min_copies=2) as endpoint:
        repository = endpoint_repository(endpoint)
        summary = restic.backup(repository, [source_tree])
        assert summary.files_new == 300
        assert restic.check(repository, read_data=True).ok  # reads back through the endpoint
        second = restic.backup(repository, [source_tree])  # reads index and parent
        # no file content sent again (a directory's changed atime may add a tree blob)
        assert second.files_unmodified == 300 and second.data_blobs == 0
    report = endpoint.report()

    assert report.durable and report.min_copies == 2
    assert report.objects >= 8 and report.bytes > 10_000_000
    for outcome in report.stores.values():
        assert outcome.healthy and outcome.complete and outcome.error is None
        assert outcome.written == report.objects
    assert report.as_dict()["store-0"] == {"complete": True, "missing_objects": 0, "missing": []}

    object_sets = [keys_of(store) for store in stores]
    assert object_sets[0] == object_sets[1] == object_sets[2]
    keys = object_sets[0]
    assert "config" in keys and not any(key.startswith("locks/") for key in keys)
    data_keys = [key for key in keys if key.startswith("data/")]
    assert data_keys and all(key == f"data/{key[-64:][:2]}/{key[-64:]}" for key in data_keys)
    for key in keys - {"config"}:  # content-addressed, as restic names them
        assert hashlib.sha256(stores[0].read(key)).hexdigest() == key.rsplit("/", 1)[-1]

    for index, store in enumerate(stores):
        restore_and_compare(restic, store_repository(store), summary.snapshot_id, source_tree,
                            tmp_path / f"restored-{index}")


# --- stores failing -------------------------------------------------------------------------


def test_a_store_down_before_the_backup_is_reported_with_what_it_lacks(
    seaweed, restic: Restic, source_tree: Path, tmp_path: Path
):
    servers = seaweed(3)
    stores = open_stores(servers)
    init_through(stores, restic, min_copies=3)
    servers[0].kill()  # the first store: reads must fall back too

    with FanoutEndpoint(stores, min_copies=2) as endpoint:
        summary = restic.backup(endpoint_repository(endpoint), [source_tree])
    report = endpoint.report()

    assert report.durable
    down = report.stores["store-0"]
    assert not down.healthy and down.error and down.written == 0
    assert len(down.missing) == report.objects > 0
    assert set(down.missing) <= keys_of(stores[1])
    assert report.as_dict()["store-0"]["complete"] is False
    for name in ("store-1", "store-2"):
        assert report.stores[name].healthy and report.stores[name].complete
    restore_and_compare(restic, store_repository(stores[2]), summary.snapshot_id, source_tree,
                        tmp_path / "restored")


class KillingStore(Store):
    """``inner``, whose server is killed as the data object after the first ``after`` is
    put, once those are stored: a store dying in the middle of a backup. (Puts are
    counted as they start: the fan-out puts several at once, and counting only finished
    ones could let every put start before the moment came.)"""

    def __init__(self, inner: Store, server, after: int) -> None:
        self.inner, self.server, self.after = inner, server, after
        self.name = inner.name
        self.data_started = 0
        self.data_stored = 0
        self._changed = threading.Condition()

    def put(self, key, data, *, length=None, retain_until=None) -> None:
        if key.startswith("data/"):
            with self._changed:
                self.data_started += 1
                if self.data_started > self.after:
                    self._changed.wait_for(lambda: self.data_stored >= self.after, 60)
                    if self.server.is_running():
                        self.server.kill()
        self.inner.put(key, data, length=length, retain_until=retain_until)
        if key.startswith("data/"):
            with self._changed:
                self.data_stored += 1
                self._changed.notify_all()

    def get(self, key, *, offset=0, length=None):
        return self.inner.get(key, offset=offset, length=length)

    def head(self, key) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix="", *, start_after=None):
        return self.inner.list(prefix, start_after=start_after)

    def delete(self, key) -> None:
        self.inner.delete(key)

    def check(self) -> StoreCheck:
        return self.inner.check()

    def create_if_missing(self, *, object_lock=False) -> bool:
        return self.inner.create_if_missing(object_lock=object_lock)

    @property
    def supports_object_lock(self) -> bool:
        return self.inner.supports_object_lock

    @property
    def location(self) -> str:
        return self.inner.location

    def restic_location(self, subpath=""):
        return self.inner.restic_location(subpath)


def test_a_store_dying_during_the_backup_misses_what_came_after(
    seaweed, restic: Restic, source_tree: Path, tmp_path: Path
):
    servers = seaweed(3)
    stores = open_stores(servers)
    init_through(stores, restic, min_copies=3)
    dying = KillingStore(stores[2], servers[2], after=2)

    with FanoutEndpoint([stores[0], stores[1], dying], min_copies=2) as endpoint:
        summary = restic.backup(endpoint_repository(endpoint), [source_tree])
    report = endpoint.report()

    assert report.durable
    died = report.stores["store-2"]
    assert not servers[2].is_running() and not died.healthy
    assert died.written >= 2 and died.missing  # some objects made it, the rest did not
    assert died.written + len(died.missing) == report.objects
    run_keys = keys_of(stores[0])
    assert set(died.missing) <= run_keys and keys_of(stores[1]) == run_keys
    restore_and_compare(restic, store_repository(stores[1]), summary.snapshot_id, source_tree,
                        tmp_path / "restored")


def test_too_few_stores_for_min_copies_fail_the_backup(
    seaweed, restic: Restic, tmp_path: Path
):
    servers = seaweed(3)
    stores = open_stores(servers)
    init_through(stores, restic, min_copies=3)
    servers[1].kill()
    source = tmp_path / "small"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")

    with FanoutEndpoint(stores, min_copies=3, attempts=1) as endpoint:
        started = time.monotonic()
        # what the agent does: stop restic once the run cannot be durable, rather than
        # wait out restic's retries of every refused upload (about 50 s in 0.14)
        with pytest.raises(ResticStopped):
            restic.backup(endpoint_repository(endpoint), [source],
                          should_stop=lambda: not endpoint.can_be_durable)
        assert time.monotonic() - started < 20
    assert not endpoint.can_be_durable
    report = endpoint.report()
    assert not report.durable and report.refused
    assert not report.stores["store-1"].healthy


# --- the protocol's edges -------------------------------------------------------------------


def _request(endpoint: FanoutEndpoint, method: str, path: str, *, password: str | None = None,
             body: bytes | None = None, headers: dict | None = None):
    """One raw HTTP request to the endpoint; ``password`` None: the run's own."""
    if password is None:
        password = url_password(endpoint.restic_url.reveal())
    all_headers = {"Authorization": "Basic " + base64.b64encode(f"drd:{password}".encode())
                   .decode(), "Accept": "application/vnd.x.restic.rest.v2"}
    all_headers.update(headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_protocol_edges(seaweed_session, restic: Restic, tmp_path: Path):
    server = seaweed_session
    stores = (open_stores([server], bucket="drd-fanout-edges")
              + open_stores([server], bucket="drd-fanout-edges-2", first=1))
    pack = os.urandom(100_000)
    name = hashlib.sha256(pack).hexdigest()

    with FanoutEndpoint(stores, min_copies=2) as endpoint:
        assert endpoint.restic_url.reveal().startswith("rest:http://drd:")
        assert "127.0.0.1" in endpoint.restic_url.reveal() and "**" in str(endpoint.restic_url)
        # the run's credential, and nothing else
        assert _request(endpoint, "GET", "/keys/", password="wrong")[0] == 401
        no_auth = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
        no_auth.request("HEAD", "/config")
        assert no_auth.getresponse().status == 401
        no_auth.close()

        assert _request(endpoint, "HEAD", "/config")[0] == 404
        assert _request(endpoint, "POST", "/?create=true", body=b"")[0] == 200
        # a corrupt upload is refused and stored nowhere
        status, _, _ = _request(endpoint, "POST", f"/data/{name}", body=pack[:-1] + b"x")
        assert status == 400
        assert _request(endpoint, "POST", f"/data/{name}", body=pack)[0] == 200
        status, headers, _ = _request(endpoint, "HEAD", f"/data/{name}")
        assert status == 200 and headers["Content-Length"] == str(len(pack))
        status, headers, body = _request(endpoint, "GET", f"/data/{name}",
                                         headers={"Range": "bytes=0-"})
        assert status == 200 and body == pack
        status, headers, body = _request(endpoint, "GET", f"/data/{name}",
                                         headers={"Range": "bytes=10-19"})
        assert status == 206 and body == pack[10:20]
        assert headers["Content-Range"] == f"bytes 10-19/{len(pack)}"
        status, headers, _ = _request(endpoint, "GET", f"/data/{name}",
                                      headers={"Range": f"bytes={len(pack)}-"})
        assert status == 416
        status, headers, body = _request(endpoint, "GET", "/data/")
        assert status == 200
        assert headers["Content-Type"] == "application/vnd.x.restic.rest.v2"
        assert body == f'[{{"name":"{name}","size":{len(pack)}}}]'.encode()
        status, headers, body = _request(endpoint, "GET", "/data/", headers={"Accept": "*/*"})
        assert headers["Content-Type"] == "application/vnd.x.restic.rest.v1"
        assert body == f'["{name}"]'.encode()
        # only restic's locks may be deleted
        assert _request(endpoint, "DELETE", f"/data/{name}")[0] == 403
        assert _request(endpoint, "DELETE", "/config")[0] == 403
        lock = b'{"time":"now"}'
        lock_name = hashlib.sha256(lock).hexdigest()
        assert _request(endpoint, "POST", f"/locks/{lock_name}", body=lock)[0] == 200
        assert _request(endpoint, "DELETE", f"/locks/{lock_name}")[0] == 200
        assert _request(endpoint, "GET", "/other/")[0] == 404
        assert _request(endpoint, "GET", "/data/XYZ")[0] == 400
    report = endpoint.report()
    assert report.objects == 1 and report.durable  # the deleted lock is not counted
    for store in stores:
        assert store.read(f"data/{name[:2]}/{name}") == pack
        assert not store.exists(f"locks/{lock_name}")

    # restic itself with a wrong credential gets nowhere
    with FanoutEndpoint(stores, min_copies=1) as endpoint:
        wrong = endpoint.restic_url.reveal().replace("drd:", "drd:x")
        with pytest.raises(ResticError):
            restic.snapshots(Repository(url=Secret(wrong), password=Secret(PASSWORD)))


def test_object_lock_retention_on_lock_enabled_stores(
    seaweed_session, restic: Restic, tmp_path: Path
):
    server = seaweed_session
    (locked,) = open_stores([server], bucket="drd-fanout-locked", object_lock=True)
    (plain,) = open_stores([server], bucket="drd-fanout-unlocked", first=1)
    source = tmp_path / "small"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(200_000))
    before = datetime.now(UTC)

    with FanoutEndpoint([locked, plain], min_copies=2, object_lock_days=3) as endpoint:
        repository = endpoint_repository(endpoint)
        restic.init(repository)
        summary = restic.backup(repository, [source])
    assert endpoint.report().durable

    keys = keys_of(locked)
    assert keys == keys_of(plain)
    for key in keys:
        retain_until = locked.head(key).retain_until
        assert retain_until is not None, key
        assert before + timedelta(days=3) <= retain_until <= datetime.now(UTC) + timedelta(days=3)
        assert plain.head(key).retain_until is None
    # restic's lock was written and deleted again (no retention on locks/)
    assert not any(key.startswith("locks/") for key in keys)
    restore_and_compare(restic, store_repository(locked), summary.snapshot_id, source,
                        tmp_path / "restored")

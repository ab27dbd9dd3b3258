"""``drd dev-stores up|down|list``: local SeaweedFS S3 servers for demos and trials.

Not for production: the servers keep their data in a local directory and listen on
127.0.0.1 only. Each server's secret key is written to ``DIR/NAME/secret_access_key``
(0600) for ``drd store add --secret-access-key-file``; it is never printed.
"""

from __future__ import annotations

from pathlib import Path

import click

from drd import devstores
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.fsutil import atomic_write

SECRET_FILE = "secret_access_key"


def _describe(server: devstores.SeaweedServer) -> dict:
    return {
        "name": server.name,
        "endpoint": server.endpoint,
        "pid": server.pid,
        "running": server.is_running(),
        "data_dir": str(server.data_dir),
        "access_key_id": server.access_key,
        "secret_access_key_file": str(server.data_dir / SECRET_FILE),
    }


_DIR = click.option("--dir", "directory", required=True, type=click.Path(file_okay=False),
                    help="Where the servers keep their data and state.")


@click.group("dev-stores")
def dev_stores_group() -> None:
    """Local S3 stores (SeaweedFS) for demos and trials."""


@dev_stores_group.command("up")
@home_option
@_DIR
@click.argument("names", nargs=-1, required=True)
@json_option
def up_command(directory: str, names: tuple[str, ...], as_json: bool) -> None:
    """Start one S3 server per NAME under DIR/NAME (data survives a restart)."""
    root = Path(directory).absolute()
    running = {server.name for server in devstores.load_state(root) if server.is_running()}
    already = sorted(running & set(names))
    if already:
        raise click.UsageError(f"already running under {root}: {', '.join(already)}")
    servers = devstores.start_many(root, names)
    previous = [s for s in devstores.load_state(root) if s.is_running()]
    devstores.save_state(root, [*previous, *servers])
    for server in servers:
        atomic_write(server.data_dir / SECRET_FILE, server.secret_key + "\n", mode=0o600)
    if as_json:
        output.emit_json([_describe(server) for server in servers])
        return
    for server in servers:
        output.say(f"store {server.name}: S3 on {server.endpoint} (pid {server.pid}), "
                   f"key id {server.access_key}, secret in {server.data_dir / SECRET_FILE}")


@dev_stores_group.command("list")
@home_option
@_DIR
@json_option
def list_command(directory: str, as_json: bool) -> None:
    """List the servers started under DIR."""
    rows = [_describe(server) for server in devstores.load_state(Path(directory).absolute())]
    if as_json:
        output.emit_json(rows)
        return
    output.emit_table(rows, ["name", "endpoint", "pid", "running", "data_dir"],
                      empty="no dev stores under this directory")


@dev_stores_group.command("down")
@home_option
@_DIR
def down_command(directory: str) -> None:
    """Stop every server started under DIR (their data stays)."""
    stopped = devstores.stop_all(Path(directory).absolute())
    output.say(f"stopped {len(stopped)} dev store(s)" if stopped else "no dev stores running")

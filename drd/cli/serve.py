"""``drd serve``: the centre's API in the foreground (systemd runs it)."""

from __future__ import annotations

import logging

import click

from drd.api.app import create_app
from drd.api.server import configure_logging, parse_listen, runtime_directory, serve
from drd.cli.context import CliState
from drd.cli.options import home_option
from drd.crypto.keystore import KeyStore
from drd.daemon.service import Daemon
from drd.errors import UserError
from drd.services.enrollment import server_url
from drd.services.key_rotation import rotation_pending
from drd.services.restore.remote import sweep_scratch

log = logging.getLogger("drd.serve")


@click.command("serve")
@home_option
@click.option("--listen", metavar="HOST:PORT",
              help="Address to listen on (default: listen in drd.yaml, 127.0.0.1:8443).")
@click.option("--insecure-http", is_flag=True,
              help="Serve plain HTTP instead of HTTPS: for local tests only, since tokens "
                   "and store keys would cross the network in the clear.")
@click.option("--workers", type=click.IntRange(0, 64), metavar="N",
              help="Queued jobs to run at once (default: workers in drd.yaml); 0 runs none.")
@click.option("--no-scheduler", is_flag=True,
              help="Never lead: run queued work only, and leave scheduling to other daemons "
                   "on the same catalog.")
@click.pass_obj
def serve_command(state: CliState, listen: str | None, insecure_http: bool,
                  workers: int | None, no_scheduler: bool) -> None:
    """Serve the API (HTTPS with the centre's own CA) and run the daemon (scheduler and
    workers) until SIGTERM or Ctrl-C.

    Logs go to stderr, one line each, without timestamps (journald adds them).
    """
    config = state.config()
    if rotation_pending(config.home):
        raise UserError("a key rotation of this centre stopped half-way: run 'drd keys "
                        "finish-rotation' first (a daemon on the old keys would write what "
                        "the new ones cannot read)")
    address = parse_listen(listen or config.listen)
    catalog = state.catalog()
    master_key = state.master_key()
    configure_logging()
    swept = sweep_scratch(config.home)
    if swept:
        log.info("removed %d scratch copies of API restores left by a daemon that stopped",
                 swept)
    keystore = KeyStore(config.keys_dir, master_key)
    app = create_app(catalog, master_key, config, keystore=keystore)
    if insecure_http:
        log.warning("serving plain HTTP (--insecure-http): enrollment tokens and store keys "
                    "cross the network in the clear; use it for local tests only")
        tls = None
    else:
        tls = keystore.server_tls_files(runtime_directory())
    scheme = "http" if insecure_http else "https"
    log.info("drd API on %s (CA sha256 %s); agents are told %s", address.url(scheme),
             keystore.ca_fingerprint(), server_url(config))
    daemon = Daemon(config, catalog, master_key, keystore, workers=workers,
                    schedule=not no_scheduler)
    daemon.start()
    try:
        serve(app, address, tls)
    finally:
        daemon.stop()
    catalog.dispose()

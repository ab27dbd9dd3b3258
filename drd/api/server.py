"""Serving the API in the foreground with uvicorn: address, TLS, logging, signals.

- TLS with the centre's server certificate (:meth:`KeyStore.server_tls_files`): the key
  is written encrypted under a one-time password to a private temporary directory,
  loaded into the SSL context, and the directory is removed before the first request;
  TLS 1.2 at least, forward-secret AEAD suites only.
- Logging to stderr as ``LEVEL logger: message``, without timestamps (journald adds
  them); under systemd (``JOURNAL_STREAM`` names stderr) each line starts with its
  syslog priority (``<6>``), which journald turns into the entry's priority. The access
  log is on.
- SIGTERM (``systemctl stop``) and SIGINT (Ctrl-C) stop the server gracefully: uvicorn
  finishes the requests in flight and returns; the process then exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from drd.crypto.keystore import ServerTLSFiles
from drd.errors import OperationError, UserError
from drd.secrets import quiet_wire_loggers

log = logging.getLogger(__name__)

TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
GRACEFUL_SHUTDOWN_SECONDS = 10

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def url(self, scheme: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """``HOST:PORT`` (``[IPV6]:PORT`` for IPv6) as a :class:`ListenAddress`.

    Raises :class:`UserError` for anything else, or a port outside 1-65535.
    """
    value = text.strip()
    host, separator, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        separator = ""  # an IPv6 address needs brackets to carry a port
    if not separator or not host or not port_text.isdigit() or any(c.isspace() for c in host):
        raise UserError(f"bad listen address {text!r}: give HOST:PORT, such as "
                        "127.0.0.1:8443, 0.0.0.0:8443 or [::1]:8443")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise UserError(f"bad listen address {text!r}: the port must be 1-65535")
    return ListenAddress(host, port)


def runtime_directory() -> Path | None:
    """Where the TLS files may briefly live: systemd's ``$RUNTIME_DIRECTORY``, else the
    system's temporary directory (None)."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) if runtime else None


class JournalFormatter(logging.Formatter):
    """``LEVEL logger: message``; with ``<priority>`` first when writing to journald."""

    def __init__(self, syslog_prefix: bool = False) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.syslog_prefix:
            return text
        priority = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def stderr_is_journal() -> bool:
    """True when stderr is connected to journald (systemd sets ``JOURNAL_STREAM``)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def configure_logging() -> None:
    """Log to stderr in the journald-friendly form, at INFO at least (more with -vv)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JournalFormatter(syslog_prefix=stderr_is_journal())
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    # /readyz checks the schema through Alembic, which would log two lines per probe
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    quiet_wire_loggers()


def _server_config(app, address: ListenAddress, tls: ServerTLSFiles | None) -> uvicorn.Config:
    options = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile),
                   "ssl_keyfile_password": tls.password.reveal(), "ssl_ciphers": TLS_CIPHERS}
    level = logging.getLogger().getEffectiveLevel()
    return uvicorn.Config(
        app, host=address.host, port=address.port, log_config=None,
        log_level=logging.getLevelName(min(level, logging.INFO)).lower(), access_log=True,
        server_header=False, proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, **options,
    )


def _ignore_signal(signum, frame) -> None:
    """Stand-in handler for SIGTERM and SIGINT: see :func:`serve`."""


def serve(app, address: ListenAddress, tls: ServerTLSFiles | None) -> None:
    """Serve ``app`` on ``address`` until SIGTERM or SIGINT; HTTPS when ``tls`` is given.

    ``tls``'s files are removed once loaded (also when loading fails). Returns after a
    graceful stop on SIGTERM or SIGINT. Raises
    :class:`OperationError` when the server cannot start (the address in use, say; the
    cause is logged) or the TLS files cannot be loaded.
    """
    try:
        config = _server_config(app, address, tls)
        try:
            config.load()
        except (ssl.SSLError, OSError) as error:
            raise OperationError(f"cannot load the server's TLS certificate and key: "
                                 f"{error}") from None
    finally:
        if tls is not None:
            tls.remove()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    server = uvicorn.Server(config)
    # uvicorn raises the signal that stopped it again once it has shut down, under the
    # handler that was there before: SIGTERM's default would kill the process and make
    # a clean, requested stop look like a crash to systemd, and SIGINT's would end a
    # graceful stop in KeyboardInterrupt
    previous = {number: signal.signal(number, _ignore_signal)
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise OperationError(f"the API could not start on {address.host}:{address.port} "
                                 "(see the error above)") from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if not server.started:
        raise OperationError(f"the API could not start on {address.host}:{address.port} "
                             "(see the error above)")

"""A TLS handshake on 127.0.0.1 between a server and a client context: proof a chain works."""

from __future__ import annotations

import socket
import ssl
import threading


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    """A client that trusts only ``ca_pem``, with strict X.509 checks (Python 3.13's default)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def server_context(certfile, keyfile, password: str | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile, password)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> bytes:
    """Connect ``client`` to ``server`` as ``server_hostname``; return what the server sent.

    Raises ``ssl.SSLCertVerificationError`` when the client refuses the server.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                connection, _ = listener.accept()
                with server.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except OSError:  # the client refused us: its side raises the interesting error
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with client.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    return tls.recv(2)
        finally:
            thread.join(10)

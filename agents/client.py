"""The agent's side of the agent protocol (``docs/agent-protocol.md``): one HTTP client.

Every call to the centre goes through :class:`CentreClient`. For an ``https`` centre it
trusts only the CA pinned at enrollment (an SSL context built from that one PEM, no
system roots); ``http`` is accepted for local tests (``drd serve --insecure-http``).
Agent calls carry ``Authorization: Bearer <agent token>``.

Errors:
    - :class:`CentreUnreachable` (exit 1): no connection, a timeout, a TLS failure.
    - :class:`CentreRefused` (exit 1): the centre answered 4xx/5xx; the message carries
      the centre's one-line ``detail``. ``status`` is the HTTP status.
Both are :class:`CentreError`; ``transient`` says whether trying again later may help
(used by the spool: a refused report is set aside, an unreachable centre is retried).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drd import __version__
from drd.errors import OperationError
from drd.secrets import Secret, mask

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
USER_AGENT = f"drd-agent/{__version__}"
# Statuses after which the same request may succeed later without changing it.
_TRANSIENT_STATUSES = {401, 403, 408, 425, 429}


class CentreError(OperationError):
    """A call to the centre failed. ``transient``: worth trying again later unchanged."""

    transient = True


class CentreUnreachable(CentreError):
    """No answer from the centre: refused, timed out, DNS, or TLS verification failed."""


class CentreRefused(CentreError):
    """The centre answered with an error status; ``detail`` is its one-line reason."""

    def __init__(self, message: str, *, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return self.status >= 500 or self.status in _TRANSIENT_STATUSES


def single_certificate(ca_pem: bytes) -> x509.Certificate:
    """The one certificate of ``ca_pem``.

    A PEM with more than one certificate is refused: a fingerprint checks one
    certificate, and a second one riding along (fetched from an unverified connection)
    would otherwise be trusted too.

    Raises:
        OperationError: ``ca_pem`` holds no certificate, or more than one.
    """
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as error:
        raise OperationError(f"the centre's CA is not a PEM certificate: {error}") from None
    if len(certificates) != 1:
        raise OperationError(f"the centre's CA PEM holds {len(certificates)} certificates, "
                             "not one: refused (is something between you and the centre?)")
    return certificates[0]


def pinned_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    """An SSL context that verifies the server against the one certificate of ``ca_pem``
    and nothing else (see :func:`single_certificate`).

    Raises:
        OperationError: ``ca_pem`` is not one usable certificate.
    """
    certificate = single_certificate(ca_pem)
    try:
        return ssl.create_default_context(
            cadata=certificate.public_bytes(Encoding.PEM).decode("ascii"))
    except (ssl.SSLError, ValueError) as error:
        raise OperationError(f"the pinned CA certificate is not usable: {error}") from None


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 (lowercase hex) of the DER form of the one certificate in ``ca_pem``.

    Raises:
        OperationError: ``ca_pem`` holds no certificate, or more than one.
    """
    return hashlib.sha256(single_certificate(ca_pem).public_bytes(Encoding.DER)).hexdigest()


class CentreClient:
    """Talks to one centre.

    Args:
        server: the centre's base URL (``https://centre:8443``).
        ca_pem: the pinned CA (required for ``https``; ignored for ``http``).
        agent_token: the agent's credential, for agent calls.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        server: str,
        *,
        ca_pem: bytes | None = None,
        agent_token: Secret | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._agent_token = agent_token
        verify: ssl.SSLContext | bool = True
        if self.server.startswith("https://"):
            if ca_pem is None:
                raise OperationError("an https centre needs its pinned CA")
            verify = pinned_ssl_context(ca_pem)
        self._http = httpx.Client(
            base_url=self.server,
            verify=verify,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> CentreClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- no authentication ---------------------------------------------------------------

    @staticmethod
    def fetch_ca_pem(server: str, *, transport: httpx.BaseTransport | None = None) -> bytes:
        """``GET /v1/ca.pem`` without verifying TLS: the caller checks the fingerprint.

        Raises:
            CentreUnreachable, CentreRefused.
        """
        with httpx.Client(base_url=server.rstrip("/"), verify=False, transport=transport,
                          timeout=httpx.Timeout(READ_TIMEOUT_SECONDS,
                                                connect=CONNECT_TIMEOUT_SECONDS),
                          headers={"User-Agent": USER_AGENT}) as http:
            response = send_request(http, server, "GET", "/v1/ca.pem")
            return response.content

    # -- enrollment (the token is the credential) ----------------------------------------

    def preview(self, token: Secret) -> dict[str, Any]:
        """``POST /v1/agent/enroll/preview``: the system, department and assignment."""
        return self._json("POST", "/v1/agent/enroll/preview", body={"token": token.reveal()},
                          secrets=(token,))

    def enroll(self, token: Secret, *, hostname: str, agent_public_key_pem: str,
               sealed_password_b64: str,
               config: tuple[str, int] | None = None) -> dict[str, Any]:
        """``POST /v1/agent/enroll``: consumes the token; returns ``agent_token`` and more.

        ``config`` is the SHA-256 and size of the repository's ``config`` as stored.
        """
        body = {"token": token.reveal(), "hostname": hostname,
                "agent_public_key": agent_public_key_pem,
                "sealed_password": sealed_password_b64}
        if config is not None:
            body["config_sha256"], body["config_size"] = config
        return self._json("POST", "/v1/agent/enroll", body=body, secrets=(token,))

    # -- agent calls ---------------------------------------------------------------------

    def assignment(self) -> dict[str, Any]:
        """``GET /v1/agent/assignment``."""
        return self._json("GET", "/v1/agent/assignment", authenticated=True)

    def heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/agent/heartbeat``: ``backup_now`` and ``policy_version``."""
        return self._json("POST", "/v1/agent/heartbeat", body=body, authenticated=True)

    def report_snapshot(self, report: dict[str, Any]) -> int:
        """``POST /v1/agent/snapshots``; returns 201 (new) or 200 (already received)."""
        response = self._request("POST", "/v1/agent/snapshots", body=report,
                                 authenticated=True)
        return response.status_code

    def put_manifest(self, snapshot_id: str, manifest: dict[str, Any], signature_b64: str,
                     sealed: dict[str, Any] | None = None) -> None:
        """``PUT /v1/agent/snapshots/{id}/manifest`` with the manifest, its signature and
        what describes the sealed manifest in the stores (``sealed``: head, sha256, size,
        key; absent from a manifest spooled by an agent that stored the plaintext)."""
        body: dict[str, Any] = {"manifest": manifest, "signature": signature_b64}
        if sealed is not None:
            body["sealed"] = sealed
        self._request("PUT", f"/v1/agent/snapshots/{snapshot_id}/manifest", body=body,
                      authenticated=True)

    # -- internals -----------------------------------------------------------------------

    def _json(self, method: str, path: str, *, body: Any = None, authenticated: bool = False,
              secrets: tuple[Secret, ...] = ()) -> dict[str, Any]:
        response = self._request(method, path, body=body, authenticated=authenticated,
                                 secrets=secrets)
        try:
            document = response.json()
        except ValueError:
            raise CentreRefused(f"the centre at {self.server} answered {method} {path} with "
                                "something that is not JSON; is this a drd centre?",
                                status=response.status_code, detail="not JSON") from None
        if not isinstance(document, dict):
            raise CentreRefused(f"the centre at {self.server} answered {method} {path} with "
                                "JSON that is not an object", status=response.status_code,
                                detail="not an object")
        return document

    def _request(self, method: str, path: str, *, body: Any = None,
                 authenticated: bool = False,
                 secrets: tuple[Secret, ...] = ()) -> httpx.Response:
        headers = {}
        if authenticated:
            if self._agent_token is None:
                raise OperationError("this call needs the agent's token; enroll first")
            headers["Authorization"] = f"Bearer {self._agent_token.reveal()}"
            secrets = (*secrets, self._agent_token)
        return send_request(self._http, self.server, method, path, json=body,
                            headers=headers, secrets=secrets)


def send_request(http: httpx.Client, server: str, method: str, path: str, *,
                 secrets: tuple[Secret, ...] = (), **options: Any) -> httpx.Response:
    """One request; maps transport failures and error statuses to CentreError (the
    ``secrets`` masked in messages). Also used by ``drd --server`` (drd/cli/remote.py)."""
    try:
        response = http.request(method, path, **options)
    except httpx.TimeoutException:
        raise CentreUnreachable(f"the centre at {server} did not answer in time "
                                f"({method} {path}); check that 'drd serve' runs and is "
                                "reachable from here") from None
    except httpx.TransportError as error:
        raise CentreUnreachable(_transport_message(server, error, secrets)) from None
    logger.debug("%s %s%s -> %d", method, server, path, response.status_code)
    if response.status_code >= 400:
        detail = describe_answer(response)
        raise CentreRefused(
            f"the centre refused {method} {path} (HTTP {response.status_code}): "
            + mask(detail, secrets),
            status=response.status_code, detail=mask(detail, secrets),
        )
    return response


def _transport_message(server: str, error: httpx.TransportError,
                       secrets: tuple[Secret, ...]) -> str:
    text = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(error.__context__, ssl.SSLError):
        return (f"the centre at {server} presented a certificate that the pinned CA does not "
                f"sign ({mask(text, secrets)}): wrong server, or the centre's CA changed")
    return (f"cannot reach the centre at {server}: {mask(text, secrets)}; check that "
            "'drd serve' runs and the URL is right")


def describe_answer(response: httpx.Response) -> str:
    """The one-line ``detail`` of an error answer, or a short description of it."""
    try:
        document = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else response.reason_phrase or "no reason given"
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's validation errors
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", ()))
                parts.append(f"{where}: {item.get('msg', '')}".strip(": "))
        return "; ".join(parts) or str(detail)[:200]
    return response.reason_phrase or "no reason given"

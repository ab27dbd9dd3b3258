"""The client's side of the protocol, against httpx's mock transport (no network)."""

from __future__ import annotations

import json

import httpx
import pytest

from agents.client import (
    CentreClient,
    CentreRefused,
    CentreUnreachable,
    ca_fingerprint,
    pinned_ssl_context,
)
from drd.crypto.ca import certificate_pem, create_ca, fingerprint_sha256
from drd.errors import EXIT_FAILED, OperationError
from drd.secrets import Secret

SERVER = "http://centre.test:8443"
AGENT_TOKEN = "agent-token-value-0123456789"


def client_with(handler, **options) -> CentreClient:
    return CentreClient(SERVER, agent_token=Secret(AGENT_TOKEN),
                        transport=httpx.MockTransport(handler), **options)


def test_agent_calls_carry_the_bearer_token_and_json():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/agent/heartbeat":
            return httpx.Response(200, json={"backup_now": True, "policy_version": 3})
        if request.url.path == "/v1/agent/snapshots":
            return httpx.Response(201, json={"duplicate": False})
        return httpx.Response(204)

    with client_with(handler) as client:
        assert client.heartbeat({"hostname": "h"}) == {"backup_now": True, "policy_version": 3}
        assert client.report_snapshot({"report_id": "r"}) == 201
        client.put_manifest("ab" * 32, {"files": []}, "c2lnbmF0dXJl")
    assert all(r.headers["Authorization"] == f"Bearer {AGENT_TOKEN}" for r in seen)
    assert json.loads(seen[0].content) == {"hostname": "h"}
    assert seen[2].method == "PUT"
    assert seen[2].url.path == f"/v1/agent/snapshots/{'ab' * 32}/manifest"
    assert json.loads(seen[2].content) == {"manifest": {"files": []},
                                           "signature": "c2lnbmF0dXJl"}
    assert seen[0].headers["User-Agent"].startswith("drd-agent/")


def test_refusals_carry_the_centres_detail_in_one_line():
    def handler(request):
        return httpx.Response(409, json={"detail": "this token was used at 10:00; ask for a "
                                                    "new one"})

    with client_with(handler) as client, pytest.raises(CentreRefused) as caught:
        client.preview(Secret("drd-enroll-1.secret-token-text"))
    error = caught.value
    assert error.status == 409 and not error.transient
    assert str(error) == ("the centre refused POST /v1/agent/enroll/preview (HTTP 409): this "
                          "token was used at 10:00; ask for a new one")
    assert error.exit_status == EXIT_FAILED


def test_validation_errors_and_non_json_answers_are_summarised():
    def validation(request):
        return httpx.Response(422, json={"detail": [{"loc": ["body", "tree"],
                                                     "msg": "String should match pattern"}]})

    with client_with(validation) as client, pytest.raises(CentreRefused) as caught:
        client.report_snapshot({})
    assert "body.tree: String should match pattern" in str(caught.value)

    with client_with(lambda r: httpx.Response(502, text="<html>Bad gateway</html>")) as client:
        with pytest.raises(CentreRefused) as caught:
            client.assignment()
    assert caught.value.transient and "<html>Bad gateway</html>" in str(caught.value)


def test_the_token_never_appears_in_an_error():
    token = "drd-enroll-1.very-secret-token-text"

    def handler(request):
        return httpx.Response(401, json={"detail": f"unknown token {token}"})

    with client_with(handler) as client, pytest.raises(CentreRefused) as caught:
        client.preview(Secret(token))
    assert token not in str(caught.value)


def test_an_unreachable_centre_is_one_clear_line():
    def handler(request):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with client_with(handler) as client, pytest.raises(CentreUnreachable) as caught:
        client.assignment()
    message = str(caught.value)
    assert message.startswith(f"cannot reach the centre at {SERVER}: [Errno 111] Connection "
                              "refused; check that 'drd serve' runs")
    assert "\n" not in message and isinstance(caught.value, OperationError)

    def slow(request):
        raise httpx.ReadTimeout("timed out")

    with client_with(slow) as client, pytest.raises(CentreUnreachable, match="in time"):
        client.heartbeat({})


def test_agent_calls_without_a_token_are_refused_locally():
    client = CentreClient(SERVER, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(OperationError, match="enroll first"):
        client.assignment()


def test_the_pinned_ca_is_the_only_trust_for_https():
    _, certificate = create_ca("drd test CA")
    pem = certificate_pem(certificate)
    assert ca_fingerprint(pem) == fingerprint_sha256(certificate)
    context = pinned_ssl_context(pem)
    assert len(context.get_ca_certs()) == 1
    with pytest.raises(OperationError, match="pinned CA"):
        CentreClient("https://centre.test")
    with pytest.raises(OperationError, match="not a PEM certificate"):
        ca_fingerprint(b"<html>not a certificate</html>")


def test_a_ca_pem_with_a_second_certificate_is_refused_not_trusted():
    """Someone between agent (or owner) and centre could add their own CA behind the
    real one: its fingerprint matches the first, but the second must not be trusted."""
    _, real = create_ca("drd test CA")
    _, intruder = create_ca("someone else")
    bundle = certificate_pem(real) + certificate_pem(intruder)
    with pytest.raises(OperationError, match="2 certificates"):
        ca_fingerprint(bundle)
    with pytest.raises(OperationError, match="2 certificates"):
        pinned_ssl_context(bundle)
    with pytest.raises(OperationError, match="0 certificates|not a PEM"):
        ca_fingerprint(b"")


def test_fetching_the_ca_needs_no_credentials():
    def handler(request):
        assert "Authorization" not in request.headers
        return httpx.Response(200, content=b"-----BEGIN CERTIFICATE-----...")

    assert CentreClient.fetch_ca_pem(SERVER, transport=httpx.MockTransport(handler)) \
        .startswith(b"-----BEGIN CERTIFICATE-----")

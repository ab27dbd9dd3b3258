"""Enrollment tokens as the agent reads them: pure parsing, checked before any network call."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from agents.token import normalise_server_url, parse_token
from drd.errors import EXIT_USAGE, UserError

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
CA = "ab" * 32
SECRET = "A" * 43


def make_token(**changes) -> str:
    payload = {"server": "https://centre.example.org:8443", "ca_sha256": CA, "system": "fs1",
               "expires": "2026-12-03T10:00:00Z", "secret": SECRET}
    payload.update(changes)
    payload = {key: value for key, value in payload.items() if value is not None}
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"drd-enroll-1.{encoded}"


def test_a_good_token_is_parsed_and_keeps_its_text_secret():
    text = make_token()
    token = parse_token(f"  {text}\n", NOW)
    assert token.server == "https://centre.example.org:8443"
    assert token.ca_sha256 == CA and token.system == "fs1"
    assert token.expires == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert token.text.reveal() == text
    assert text not in repr(token) and SECRET not in repr(token)


@pytest.mark.parametrize("text, words", [
    ("", "not a drd enrollment token"),
    ("hello", "not a drd enrollment token"),
    ("drd-enroll-2.e30", "unknown version"),
    ("drd-enroll-1.%%%", "damaged"),
    ("drd-enroll-1." + base64.urlsafe_b64encode(b"[1, 2]").decode(), "damaged"),
    (make_token(system=None), "no system"),
    (make_token(ca_sha256="xyz"), "ca_sha256"),
    (make_token(server="ftp://centre"), "server"),
    (make_token(expires="tomorrow"), "expiry"),
    (make_token(expires="2026-12-03T10:00:00"), "zone"),
])
def test_bad_tokens_are_user_errors_that_never_repeat_the_token(text, words):
    with pytest.raises(UserError) as caught:
        parse_token(text, NOW)
    assert caught.value.exit_status == EXIT_USAGE
    assert words in str(caught.value)
    if len(text) > 20:
        assert text not in str(caught.value)


def test_an_expired_token_is_refused_before_any_network_call():
    text = make_token(expires="2026-12-02T09:59:59Z")
    with pytest.raises(UserError, match="expired at 2026-12-02T09:59:59"):
        parse_token(text, NOW)
    assert parse_token(text, NOW - timedelta(minutes=1)).system == "fs1"


def test_the_server_url_is_normalised_for_comparison():
    token = parse_token(make_token(server="https://Centre.Example.org:443/"), NOW)
    assert token.server == "https://centre.example.org"
    assert normalise_server_url("http://127.0.0.1:80") == "http://127.0.0.1"
    assert normalise_server_url("http://[::1]:8443/") == "http://[::1]:8443"
    assert normalise_server_url(" https://c.test:8443/drd/ ") == "https://c.test:8443/drd"


@pytest.mark.parametrize("url", ["centre:8443", "ftp://centre", "https://", "https://u:p@c",
                                 "https://c?x=1", "http://c:99999"])
def test_bad_server_urls_are_refused(url):
    with pytest.raises(UserError):
        normalise_server_url(url)

"""The enrollment token's text form: round trip, damage, forgery, and its states."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from drd.secrets import Secret
from drd.services.enrollment_token import (
    PREFIX,
    TokenFormatError,
    decode_token,
    new_token,
    rfc3339,
    token_hash,
    token_state,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
CA = "ab" * 32
SECRET = "A" * 43


def _encode(payload: dict) -> str:
    data = json.dumps(payload).encode()
    return PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")


def _payload(**changes) -> dict:
    payload = {"server": "https://centre.example.org:8443", "ca_sha256": CA, "system": "fs1",
               "expires": "2026-12-03T10:00:00Z", "secret": SECRET}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_a_new_token_decodes_to_what_went_in() -> None:
    token = new_token("https://centre.example.org:8443/", CA, "fs1",
                      NOW + dt.timedelta(hours=24, microseconds=999))
    text = token.text.reveal()

    assert text.startswith(PREFIX) and "=" not in text and "\n" not in text
    again = decode_token(text)
    assert again.server == "https://centre.example.org:8443"
    assert again.ca_sha256 == CA and again.system == "fs1"
    assert again.expires == NOW + dt.timedelta(hours=24)  # kept to the second
    assert again.hash == token.hash == token_hash(text)


def test_the_payload_is_the_documented_json() -> None:
    text = new_token("https://c:8443", CA, "fs1", NOW, secret=SECRET).text.reveal()
    encoded = text[len(PREFIX):]
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))

    assert payload == {"server": "https://c:8443", "ca_sha256": CA, "system": "fs1",
                       "expires": "2026-12-02T10:00:00Z", "secret": SECRET}


def test_tokens_are_random_and_their_secret_never_prints() -> None:
    first = new_token("https://c:8443", CA, "fs1", NOW)
    second = new_token("https://c:8443", CA, "fs1", NOW)

    assert first.text != second.text and first.hash != second.hash
    assert first.text.reveal() not in repr(first)
    assert first.text.reveal() not in f"{first.text}"


def test_whitespace_around_a_pasted_token_is_ignored() -> None:
    text = new_token("https://c:8443", CA, "fs1", NOW).text.reveal()

    assert decode_token(f"  {text}\n").hash == token_hash(text) == token_hash(text + "\n")
    assert decode_token(Secret(text)).system == "fs1"


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a drd enrollment token"),
    ("hello", "not a drd enrollment token"),
    ("drd-enroll-2.abc", "unknown version"),
    (PREFIX + "!!!not-base64!!!", "damaged"),
    (PREFIX + base64.urlsafe_b64encode(b"not json").decode(), "damaged"),
    (PREFIX + base64.urlsafe_b64encode(b"[1, 2]").decode(), "no payload"),
    (PREFIX + "x" * 5000, "too long"),
])
def test_malformed_tokens_are_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(TokenFormatError, match=message):
        decode_token(text)


@pytest.mark.parametrize(("changes", "message"), [
    ({"secret": None}, "no secret"),
    ({"server": None, "system": None}, "no server, system"),
    ({"server": 8443}, "no server"),
    ({"server": "ftp://centre"}, "server URL"),
    ({"ca_sha256": "AB" * 32}, "ca_sha256"),
    ({"ca_sha256": "ab" * 31}, "ca_sha256"),
    ({"system": "File Server"}, "system name"),
    ({"secret": "short"}, "secret"),
    ({"expires": "tomorrow"}, "expiry"),
    ({"expires": "2026-12-03T10:00:00"}, "without a zone"),
])
def test_tokens_with_bad_fields_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(TokenFormatError, match=message):
        decode_token(_encode(_payload(**changes)))


def test_a_token_in_any_time_zone_is_read_as_utc() -> None:
    token = decode_token(_encode(_payload(expires="2026-12-03T12:00:00+02:00")))
    assert token.expires == dt.datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert token.expires.tzinfo == UTC


def test_new_token_refuses_what_would_not_decode() -> None:
    with pytest.raises(TokenFormatError):
        new_token("centre:8443", CA, "fs1", NOW)
    with pytest.raises(ValueError):
        rfc3339(dt.datetime(2026, 1, 1))


def test_a_forged_token_has_another_hash() -> None:
    genuine = new_token("https://c:8443", CA, "fs1", NOW, secret=SECRET)
    forged = new_token("https://c:8443", CA, "fs2", NOW, secret=SECRET)
    assert forged.hash != genuine.hash


@pytest.mark.parametrize(("fields", "state"), [
    ({}, "valid"),
    ({"expires_at": NOW}, "expired"),
    ({"expires_at": NOW - dt.timedelta(seconds=1)}, "expired"),
    ({"expires_at": None}, "valid"),
    ({"used_at": NOW}, "used"),
    ({"used_at": NOW, "expires_at": NOW - dt.timedelta(days=1)}, "used"),
    ({"revoked_at": NOW}, "revoked"),
    ({"revoked_at": NOW, "expires_at": NOW - dt.timedelta(days=1)}, "revoked"),
])
def test_token_state(fields: dict, state: str) -> None:
    arguments = {"expires_at": NOW + dt.timedelta(seconds=1), "used_at": None,
                 "revoked_at": None, "now": NOW} | fields
    assert token_state(**arguments) == state

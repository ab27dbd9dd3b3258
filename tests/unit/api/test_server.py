"""Serving: listen addresses, the journald log form, body limits, error details."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from drd.api.errors import describe_validation, status_of
from drd.api.limits import DEFAULT_LIMIT, MANIFEST_LIMIT, REPORT_LIMIT, limit_for
from drd.api.server import JournalFormatter, ListenAddress, parse_listen
from drd.config import Config
from drd.errors import UserError
from drd.services.enrollment import is_wildcard_url, server_url
from drd.services.refusals import BadRequest, Conflict, NotAllowed, NotAuthenticated, NotFound


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8443", "127.0.0.1", 8443),
    ("0.0.0.0:443", "0.0.0.0", 443),
    ("centre.example.org:8443", "centre.example.org", 8443),
    ("[::1]:8443", "::1", 8443),
    (" localhost:1 ", "localhost", 1),
])
def test_listen_addresses(text: str, host: str, port: int) -> None:
    assert parse_listen(text) == ListenAddress(host, port)


@pytest.mark.parametrize("text", ["8443", ":8443", "host", "host:", "host:http", "::1:8443",
                                  "host:0", "host:65536", "a b:80", "[::1]8443"])
def test_bad_listen_addresses_say_what_to_give(text: str) -> None:
    with pytest.raises(UserError, match="HOST:PORT|1-65535"):
        parse_listen(text)


def test_listen_urls_bracket_ipv6() -> None:
    assert ListenAddress("::1", 8443).url("https") == "https://[::1]:8443"
    assert ListenAddress("127.0.0.1", 80).url("http") == "http://127.0.0.1:80"


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", level, __file__, 1, message, None, None)


def test_log_lines_have_no_timestamp_and_carry_a_priority_for_journald() -> None:
    plain = JournalFormatter().format(_record(logging.INFO, "GET /healthz 200"))
    assert plain == "INFO uvicorn.access: GET /healthz 200"

    journal = JournalFormatter(syslog_prefix=True)
    assert journal.format(_record(logging.WARNING, "slow")) == "<4>WARNING uvicorn.access: slow"
    assert journal.format(_record(logging.ERROR, "a\nb")) == \
        "<3>ERROR uvicorn.access: a\n<3>b"


def test_bodies_are_limited_and_manifests_may_be_larger() -> None:
    assert limit_for("POST", "/v1/agent/heartbeat") == DEFAULT_LIMIT
    assert limit_for("POST", "/v1/agent/snapshots") == REPORT_LIMIT
    assert limit_for("PUT", f"/v1/agent/snapshots/{'a' * 64}/manifest") == MANIFEST_LIMIT
    assert limit_for("POST", f"/v1/agent/snapshots/{'a' * 64}/manifest") == DEFAULT_LIMIT
    assert limit_for("PUT", "/v1/agent/snapshots/x/manifest/more") == DEFAULT_LIMIT
    assert DEFAULT_LIMIT < REPORT_LIMIT < MANIFEST_LIMIT


def test_refusals_map_to_their_http_status() -> None:
    assert [status_of(kind("x")) for kind in (BadRequest, NotAuthenticated, NotAllowed,
                                              NotFound, Conflict)] == [400, 401, 403, 404, 409]


def test_validation_problems_become_one_line() -> None:
    problems = [{"loc": ("body", "files"), "msg": "Input should be a valid integer",
                 "type": "int_parsing"},
                {"loc": ("body", "stores", "dc-a", "complete"), "msg": "Field required",
                 "type": "missing"}]
    line = describe_validation(problems)
    assert line == ("body.files: Input should be a valid integer; "
                    "body.stores.dc-a.complete: Field required")
    assert "\n" not in line
    assert describe_validation([{"loc": ("body", 3), "msg": "JSON decode error",
                                 "type": "json_invalid"}]) == "the body is not valid JSON"
    many = describe_validation([{"loc": ("body", str(i)), "msg": "bad"} for i in range(9)])
    assert many.endswith("and 4 more")


def test_the_server_url_in_tokens() -> None:
    home = Path("/nonexistent")
    assert server_url(Config(home=home)) == "https://127.0.0.1:8443"
    assert server_url(Config(home=home, listen="0.0.0.0:9443")) == "https://0.0.0.0:9443"
    assert is_wildcard_url("https://0.0.0.0:9443") and not is_wildcard_url("https://c:1")
    public = Config(home=home, public_url="https://dr.city.example:8443/")
    assert server_url(public) == "https://dr.city.example:8443"
    assert server_url(public, "https://other:1") == "https://other:1"
    for bad in ("centre:8443", "ftp://centre", "https://user:pw@centre", "https://c:port",
                "https://c:1?x=1", "https://"):
        with pytest.raises(UserError, match="bad server URL"):
            server_url(public, bad)

"""The fan-out endpoint's protocol layer: paths, keys, ranges, listings, credentials."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from agents.fanout.protocol import (
    REST_V1,
    REST_V2,
    ByteRange,
    InvalidName,
    RangeNotSatisfiable,
    RequestTarget,
    UnknownPath,
    accepts_v2,
    basic_credentials,
    content_matches_name,
    credentials_match,
    listing_body,
    listing_prefix,
    may_delete,
    name_of_key,
    object_key,
    parse_range,
    parse_target,
    takes_retention,
)

ID = "ab" + "0123456789abcdef" * 3 + "0123456789abcd"
assert len(ID) == 64


# --- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", RequestTarget("repository")),
        ("/?create=true", RequestTarget("repository", create=True)),
        ("/?create=false", RequestTarget("repository")),
        ("/config", RequestTarget("config")),
        ("/data/", RequestTarget("listing", object_type="data")),
        ("/keys/", RequestTarget("listing", object_type="keys")),
        ("/locks/", RequestTarget("listing", object_type="locks")),
        ("/snapshots/", RequestTarget("listing", object_type="snapshots")),
        ("/index/", RequestTarget("listing", object_type="index")),
        (f"/data/{ID}", RequestTarget("object", object_type="data", name=ID)),
        (f"/locks/{ID}", RequestTarget("object", object_type="locks", name=ID)),
    ],
)
def test_paths_restic_sends_are_understood(path, expected):
    assert parse_target(path) == expected


@pytest.mark.parametrize(
    "path",
    ["", "/repo/config", "/other/", f"/data/ab/{ID}", "/data", "//config", "/config/x",
     f"/drd/{ID}", f"/data/{ID}/"],
)
def test_other_paths_are_unknown(path):
    with pytest.raises(UnknownPath):
        parse_target(path)


@pytest.mark.parametrize("name", ["abc", ID.upper(), ID + "0", "../" + ID[3:], "x" * 64])
def test_names_must_be_64_lowercase_hex(name):
    with pytest.raises((InvalidName, UnknownPath)):
        parse_target(f"/data/{name}")


def test_data_objects_go_under_their_first_two_hex_digits():
    assert object_key("data", ID) == f"data/ab/{ID}"
    assert parse_target(f"/data/{ID}").key == f"data/ab/{ID}"


@pytest.mark.parametrize("object_type", ["keys", "locks", "snapshots", "index"])
def test_other_objects_are_flat(object_type):
    assert object_key(object_type, ID) == f"{object_type}/{ID}"


def test_config_has_its_own_key_and_listings_none():
    assert parse_target("/config").key == "config"
    with pytest.raises(ValueError):
        _ = parse_target("/data/").key
    with pytest.raises(ValueError):
        object_key("config", ID)
    with pytest.raises(ValueError):
        object_key("data", "nothex")


def test_listing_prefixes_and_names_of_keys():
    assert listing_prefix("data") == "data/"
    assert listing_prefix("index") == "index/"
    assert name_of_key("data", f"data/ab/{ID}") == ID
    assert name_of_key("index", f"index/{ID}") == ID
    # A data object in the wrong subdirectory, a flat data key, a stray file: left out.
    assert name_of_key("data", f"data/cd/{ID}") is None
    assert name_of_key("data", f"data/{ID}") is None
    assert name_of_key("keys", "keys/README") is None
    assert name_of_key("index", f"index/sub/{ID}") is None


# --- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, ByteRange(0, 10, False)),
        ("bytes=0-", 10, ByteRange(0, 10, False)),  # restic's "whole object"
        ("bytes=0-9", 10, ByteRange(0, 10, False)),
        ("bytes=0-99", 10, ByteRange(0, 10, False)),
        ("bytes=2-5", 10, ByteRange(2, 4, True)),
        ("bytes=4-", 10, ByteRange(4, 6, True)),
        ("bytes=9-9", 10, ByteRange(9, 1, True)),
        ("bytes=-3", 10, ByteRange(7, 3, True)),
        ("bytes=-30", 10, ByteRange(0, 10, False)),
        ("bytes=0-", 0, ByteRange(0, 0, False)),
        # Not understood, hence ignored: the whole object.
        ("items=0-3", 10, ByteRange(0, 10, False)),
        ("bytes=0-1,4-5", 10, ByteRange(0, 10, False)),
        ("bytes=5-2", 10, ByteRange(0, 10, False)),
        ("bytes=a-b", 10, ByteRange(0, 10, False)),
        ("bytes=-", 10, ByteRange(0, 10, False)),
    ],
)
def test_ranges(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=11-20", 10),
                                              ("bytes=-0", 10), ("bytes=1-", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable) as raised:
        parse_range(header, size)
    assert raised.value.size == size


def test_content_range_header():
    assert ByteRange(2, 4, True).content_range(10) == "bytes 2-5/10"


# --- listings -------------------------------------------------------------------------------


def test_v2_listing_has_names_and_sizes_sorted_once_each():
    body, content_type = listing_body([("b" * 64, 5), ("a" * 64, 7), ("b" * 64, 5)], v2=True)
    assert content_type == REST_V2
    assert json.loads(body) == [{"name": "a" * 64, "size": 7}, {"name": "b" * 64, "size": 5}]


def test_v1_listing_has_names_only():
    body, content_type = listing_body([("b" * 64, 5), ("a" * 64, 7)], v2=False)
    assert content_type == REST_V1
    assert json.loads(body) == ["a" * 64, "b" * 64]


def test_empty_listing_is_an_empty_array():
    assert listing_body([], v2=True) == (b"[]", REST_V2)


def test_accept_header_selects_v2():
    assert accepts_v2(REST_V2)
    assert accepts_v2(f"text/html, {REST_V2}")
    assert not accepts_v2(REST_V1)
    assert not accepts_v2(None)


# --- credentials ----------------------------------------------------------------------------


def test_the_run_credential_is_required():
    header = basic_credentials("drd", "s3cret-token")
    assert credentials_match(header, "drd", "s3cret-token")
    assert credentials_match("basic " + header.split()[1], "drd", "s3cret-token")
    assert not credentials_match(basic_credentials("drd", "other"), "drd", "s3cret-token")
    assert not credentials_match(basic_credentials("root", "s3cret-token"), "drd", "s3cret-token")
    assert not credentials_match(None, "drd", "s3cret-token")
    assert not credentials_match("", "drd", "s3cret-token")
    assert not credentials_match("Bearer s3cret-token", "drd", "s3cret-token")
    assert not credentials_match("Basic !!!notbase64", "drd", "s3cret-token")
    token_only = "Basic " + base64.b64encode(b"s3cret-token").decode()
    assert not credentials_match(token_only, "drd", "s3cret-token")


# --- content, deletes, retention ------------------------------------------------------------


def test_content_must_match_its_name_except_config():
    body = b"some pack"
    name = hashlib.sha256(body).hexdigest()
    digest = hashlib.sha256(body).hexdigest()
    assert content_matches_name(parse_target(f"/data/{name}"), digest)
    assert not content_matches_name(parse_target(f"/data/{ID}"), digest)
    assert content_matches_name(parse_target("/config"), "")
    assert not content_matches_name(parse_target("/data/"), digest)


def test_only_locks_may_be_deleted():
    assert may_delete(parse_target(f"/locks/{ID}"))
    for path in (f"/data/{ID}", f"/keys/{ID}", f"/snapshots/{ID}", f"/index/{ID}", "/config",
                 "/locks/", "/"):
        assert not may_delete(parse_target(path)), path


def test_everything_but_locks_takes_a_retention():
    assert takes_retention(f"data/ab/{ID}")
    assert takes_retention("config")
    assert takes_retention(f"keys/{ID}")
    assert not takes_retention(f"locks/{ID}")

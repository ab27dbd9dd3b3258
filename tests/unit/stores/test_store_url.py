"""Store URLs and specifications: parsing and validation (pure, no I/O)."""

from __future__ import annotations

import pytest

from drd.errors import UserError
from drd.secrets import Secret
from drd.stores import FilesystemStore, RetryingStore
from drd.stores.url import (
    ParsedUrl,
    StoreSpec,
    open_store,
    parse_store_url,
    redact_url,
    validate_bucket_name,
    validate_endpoint,
    validate_spec,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://backups", ParsedUrl("s3", bucket="backups")),
        ("s3://backups/", ParsedUrl("s3", bucket="backups")),
        ("s3://backups/drd", ParsedUrl("s3", bucket="backups", prefix="drd")),
        ("s3://backups/city/drd/", ParsedUrl("s3", bucket="backups", prefix="city/drd")),
        ("S3://my.bucket-01/p", ParsedUrl("s3", bucket="my.bucket-01", prefix="p")),
        ("  s3://abc  ", ParsedUrl("s3", bucket="abc")),
        ("file:///srv/backups", ParsedUrl("file", path="/srv/backups")),
        ("file:///srv/backups/", ParsedUrl("file", path="/srv/backups")),
        ("file://localhost/srv/x", ParsedUrl("file", path="/srv/x")),
        ("file:///srv/with%20space", ParsedUrl("file", path="/srv/with space")),
        ("file:///", ParsedUrl("file", path="/")),
    ],
)
def test_good_urls(url, expected):
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty store URL"),
        ("backups", "no scheme"),
        ("/srv/backups", "no scheme"),
        ("gs://bucket/p", "scheme 'gs'"),
        ("http://127.0.0.1:8333/bucket", "scheme 'http'"),
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://ab", "3 to 63 characters"),
        ("s3://" + "a" * 64, "3 to 63 characters"),
        ("s3://Backups", "lowercase"),
        ("s3://back_ups", "lowercase"),
        ("s3://-backups", "begin and end"),
        ("s3://backups-", "begin and end"),
        ("s3://back..ups", "two adjacent dots"),
        ("s3://192.168.1.10", "IP address"),
        ("s3://xn--bucket", "reserves"),
        ("s3://bucket-s3alias", "reserves"),
        ("s3://key:secret@bucket/p", "carries credentials"),
        ("s3://bucket:9000/p", "--endpoint"),
        ("s3://bucket/a//b", "empty, '.' or '..'"),
        ("s3://bucket/a/../b", "empty, '.' or '..'"),
        ("s3://bucket/p?versionId=1", "no '?' or '#'"),
        ("file:relative/path", "relative path"),
        ("file://srv/backups", "read as a host"),
        ("file://server.example/srv", "read as a host"),
        ("file:///srv/../etc", "'.', '..'"),
        ("file:///srv/x#frag", "no '?' or '#'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, says):
    with pytest.raises(UserError, match=None) as caught:
        parse_store_url(url)
    assert says in str(caught.value)
    assert caught.value.exit_status == 2


SECRET = "TopSecretKey123"


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIAXX:{SECRET}@bucket/p",
        f"s3://{SECRET}@bucket/p",
        f"s3://AKIAXX:{SECRET}/with/slashes@bucket/p",
        f"s3://AKIAXX:{SECRET}?x#y@bucket/p",
        f"s3://AKIAXX:{SECRET}@[bad/p",
        f"s3://AKIAXX:{SECRET}@bucket:9000/p",
        f"S3://AKIAXX:{SECRET}@Bad_Bucket/p",
        f"file://user:{SECRET}@host/p",
        f"file://user:{SECRET}@/srv/x",
        f"gs://user:{SECRET}@bucket/p",
        f"AKIAXX:{SECRET}@bucket/p",
        f"s3:/AKIAXX:{SECRET}@bucket/p",
    ],
)
def test_credentials_in_a_url_are_not_echoed(url):
    with pytest.raises(UserError) as caught:
        parse_store_url(url)
    assert SECRET not in str(caught.value)
    assert caught.value.exit_status == 2
    with pytest.raises(UserError) as caught:
        validate_spec(StoreSpec("dc-a", url, endpoint="http://127.0.0.1:8333"))
    assert SECRET not in str(caught.value)
    assert "dc-a" in str(caught.value)


def test_credentials_in_an_s3_url_say_where_keys_go():
    with pytest.raises(UserError, match="carries credentials") as caught:
        parse_store_url(f"s3://AKIAXX:{SECRET}@bucket/p")
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)
    assert "s3://**redacted**@bucket/p" in str(caught.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        f"ftp://u:{SECRET}@h",
        f"http://u:{SECRET}@h",
        f"https://u:{SECRET}@h:9000/path?q",
        f"http://u:{SECRET}@[::1",
        f"http://u:{SECRET}@h:99999",
        f"http://{SECRET}@h",
        f"u:{SECRET}@h:9000",
        f"http://u:{SECRET}/x@h",
    ],
)
def test_credentials_in_an_endpoint_are_not_echoed(endpoint):
    with pytest.raises(UserError, match="credentials") as caught:
        validate_endpoint(endpoint)
    assert SECRET not in str(caught.value)
    with pytest.raises(UserError) as caught:
        validate_spec(StoreSpec("dc-a", "s3://bucket/p", endpoint=endpoint))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("url", ["s3://[bad/p", "s3://bad]/p", "file://[bad/srv", "s3://[::1]/p"])
def test_an_unparseable_url_is_a_user_error(url):
    with pytest.raises(UserError, match="store URL") as caught:
        validate_spec(StoreSpec("dc-a", url, endpoint="http://127.0.0.1:8333"))
    assert caught.value.exit_status == 2


@pytest.mark.parametrize(
    "endpoint", ["http://[::1", "http://[bad]:9000", "http://[::1]:x", "http://h]:1"]
)
def test_an_unparseable_endpoint_is_a_user_error(endpoint):
    with pytest.raises(UserError, match="endpoint") as caught:
        validate_spec(StoreSpec("dc-a", "s3://bucket/p", endpoint=endpoint))
    assert caught.value.exit_status == 2


def test_an_ipv6_endpoint_is_good():
    assert validate_endpoint("http://[::1]:8333/") == "http://[::1]:8333"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://AKIAXX:secret/with/slash@bucket/p", "s3://**redacted**@bucket/p"),
        ("file://user:secret@host/p", "file://**redacted**@host/p"),
        ("file:///srv/at@sign", "file:///srv/at@sign"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("key:secret@bucket", "**redacted**@bucket"),
    ],
)
def test_redact_url(text, shown):
    assert redact_url(text) == shown


@pytest.mark.parametrize("name", ["abc", "a" * 63, "my-bucket.2026", "0start"])
def test_valid_bucket_names(name):
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        ("http://127.0.0.1:8333/", "http://127.0.0.1:8333"),
        ("https://s3.eu-central-1.amazonaws.com", "https://s3.eu-central-1.amazonaws.com"),
    ],
)
def test_good_endpoints(endpoint, expected):
    assert validate_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:8333",
        "ftp://host",
        "http://",
        "http://user:pw@host",
        "http://host/bucket",
        "http://host:99999",
        "http://host?x=1",
    ],
)
def test_bad_endpoints(endpoint):
    with pytest.raises(UserError, match="endpoint"):
        validate_endpoint(endpoint)


def test_an_s3_spec_needs_an_endpoint_and_the_message_names_the_store():
    with pytest.raises(UserError, match=r"store 'dc-a': an s3:// store needs --endpoint"):
        validate_spec(StoreSpec("dc-a", "s3://backups/drd"))


def test_a_file_spec_refuses_s3_options_but_keeps_its_region():
    with pytest.raises(UserError, match="s3:// stores only"):
        validate_spec(StoreSpec("local", "file:///srv/b", endpoint="http://127.0.0.1:1"))
    assert validate_spec(StoreSpec("local", "file:///srv/b", region="eu-west-1")).kind == "file"
    with pytest.raises(UserError, match="cannot have Object Lock"):
        validate_spec(StoreSpec("local", "file:///srv/b", object_lock=True))


def test_a_good_spec_validates_to_its_parsed_url():
    spec = StoreSpec("dc-a", "s3://backups/drd", endpoint="http://127.0.0.1:8333", region="r1")
    assert validate_spec(spec) == ParsedUrl("s3", bucket="backups", prefix="drd")


def test_open_store_gives_a_retrying_filesystem_store_without_touching_the_disk(tmp_path):
    store = open_store(StoreSpec("local", (tmp_path / "nowhere").as_uri()), None, None)
    assert isinstance(store, RetryingStore)
    assert isinstance(store.unwrap(), FilesystemStore)
    assert store.name == "local"
    assert not (tmp_path / "nowhere").exists()


def test_open_store_needs_keys_for_s3():
    spec = StoreSpec("dc-a", "s3://backups", endpoint="http://127.0.0.1:8333")
    with pytest.raises(UserError, match="AWS_ACCESS_KEY_ID"):
        open_store(spec, None, None)
    with pytest.raises(UserError, match="AWS_SECRET_ACCESS_KEY"):
        open_store(spec, "AKID", None)
    with pytest.raises(UserError, match="AWS_ACCESS_KEY_ID"):
        open_store(spec, "", Secret("secret-value"))


def test_open_store_leaves_retries_to_the_retrying_store_and_bounds_bucket_requests():
    spec = StoreSpec("dc-a", "s3://backups", endpoint="http://127.0.0.1:8333")
    store = open_store(spec, "AKID", Secret("secret-value"), retry_attempts=2)
    s3 = store.unwrap()
    assert store.attempts == 2
    assert s3.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert s3.client.meta.config.connect_timeout == 5
    assert s3._bucket_client.meta.config.read_timeout == 10
    assert s3._bucket_client.meta.config.retries["total_max_attempts"] == 1

"""Store errors: botocore failures mapped to the typed errors, keys, streams (no I/O)."""

from __future__ import annotations

import io
import socket

import botocore.exceptions
import botocore.parsers
import pytest
import urllib3
from botocore.exceptions import ClientError

from drd.errors import OperationError
from drd.secrets import Secret
from drd.stores import (
    InvalidKey,
    ObjectLockUnsupported,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    validate_key,
)
from drd.stores.s3_errors import translate_error
from drd.stores.streams import FullReader, IteratorReader, LengthMismatch


def client_error(code: str, message: str = "", status: int = 400, operation="GetObject"):
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", "The specified key does not exist.", 404), ObjectNotFound),
        (client_error("404", "", 404, "HeadObject"), ObjectNotFound),
        (client_error("NoSuchVersion", "", 404), ObjectNotFound),
        (client_error("NoSuchBucket", "The specified bucket does not exist", 404), StoreNotFound),
        (client_error("SignatureDoesNotMatch", "The request signature ...", 403), StoreAuthError),
        (client_error("InvalidAccessKeyId", "", 403), StoreAuthError),
        (client_error("AccessDenied", "Access Denied.", 403), StoreAuthError),
        (client_error("403", "", 403, "HeadObject"), StoreAuthError),
        (client_error("InternalError", "", 500), StoreUnavailable),
        (client_error("SlowDown", "", 503), StoreUnavailable),
        (client_error("SomethingNew", "", 502), StoreUnavailable),
        (
            client_error("InvalidRequest", "Bucket is missing Object Lock Configuration", 400),
            ObjectLockUnsupported,
        ),
        (client_error("ObjectLockConfigurationNotFoundError", "", 404), ObjectLockUnsupported),
        (client_error("MalformedXML", "", 400), StoreError),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b"),
            StoreUnavailable,
        ),
        (
            botocore.exceptions.ConnectTimeoutError(endpoint_url="http://10.0.0.1/b"),
            StoreUnavailable,
        ),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://10.0.0.1/b"), StoreUnavailable),
        (botocore.exceptions.ResponseStreamingError(error="reset"), StoreUnavailable),
        (botocore.exceptions.NoCredentialsError(), StoreAuthError),
        (botocore.parsers.ResponseParserError("invalid XML received:\n<html>"), StoreError),
    ],
)
def test_botocore_errors_map_to_store_errors(error, expected):
    translated = translate_error("dc-a", error, doing="reading 'k'", key="k", bucket="b")
    assert type(translated) is expected
    assert isinstance(translated, OperationError) and translated.exit_status == 1
    assert str(translated).startswith("store 'dc-a': ")
    assert "\n" not in str(translated)
    assert translated.store == "dc-a"


def test_a_missing_bucket_is_named():
    translated = translate_error(
        "dc-a", client_error("NoSuchBucket", "", 404), doing="x", bucket="backups"
    )
    assert "bucket 'backups' does not exist" in str(translated)


@pytest.mark.parametrize("code", ["404", "NotFound", "NoSuchKey"])
def test_a_404_without_a_key_is_about_the_bucket(code):
    translated = translate_error(
        "dc-a",
        client_error(code, "Not Found", 404, "HeadBucket"),
        doing="looking for bucket 'backups'",
        bucket="backups",
        endpoint="http://127.0.0.1:8333",
    )
    assert type(translated) is StoreNotFound
    message = str(translated)
    assert "None" not in message and "object" not in message
    assert "bucket 'backups' not found at http://127.0.0.1:8333" in message
    assert "endpoint" in message and "does not exist" in message


def test_connection_refused_names_the_endpoint_and_the_cause_not_the_request():
    url = "http://127.0.0.1:16690/drd-dc-a?list-type=2&prefix=city%2F&max-keys=1"
    error = botocore.exceptions.EndpointConnectionError(
        endpoint_url=url, error=ConnectionRefusedError(111, "Connection refused")
    )
    translated = translate_error(
        "dc-a", error, doing="listing", bucket="drd-dc-a", endpoint="http://127.0.0.1:16690"
    )
    assert type(translated) is StoreUnavailable
    assert str(translated) == (
        "store 'dc-a': cannot reach http://127.0.0.1:16690 (connection refused)"
    )
    # without the endpoint, botocore's request URL gives it, cut to scheme, host and port
    translated = translate_error("dc-a", error, doing="listing")
    assert str(translated) == (
        "store 'dc-a': cannot reach http://127.0.0.1:16690 (connection refused)"
    )


def test_an_unknown_host_and_a_connect_timeout_say_so():
    unknown = botocore.exceptions.EndpointConnectionError(
        endpoint_url="http://nowhere.invalid:9/b", error=socket.gaierror(-2, "Name unknown")
    )
    assert "(host name not found)" in str(translate_error("s", unknown, doing="x"))
    slow = botocore.exceptions.ConnectTimeoutError(endpoint_url="http://10.0.0.1/b")
    assert str(translate_error("s", slow, doing="x", endpoint="http://10.0.0.1")) == (
        "store 's': cannot reach http://10.0.0.1 (connection timed out)"
    )


def test_a_read_timeout_says_how_long_it_waited_and_while_doing_what():
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 16690)
    error = botocore.exceptions.ReadTimeoutError(
        endpoint_url="http://127.0.0.1:16690/b?list-type=2",
        error=urllib3.exceptions.ReadTimeoutError(pool, "/", "Read timed out. (read timeout=10)"),
    )
    translated = translate_error(
        "dc-a", error, doing="listing bucket 'b'", endpoint="http://127.0.0.1:16690"
    )
    assert type(translated) is StoreUnavailable
    assert str(translated) == (
        "store 'dc-a': listing bucket 'b': no answer within 10 s from http://127.0.0.1:16690"
    )


def test_secrets_in_server_text_are_masked():
    secret = Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    error = client_error("SignatureDoesNotMatch", f"string to sign used {secret.reveal()}", 403)
    translated = translate_error("dc-a", error, doing="listing", secrets_to_mask=(secret,))
    assert secret.reveal() not in str(translated)
    assert "**redacted**" in str(translated)


def test_a_store_error_is_one_line_with_the_key():
    error = StoreError("dc-b", "server said:\n  something\n bad", key="data/aa/x")
    assert str(error) == "store 'dc-b': server said: something bad"
    assert error.key == "data/aa/x"


@pytest.mark.parametrize("key", ["config", "data/ab/abcdef", "keys/k", "a.b/c-d_e"])
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "a/",
        "a//b",
        ".",
        "..",
        "a/./b",
        "../x",
        "a\\b",
        "a\x00b",
        "data/.x.drd-tmp-123",
    ],
)
def test_invalid_keys(key):
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_invalid_key_is_a_value_error():
    assert issubclass(InvalidKey, ValueError)


def test_iterator_reader_reads_across_chunks_and_closes_the_source():
    closed = []

    def chunks():
        try:
            yield b"abc"
            yield b""
            yield b"defgh"
        finally:
            closed.append(True)

    reader = IteratorReader(chunks())
    assert reader.read(2) == b"ab"
    assert reader.read(4) == b"cdef"
    assert reader.read() == b"gh"
    assert reader.read(1) == b""
    reader.close()
    assert closed == [True]
    assert not reader.seekable()


def test_exact_length_reader_passes_the_exact_data():
    assert FullReader(io.BytesIO(b"12345"), 5).read() == b"12345"
    assert FullReader(io.BytesIO(b""), 0).read() == b""


def test_exact_length_reader_refuses_short_and_long_data():
    with pytest.raises(LengthMismatch, match="short"):
        FullReader(io.BytesIO(b"1234"), 5).read()
    with pytest.raises(LengthMismatch, match="longer"):
        FullReader(io.BytesIO(b"123456"), 5).read()


class Trickle(io.RawIOBase):
    """A source that returns at most three bytes a read, like a socket."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        piece = self._data.read(min(3, len(target)))
        target[: len(piece)] = piece
        return len(piece)


def test_full_reader_joins_short_reads():
    # boto3 would take a short read for the end of the data
    reader = FullReader(Trickle(b"0123456789"))
    assert reader.read(7) == b"0123456"
    assert reader.read(7) == b"789"
    assert reader.read(7) == b""
    assert FullReader(Trickle(b"0123456789"), 10).read(8) == b"01234567"


def test_iterator_reader_fills_whole_reads():
    reader = IteratorReader(iter([b"a", b"bc", b"", b"def"]))
    assert reader.read(5) == b"abcde"
    assert reader.read(5) == b"f"

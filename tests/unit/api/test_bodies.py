"""Reading a large JSON body one form at a time (drd/api/bodies.py): what fits, what not."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError

from drd.api.bodies import read_json_model, request_body
from drd.api.errors import describe_validation
from drd.services.protocol import ManifestUpload


def _request(pieces: list[bytes], content_type: str = "application/json") -> Request:
    messages = [{"type": "http.request", "body": piece, "more_body": n < len(pieces) - 1}
                for n, piece in enumerate(pieces)]

    async def receive() -> dict:
        return messages.pop(0)

    scope = {"type": "http", "method": "PUT", "path": "/", "query_string": b"",
             "headers": [(b"content-type", content_type.encode())] if content_type else []}
    return Request(scope, receive)


def _read(pieces: list[bytes], content_type: str = "application/json") -> ManifestUpload:
    return asyncio.run(read_json_model(_request(pieces, content_type), ManifestUpload))


def _refusal(pieces: list[bytes], content_type: str = "application/json") -> str:
    with pytest.raises(RequestValidationError) as raised:
        _read(pieces, content_type)
    return describe_validation(list(raised.value.errors()))


def test_a_body_in_pieces_is_parsed_and_validated() -> None:
    upload = _read([b'{"manifest": {"files": [{"path": "/srv/\xc3\xa9"}]}',
                    b', "signature": "c2ln"}'])
    assert upload.manifest == {"files": [{"path": "/srv/\u00e9"}]} and upload.signature == "c2ln"
    assert _read([b'{"manifest": {}, "signature": "x"}'], "application/json; charset=utf-8")


def test_what_is_not_json_or_does_not_fit_is_a_422_reason() -> None:
    assert _refusal([b"{not json"]) == "the body is not valid JSON"
    assert _refusal([b'{"manifest": "\xff"}']) == "the body is not valid JSON"
    assert _refusal([b"[" * 100_000 + b"]" * 100_000]) == "the body is not valid JSON"
    assert "application/json" in _refusal([b"{}"], "text/plain")
    assert "application/json" in _refusal([b"{}"], "")
    assert _refusal([b'{"manifest": {}}']) == "body.signature: Field required"
    assert _refusal([b'{"manifest": [], "signature": "x"}']).startswith("body.manifest: ")


def test_the_route_still_publishes_its_body() -> None:
    schema = request_body(ManifestUpload)["requestBody"]["content"]["application/json"]
    assert schema["schema"]["required"] == ["manifest", "signature"]

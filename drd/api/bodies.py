"""Reading a large JSON body with one copy of it in memory at a time.

FastAPI reads a body into a list of chunks, joins them, decodes the joined bytes and
parses them, and keeps the bytes for as long as the handler runs. For a body of hundreds
of MiB (a manifest) that is the body twice over while the handler checks and stores
what was parsed. :func:`read_json_model` keeps one form at a time instead: the bytes in
one buffer, then the text (the bytes dropped), then the parsed objects (the text
dropped). A route that uses it declares its body in ``openapi_extra`` with
:func:`request_body`, so that ``/openapi.json`` still describes it.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

_JSON_TYPES = ("application/json",)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is ``model`` as JSON."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


async def read_json_model(request: Request, model: type[Model]) -> Model:
    """The request's body, JSON, validated as ``model``.

    Raises :class:`RequestValidationError` (answered 422 with a reason, as for any body)
    when the body is not declared as JSON, is not UTF-8 JSON, or does not fit ``model``.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES and not content_type.endswith("+json"):
        raise _invalid("content_type", "the body must be JSON (Content-Type: "
                       "application/json)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("json_invalid", "not UTF-8") from None
    del body
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise _invalid("json_invalid", "JSON decode error") from None
    del text
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        ) from None


def _invalid(kind: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body",), "msg": message,
                                    "input": None}])

"""Turn pydantic's validation errors into short messages for whoever wrote the policy.

``must be >= 0`` rather than ``Input should be greater than or equal to 0``; what was
written instead is named (``not the text '7'``); an unknown key suggests the field
that was probably meant. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic_core import ErrorDetails

_KIND_OF_VALUE = {
    ("int_type", "int_parsing", "int_from_float"): "must be a whole number",
    ("float_type", "float_parsing"): "must be a number",
    ("bool_type", "bool_parsing"): "must be true or false",
    ("string_type",): "must be text",
    ("list_type", "tuple_type", "iterable_type", "set_type"): "must be a list",
    ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
        "must be a mapping (key: value)",
}
_TYPE_MESSAGES = {kind: message for kinds, message in _KIND_OF_VALUE.items() for kind in kinds}

_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def describe_value(value: Any) -> str:
    """How a YAML value reads in a message: ``the text '7'``, ``a list``, ``empty``."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | float):
        return str(value)
    return f"a {type(value).__name__}"


def error_message(error: ErrorDetails, field_names: Iterable[str] = ()) -> str:
    """The message for one pydantic error.

    ``field_names`` are all the field names of the schema, for the "did you mean"
    hint on an unknown key.
    """
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        unknown = error["loc"][-1] if error["loc"] else ""
        close = difflib.get_close_matches(str(unknown), list(field_names), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field{hint}"
    if kind in _BOUNDS:
        operator, key = _BOUNDS[kind]
        return f"must be {operator} {_number(context.get(key))}"
    if kind == "too_short":
        minimum = context.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must have at least {minimum} items"
    if kind == "too_long":
        return f"must have at most {context.get('max_length')} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]}, not {describe_value(error.get('input'))}"
    if kind in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])
    return error["msg"]

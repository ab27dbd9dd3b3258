"""A sample policy file generated from the schema: every field, its description, its example.

Like borgmatic's ``generate-config``: :func:`example_policy_yaml` walks the models in
``policies.schema`` and writes each field's first example under a comment holding its
description. The tests load the result, so the examples stay valid and complete as
the schema grows. Pure.
"""

from __future__ import annotations

import textwrap
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from policies.schema import Policy

_COMMENT_WIDTH = 88


def _nested_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model a field holds (also when optional), or None for other fields."""
    annotation = info.annotation
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _dump(name: str, value: Any) -> list[str]:
    # flow style for lists inside a value ([a, b]), block style for the key itself
    flow = None if isinstance(value, list | dict) else False
    text = yaml.safe_dump({name: value}, default_flow_style=flow, sort_keys=False, width=100)
    return text.rstrip("\n").split("\n")


def _lines(model: type[BaseModel], indent: str) -> list[str]:
    lines: list[str] = []
    for name, info in model.model_fields.items():
        for comment in textwrap.wrap(info.description or "", _COMMENT_WIDTH - len(indent) - 2):
            lines.append(f"{indent}# {comment}")
        nested = _nested_model(info)
        if nested is not None:
            lines.append(f"{indent}{name}:")
            lines += _lines(nested, indent + "  ")
        else:
            lines += [indent + line for line in _dump(name, (info.examples or [None])[0])]
    return lines


def example_policy_yaml() -> str:
    """The text of a sample policy file with every field of the schema set to its example."""
    header = [
        "# A drd policy: what a system backs up, when, to which stores, for how long,",
        "# and how its restores are proven. Generated from the schema (policies.sample).",
        "",
    ]
    return "\n".join(header + _lines(Policy, "")) + "\n"

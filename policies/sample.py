"""A sample policy file generated from the schema: every field, its description, its example.

Like borgmatic's ``generate-config``: :func:`example_policy_yaml` walks the models in
``policies.schema`` and writes each field's first example under a comment holding its
description. The tests load the result, so the examples stay valid and complete as
the schema grows. Pure.
"""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from policies.introspect import nested_models
from policies.schema import Policy

_COMMENT_WIDTH = 88


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
        # a model held itself (also optional) is written out field by field;
        # lists of models and unions of several are written as their example
        nested = nested_models(info.annotation, in_lists=False)
        if len(nested) == 1:
            lines.append(f"{indent}{name}:")
            lines += _lines(nested[0], indent + "  ")
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

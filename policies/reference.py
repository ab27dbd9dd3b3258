"""The policy reference (``docs/policy-reference.md``), generated from the schema.

Every field of every model in :mod:`policies.schema` with its type, whether it is
required (or its default), its description and its example. A unit test checks that
the committed document equals what this module generates, so the reference cannot
drift from the schema. Pure.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from policies.durations import format_duration
from policies.introspect import nested_models
from policies.loader import MAX_FILE_BYTES
from policies.sample import example_policy_yaml
from policies.schema import MAX_COUNT, MAX_OBJECT_LOCK_DAYS, CommandSource, PathSource, Policy
from policies.types import MAX_DURATION, Size

# Models reached through a union (sources) are documented under their own heading.
_SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("policy (top level)", Policy),
    ("sources[] with path", PathSource),
    ("sources[] with command", CommandSource),
)


def _type_name(annotation: Any) -> str:
    if annotation == Size:
        return "size"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " or ".join(names) + (" (optional)" if optional else "")
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"mapping ({annotation.__name__})"
        return {"str": "text", "int": "integer", "bool": "true/false", "float": "number",
                "timedelta": "duration"}.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(info) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    if default is PydanticUndefined:
        return "optional"
    if isinstance(default, BaseModel):
        return "see below"
    return f"default `{_inline(default)}`"


def _inline(value: Any) -> str:
    if hasattr(value, "total_seconds"):
        return format_duration(value)
    return json.dumps(value, default=str)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    rows = ["| field | type | required / default | description | example |",
            "|---|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        example = _inline(info.examples[0]) if info.examples else ""
        rows.append(f"| `{path}` | {_cell(_type_name(info.annotation))} | {_default(info)} "
                    f"| {_cell(info.description or '')} | `{_cell(example)}` |")
        for child in nested_models(info.annotation):
            if child not in (PathSource, CommandSource):
                is_list = typing.get_origin(info.annotation) in (list, tuple)
                nested.append((f"{path}[]." if is_list else f"{path}.", child))
    return rows, nested


def policy_reference_markdown() -> str:
    """The whole reference document as Markdown."""
    lines = [
        "# Policy reference",
        "",
        "<!-- Generated from policies/schema.py by `python -m policies.reference`;",
        "     do not edit by hand (a test compares this file with the schema). -->",
        "",
        "A policy is a YAML file validated into these models. Unknown keys are refused;",
        "every problem is reported at once as `file:line: field.path: message`, and",
        "nothing is applied while any remains. Durations are written `90s`, `15m`, `1h`,",
        "`7d`, `2w` (or combined, `1h30m`); schedules are five-field cron in UTC.",
        "",
        f"Limits: durations at most `{format_duration(MAX_DURATION)}` (100 years), retention "
        f"counts at most {MAX_COUNT},",
        f"`object_lock_days` at most {MAX_OBJECT_LOCK_DAYS}, a policy file at most "
        f"{MAX_FILE_BYTES // (1024 * 1024)} MiB.",
        "",
    ]
    queue: list[tuple[str, str, type[BaseModel]]] = [
        (title, "sources[]." if model is not Policy else "", model)
        for title, model in _SECTIONS
    ]
    seen: set[type[BaseModel]] = set()
    while queue:
        title, prefix, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        rows, nested = _table(model, prefix)
        lines += [f"## {title}", "", *_docstring(model), *rows, ""]
        queue += [(path.rstrip("."), path, child) for path, child in nested]
    lines += ["## A complete example", "", "Every field set to its example "
              "(`policies.sample.example_policy_yaml`):", "", "```yaml",
              example_policy_yaml().rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _docstring(model: type[BaseModel]) -> list[str]:
    text = (model.__doc__ or "").strip()
    if not text:
        return []
    return [" ".join(paragraph.split()) + "\n" for paragraph in text.split("\n\n")]


if __name__ == "__main__":
    import sys

    sys.stdout.write(policy_reference_markdown())

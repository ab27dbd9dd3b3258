"""The field types policies are made of: names, paths, commands, durations, schedules.

Each is an ``Annotated`` type whose validator raises ``ValueError`` with a message for
the person who wrote the policy (the loader shows it after ``file:line: field:``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
)

from drd.names import NAME_PATTERN, name_problem
from policies.cron import validate_cron
from policies.durations import DURATION_HINT, DURATION_PATTERN, format_duration, parse_duration
from policies.sizes import SIZE_HINT, SIZE_PATTERN, format_size, parse_size

FILENAME_PATTERN = r"^[A-Za-z0-9._-]{1,255}$"
MAX_DURATION = timedelta(days=36500)
"""The longest duration a policy may write: 100 years (36500d)."""
_FILENAME = re.compile(FILENAME_PATTERN)


def _slug(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{value!r} is not an absolute path (it must start with '/')")
    return value


def _file_name(value: str) -> str:
    if not _FILENAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{value!r} is not a plain file name: use letters, digits, '.', '_' and '-', no '/'"
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _argv_shape(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "must be a list of arguments such as [\"pg_dump\", \"app\"], not one string: "
            "commands never go through a shell"
        )
    return value


def _argv_program(value: list[str]) -> list[str]:
    if not value[0].strip():
        raise ValueError("the program (the first argument) must not be empty")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("must not be negative")
    elif isinstance(value, str):
        value = parse_duration(value)
    else:
        raise ValueError(f"must be {DURATION_HINT}; a bare number has no unit")
    if value > MAX_DURATION:
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)} (100 years)")
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be {SIZE_HINT}, not {value}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("must be at least 1 byte")
        return value
    if isinstance(value, str):
        return parse_size(value)
    raise ValueError(f"must be {SIZE_HINT}")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Slug = Annotated[str, AfterValidator(_slug), WithJsonSchema({"type": "string",
                                                            "pattern": NAME_PATTERN})]
"""A name (``drd.names``): 1-63 of ``a-z 0-9 -``, starting and ending with a letter or digit."""

AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
"""A path on the backed-up system, starting with ``/``."""

FileName = Annotated[str, AfterValidator(_file_name)]
"""A plain file name (no directories) of letters, digits, ``.``, ``_``, ``-``."""

NonBlank = Annotated[str, AfterValidator(_not_blank)]
"""A string with something other than blanks in it."""

Argv = Annotated[
    list[str], BeforeValidator(_argv_shape), Field(min_length=1), AfterValidator(_argv_program)
]
"""A command as a list of arguments, program first; never run through a shell."""

Duration = Annotated[
    timedelta,
    PlainValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A duration written ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` (see policies.durations),
at most :data:`MAX_DURATION`."""

PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A :data:`Duration` longer than zero."""

Size = Annotated[
    int,
    PlainValidator(_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": SIZE_PATTERN},
                              {"type": "integer", "minimum": 1}]}),
]
"""A number of bytes written ``500M``, ``10G``, ``20GiB`` or as plain digits (see
policies.sizes); K, M, G, T, P are powers of 1024."""

Cron = Annotated[str, AfterValidator(validate_cron)]
"""A five-field cron expression, UTC, with cron(8) meaning (see policies.cron)."""

"""Load policy files: YAML with line numbers -> schema -> cross-field rules -> Policy.

Every problem in every file is collected before anything is refused, and each is
reported as ``file:line: field.path: message`` (see ``policies.problems``):

0. the file itself (:func:`load_policies`): one problem without a line when it cannot
   be read, is not a regular file (a directory, a device, a FIFO), is larger than
   1 MiB or is not UTF-8;
1. YAML syntax: one problem, at the line of the error (nothing more can be read) --
   also characters YAML refuses (NUL), too deep nesting and alias bombs;
2. repeated keys and non-text keys, at the key's line;
3. the schema (``policies.schema``): every error pydantic finds, at the line of the
   offending key or item -- of the enclosing mapping for a missing field;
4. only when the schema passed: the cross-field rules (``policies.rules``);
5. across files (:func:`load_policies`): a policy name used twice.

A policy is returned only when it has no problem at all: nothing is half-applied.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from policies import schema
from policies.messages import error_message
from policies.problems import PolicyError, Problem, format_path
from policies.rules import StoreFacts, check_policy
from policies.schema import Policy
from policies.yaml_lines import YamlDocument, YamlSyntaxError, read_yaml

MAX_FILE_BYTES = 1024 * 1024
"""The largest policy file read (1 MiB); a policy is a few hundred bytes."""


def _field_names() -> frozenset[str]:
    names: set[str] = set()
    for value in vars(schema).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            names.update(value.model_fields)
    return frozenset(names)


_FIELD_NAMES = _field_names()


@dataclass
class _Parsed:
    """One file's outcome: the policy (None if refused), its problems, where its name is."""

    policy: Policy | None
    problems: list[Problem] = field(default_factory=list)
    name_line: int = 1


def _schema_problems(error: ValidationError, document: YamlDocument,
                     filename: str) -> list[Problem]:
    problems = []
    for detail in error.errors():
        path = tuple(part for part in detail["loc"] if part not in schema.UNION_TAGS)
        problems.append(Problem(filename, document.line_of(path), format_path(path),
                                error_message(detail, _FIELD_NAMES)))
    return problems


def _parse(text: str, filename: str, store_regions: Mapping[str, str] | None,
           store_facts: Mapping[str, StoreFacts] | None = None) -> _Parsed:
    try:
        document = read_yaml(text)
    except YamlSyntaxError as error:
        return _Parsed(None, [Problem(filename, error.line, "", error.message)])
    if document.data is None:
        return _Parsed(None, [Problem(filename, 1, "", "the file is empty; a policy is a "
                                      "mapping with at least policy, schedule, sources, "
                                      "stores, min_copies, retention, rpo and rto")])
    problems = [Problem(filename, line, format_path(path), message)
                for path, line, message in document.problems]
    try:
        policy = Policy.model_validate(document.data)
    except ValidationError as error:
        return _Parsed(None, problems + _schema_problems(error, document, filename))
    for path, message in check_policy(policy, store_regions, store_facts):
        problems.append(Problem(filename, document.line_of(path), format_path(path), message))
    if problems:
        return _Parsed(None, problems)
    policy.attach_source(filename, text)
    return _Parsed(policy, [], document.line_of(("policy",)))


def parse_policy_text(text: str, filename: str = "<policy>",
                      store_regions: Mapping[str, str] | None = None) -> Policy:
    """Validate the text of one policy file and return the policy.

    ``filename`` is only used in messages and kept as the policy's ``source_path``.
    ``store_regions`` maps known store names to regions; None skips the store checks
    that need the catalog. Raises :class:`PolicyError` listing every problem.
    """
    parsed = _parse(text, filename, store_regions)
    if parsed.policy is None:
        raise PolicyError(parsed.problems)
    return parsed.policy


def _read_bytes(filename: str) -> bytes | str:
    """The content of ``filename``, or why it is not read (a message for a Problem).

    Opened without blocking (a FIFO must not hang the loader) and checked before
    reading: only a regular file of at most :data:`MAX_FILE_BYTES` is read, and never
    more than that even if it grows meanwhile (``/dev/zero`` is never read at all).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(filename, flags)
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            return "is a directory"
        if not stat.S_ISREG(mode):
            return "is not a regular file"
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
    return data


def _read(path: str | os.PathLike) -> tuple[str, str | None, Problem | None]:
    filename = os.fspath(path)
    try:
        data = _read_bytes(filename)
    except IsADirectoryError:
        return filename, None, Problem(filename, None, "", "is a directory")
    except OSError as error:
        return filename, None, Problem(filename, None, "", f"cannot be read: {error.strerror}")
    if isinstance(data, str):
        return filename, None, Problem(filename, None, "", data)
    try:
        # as open() in text mode would: UTF-8, and \r\n or \r read as \n
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None).read()
    except UnicodeDecodeError as error:
        return filename, None, Problem(filename, None, "", f"is not UTF-8 text ({error.reason})")
    return filename, text, None


def load_policy(path: str | os.PathLike,
                store_regions: Mapping[str, str] | None = None) -> Policy:
    """Read and validate one policy file. Raises :class:`PolicyError` listing every problem
    (an unreadable file is one problem without a line)."""
    return load_policies([path], store_regions)[0]


def load_policies(paths: Iterable[str | os.PathLike],
                  store_regions: Mapping[str, str] | None = None,
                  store_facts: Mapping[str, StoreFacts] | None = None) -> list[Policy]:
    """Read and validate several policy files, all or nothing, in the order given.

    ``store_facts`` (from the catalog; None skips them) lets the credential rules run
    (:func:`policies.rules.check_policy`).

    Problems of every file are collected, and a policy name used by two files is a
    problem of the second, before :class:`PolicyError` is raised with all of them.
    """
    policies: list[Policy] = []
    problems: list[Problem] = []
    first_use: dict[str, str] = {}
    for path in paths:
        filename, text, unreadable = _read(path)
        if unreadable is not None:
            problems.append(unreadable)
            continue
        parsed = _parse(text, filename, store_regions, store_facts)
        problems += parsed.problems
        if parsed.policy is None:
            continue
        name = parsed.policy.name
        if name in first_use:
            problems.append(Problem(filename, parsed.name_line, "policy",
                                    f"the name {name!r} is already used by {first_use[name]}"))
        else:
            first_use[name] = filename
        policies.append(parsed.policy)
    if problems:
        raise PolicyError(problems)
    return policies

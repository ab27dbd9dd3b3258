"""Which systems a read is about, and statements built once per kind of question.

On an indexed catalog the database answers a status query in well under a millisecond;
building the SQLAlchemy statement for it -- coercing every expression, then computing
the key under which its compiled form is cached -- costs several times that in Python.
A system's page asks a dozen such questions, so the API's speed rests on not building
them again for every request.

A :class:`Scope` is a condition on ``System`` whose values sit in bound parameters when
it has a known *shape* (one system, a range of names, a list of ids, every system).
:func:`statement` builds a statement once per (question, shape) and keeps it; each call
executes it with the scope's own parameters. A condition of any other form (an owner's
departments, a filter) is an ad-hoc scope: its statements are built each time, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from drd.catalog.models import System

MAX_KEPT = 512  # statements; more only when policies keep changing (see the key)

_SHAPES: dict[str, Any] = {
    "every": sa.true(),
    "one": System.id == sa.bindparam("scope_system", type_=sa.Integer()),
    "range": sa.and_(System.name >= sa.bindparam("scope_first", type_=sa.String()),
                     System.name <= sa.bindparam("scope_last", type_=sa.String())),
    "ids": System.id.in_(sa.bindparam("scope_ids", expanding=True, type_=sa.Integer())),
}


@dataclass(frozen=True)
class Scope:
    """A condition on ``System``; ``shape`` names a kept form (None: ad hoc), ``params``
    its bound values."""

    condition: Any
    shape: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def one(cls, system_id: int) -> Scope:
        """The system with this id."""
        return cls(_SHAPES["one"], "one", {"scope_system": system_id})

    @classmethod
    def names_between(cls, first: str, last: str) -> Scope:
        """The systems named ``first`` to ``last`` (inclusive, by the database's order)."""
        return cls(_SHAPES["range"], "range", {"scope_first": first, "scope_last": last})

    @classmethod
    def ids(cls, system_ids: Sequence[int]) -> Scope:
        """The systems with these ids (any number, an empty list too)."""
        return cls(_SHAPES["ids"], "ids", {"scope_ids": list(system_ids)})

    @classmethod
    def every(cls) -> Scope:
        """Every system."""
        return cls(_SHAPES["every"], "every")

    @classmethod
    def where(cls, condition: Any) -> Scope:
        """An ad-hoc scope (``None``: every system)."""
        return cls.every() if condition is None else cls(condition)

    @classmethod
    def of(cls, where: Scope | Any) -> Scope:
        """``where`` as a scope: a scope as it is, a SQL condition (or None) ad hoc."""
        return where if isinstance(where, Scope) else cls.where(where)


_kept: dict[tuple, Any] = {}
_lock = threading.Lock()


def statement(question: Hashable, scope: Scope, build: Callable[[Any], Any]) -> Any:
    """The statement ``build(scope.condition)``, built once per ``question`` and shape.

    ``question`` names what is asked and everything else the statement's form depends on
    (literal values in it, say), since the statement is reused for every scope of the
    same shape. An ad-hoc scope's statement is built each time.
    """
    if scope.shape is None:
        return build(scope.condition)
    key = (question, scope.shape)
    kept = _kept.get(key)
    if kept is None:
        kept = build(scope.condition)
        with _lock:
            if len(_kept) >= MAX_KEPT:
                _kept.clear()
            _kept[key] = kept
    return kept

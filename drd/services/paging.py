"""Keyset pagination for the read API's lists: :class:`Page` and opaque cursors.

A list is sorted by a unique key (a system's name, a row's id, a snapshot's time and
id). A page holds at most ``limit`` items and, when more follow, ``next``: an opaque
cursor naming the last item's key. The next page starts strictly after that key, so
walking ``next`` until it is None visits every item once, even while new rows arrive
(they land before the first page of a newest-first list, or in their place by name).

A cursor is URL-safe base64 of a small JSON list (``["fs1"]``, ``[42]``,
``["2026-12-02T10:00:00+00:00", 42]``); clients must treat it as opaque. Everything here
is pure.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 400
# keys are ids of INTEGER columns, which PostgreSQL refuses to compare with more
MAX_KEY_INTEGER = 2**31 - 1
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]{1,300}")

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list: ``items`` in the list's order, and the cursor of the next page
    (None on the last page)."""

    items: list[Item]
    next: str | None = Field(None, description="pass as ?cursor= for the next page; "
                                               "null on the last page")


class InvalidCursor(ValueError):
    """A cursor this list did not hand out (the message says why, in one line)."""


def encode_cursor(key: Sequence[Any]) -> str:
    """The cursor for ``key`` (strings, integers and aware datetimes)."""
    values = [value.isoformat() if isinstance(value, dt.datetime) else value for value in key]
    text = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type]) -> tuple[Any, ...]:
    """The key in ``cursor``, each part of the type in ``kinds`` (``str``, ``int`` or
    ``dt.datetime``).

    Raises :class:`InvalidCursor` for anything :func:`encode_cursor` did not make for a
    key of these kinds.
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("cursor: too long; pass the 'next' of the previous page")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        values = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("cursor: not a cursor of this list; pass the 'next' of the "
                            "previous page") from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise InvalidCursor("cursor: not a cursor of this list; pass the 'next' of the "
                            "previous page")
    return tuple(_value(value, kind) for value, kind in zip(values, kinds, strict=True))


def _value(value: Any, kind: type) -> Any:
    if (kind is int and isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value <= MAX_KEY_INTEGER):
        return value
    # no control characters: PostgreSQL refuses NUL in text, and no key holds any
    if kind is str and isinstance(value, str) and _PRINTABLE.fullmatch(value):
        try:
            value.encode()  # a lone surrogate from a JSON escape is no text to compare
        except UnicodeEncodeError:
            pass
        else:
            return value
    if kind is dt.datetime and isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(dt.UTC)
        except (ValueError, OverflowError):
            pass
    raise InvalidCursor("cursor: not a cursor of this list; pass the 'next' of the previous "
                        "page")


def page_of(rows: Sequence[Item], limit: int, key) -> tuple[list[Item], str | None]:
    """Cut ``rows`` (fetched with ``limit + 1``) to a page; the cursor of the next one.

    ``key(row)`` gives the sort key of a row.
    """
    if len(rows) <= limit:
        return list(rows), None
    kept = list(rows[:limit])
    return kept, encode_cursor(key(kept[-1]))

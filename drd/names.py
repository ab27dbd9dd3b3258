"""The rule for names of things drd manages: policies, stores, drill checks.

A name is 1-63 lowercase letters, digits and ``-``, starting and ending with a letter
or digit (a DNS label), so that it is safe in URLs, file names, secret contexts and
command lines. The rule and its message live here, once; everything that checks a
name uses :func:`is_valid_name`, :func:`name_problem` or :func:`require_name`.

A bottom module: only the standard library and ``drd.errors``.
"""

from __future__ import annotations

import re

from drd.errors import UserError

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
"""The rule as a regular expression (also valid in JSON Schema); match it whole."""

_NAME = re.compile(NAME_PATTERN)

NAME_RULE = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
"""What a name may be, in words, for messages."""


def is_valid_name(text: object) -> bool:
    """True when ``text`` is a string that follows the name rule."""
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def name_problem(text: object, what: str = "name") -> str | None:
    """Why ``text`` is not a valid name, or None when it is.

    ``"'File Server' is not a valid name: use 1-63 lowercase letters, ..."``; ``what``
    names the kind of name (``"store name"``) where that helps the reader.
    """
    if is_valid_name(text):
        return None
    return f"{text!r} is not a valid {what}: {NAME_RULE}"


def require_name(text: str, what: str = "name") -> str:
    """Return ``text`` if it is a valid name; raise :class:`UserError` saying why if not."""
    problem = name_problem(text, what)
    if problem is not None:
        raise UserError(problem)
    return text

"""Sizes as policies and the command line write them: ``500M``, ``20GiB``, ``1T``, ``1024``.

A size is a number (a fraction is allowed: ``1.5G``) and an optional unit, ``K``, ``M``,
``G``, ``T`` or ``P``, each a power of 1024, optionally followed by ``iB`` or ``B``
(``MiB``, ``MB`` and ``M`` alike); plain digits are bytes. Pure functions, no I/O.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
SIZE_HINT = "a size such as 500M, 20GiB or 1T (bytes; K, M, G, T are powers of 1024)"
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*[kmgtpKMGTP]?[iI]?[bB]?\s*$"


def parse_size(text: str) -> int:
    """``"500M"`` -> 524288000; plain digits are bytes; K, M, G, T, P are powers of 1024
    (``MiB``, ``MB`` and ``M`` alike). Raises ``ValueError`` with a message for a user,
    also for a size below 1 byte."""
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not {SIZE_HINT}")
    number, unit, _suffix = match.groups()
    value = float(number) * _UNITS[unit.lower()]
    if value < 1:
        raise ValueError(f"{text!r} is too small: a size must be at least 1 byte")
    return int(value)


def format_size(size: int) -> str:
    """The canonical text of ``size`` bytes: a count of the largest unit dividing it exactly.

    ``10 << 30`` gives ``"10G"``, ``1536`` gives ``"1536"`` (1.5K is not a whole count
    of K), and ``parse_size(format_size(n)) == n`` for every ``n >= 1``.
    """
    for unit in ("p", "t", "g", "m", "k"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit.upper()}"
    return str(size)

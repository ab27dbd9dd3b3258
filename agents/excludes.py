"""Per-path excludes, mapped onto restic's global ``--exclude``, and matched as restic does.

A policy gives excludes per path source (``{path: /srv/share, exclude: ["*.tmp",
"cache/"]}``) but restic applies every ``--exclude`` to every path of a backup. So each
pattern is *rooted* at its source (:func:`rooted_patterns`):

- a relative pattern ``X`` of source ``P`` becomes ``P/**/X``: it matches what restic's
  ``X`` would match, but only below ``P`` (``*.tmp`` under ``/srv/share`` leaves
  ``/etc/x.tmp`` alone). Like restic, a trailing ``/`` is dropped (restic cleans every
  pattern), so ``cache/`` also matches a file named ``cache``. The one difference from a
  plain ``--exclude X``: the components of ``P`` itself are not matched (``share/*.tmp``
  under ``/srv/share`` matches ``/srv/share/**/share/*.tmp``, not ``/srv/share/x.tmp``);
  a pattern is relative to its source.
- an absolute pattern (``/srv/share/tmp``) is kept as it is; it is already rooted.
- ``!X`` (restic's negation, which re-includes what an earlier pattern excluded) becomes
  ``!`` + the rooted ``X``; order is kept, sources in policy order.

Glob characters in ``P`` are escaped, so a source path with ``*`` or ``[`` in its name
only matches itself.

:class:`ExcludeMatcher` applies the rooted patterns the way restic 0.14 does
(``internal/filter``: components matched with Go's ``filepath.Match``, ``**`` for any
number of directories, a relative pattern matches any run of components, the last
matching pattern decides, negated ones re-include), so that the manifest lists exactly
the files restic saved. Everything here is pure.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from drd.errors import UserError

_GLOB_CHARACTERS = re.compile(r"([\\*?\[\]])")


def escape_glob(text: str) -> str:
    """``text`` with Go glob characters (``\\ * ? [ ]``) escaped by a backslash."""
    return _GLOB_CHARACTERS.sub(r"\\\1", text)


def clean_pattern(pattern: str) -> str:
    """The pattern as restic cleans it (Go's ``filepath.Clean``): no trailing or double
    ``/``, no ``.`` parts, ``..`` resolved."""
    cleaned = posixpath.normpath(pattern)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def rooted_pattern(source_path: str, pattern: str) -> str:
    """One exclude pattern of the source ``source_path``, as a global restic pattern.

    Raises:
        UserError: an empty pattern, or a bad glob (restic would refuse it).
    """
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    if not body.strip():
        raise UserError(f"exclude pattern {pattern!r} of source {source_path} is empty")
    if body.startswith("/"):
        rooted = clean_pattern(body)
    else:
        root = escape_glob(clean_pattern(source_path).rstrip("/"))
        rooted = clean_pattern(f"{root}/**/{body}")
    compile_pattern(rooted)  # refuse what restic would refuse, with the source named
    return ("!" if negated else "") + rooted


def rooted_patterns(sources: Iterable[tuple[str, Sequence[str]]]) -> list[str]:
    """Every source's patterns, rooted, in order: the ``--exclude`` list of one backup.

    ``sources`` is ``(path, exclude patterns)`` per path source.
    """
    return [rooted_pattern(path, pattern) for path, patterns in sources for pattern in patterns]


# -- matching as restic does --------------------------------------------------------------


@dataclass(frozen=True)
class CompiledPattern:
    """A cleaned pattern split into components; ``negated`` for a ``!`` pattern."""

    text: str
    parts: tuple[str, ...]
    negated: bool = False


def compile_pattern(pattern: str) -> CompiledPattern:
    """Split and check a pattern. Raises UserError for a malformed glob component."""
    negated = pattern.startswith("!")
    body = clean_pattern(pattern[1:] if negated else pattern)
    parts = tuple(body.split("/"))
    for part in parts:
        if part != "**":
            _component_regex(part)
    return CompiledPattern(text=pattern, parts=parts, negated=negated)


@lru_cache(maxsize=4096)
def _component_regex(part: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` for one component as a regex; None for a plain name.

    Raises:
        UserError: a malformed glob (an unclosed ``[``, a trailing ``\\``, an empty class).
    """
    if not any(character in part for character in "\\[]*?"):
        return None
    out: list[str] = []
    index = 0
    length = len(part)
    while index < length:
        character = part[index]
        if character == "*":
            out.append("[^/]*")
        elif character == "?":
            out.append("[^/]")
        elif character == "\\":
            index += 1
            if index >= length:
                raise UserError(f"bad exclude pattern component {part!r}: it ends with '\\'")
            out.append(re.escape(part[index]))
        elif character == "[":
            index, text = _character_class(part, index)
            out.append(text)
            continue
        else:
            out.append(re.escape(character))
        index += 1
    return re.compile("".join(out), re.DOTALL)


def _character_class(part: str, start: int) -> tuple[int, str]:
    """Translate ``[...]`` at ``part[start]``; return the index after it and the regex."""
    bad = UserError(f"bad exclude pattern component {part!r}: malformed '[...]'")
    index = start + 1
    negate = index < len(part) and part[index] == "^"
    if negate:
        index += 1
    ranges: list[str] = []
    first = True
    while True:
        if index >= len(part):
            raise bad
        if part[index] == "]" and not first:
            index += 1
            break
        low, index = _class_character(part, index, bad)
        high = low
        if index < len(part) and part[index] == "-":
            high, index = _class_character(part, index + 1, bad)
            if high < low:
                raise bad
        ranges.append(f"{re.escape(low)}-{re.escape(high)}")
        first = False
    return index, f"[{'^' if negate else ''}{''.join(ranges)}]"


def _class_character(part: str, index: int, bad: UserError) -> tuple[str, int]:
    if index >= len(part) or part[index] in "-]":
        raise bad
    if part[index] == "\\":
        index += 1
        if index >= len(part):
            raise bad
    return part[index], index + 1


def _component_matches(pattern: str, name: str) -> bool:
    regex = _component_regex(pattern)
    if regex is None:
        return pattern == name
    return regex.fullmatch(name) is not None


def _match(parts: Sequence[str], names: Sequence[str]) -> bool:
    """restic's ``filter.match``: the pattern against a path's components."""
    if "**" in parts:
        position = parts.index("**")
        for count in range(len(names) - len(parts) + 2):
            expanded = (*parts[:position], *(["*"] * count), *parts[position + 1:])
            if _match(expanded, names):
                return True
        return False
    if not parts and not names:
        return True
    if not parts or len(parts) > len(names):
        return False
    last_offset = 0 if parts[0] == "" else len(names) - len(parts)
    for offset in range(last_offset, -1, -1):
        if all(_component_matches(parts[index], names[offset + index])
               for index in range(len(parts) - 1, -1, -1)):
            return True
    return False


class ExcludeMatcher:
    """Decides, as restic would, whether an absolute path is excluded by the patterns.

    Raises (constructor): UserError for a malformed pattern.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(compile_pattern(pattern) for pattern in patterns if pattern)

    def excluded(self, path: str) -> bool:
        """True when the last pattern matching ``path`` is not negated."""
        if not self.patterns:
            return False
        names = path.split("/")
        verdict = False
        for pattern in self.patterns:
            if _match(pattern.parts, names):
                verdict = not pattern.negated
        return verdict

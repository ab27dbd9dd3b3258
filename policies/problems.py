"""What is wrong with a policy file, where: :class:`Problem` and :class:`PolicyError`.

A problem prints as ``file:line: field.path: message``, for example
``policies/fs.yaml:12: retention.keep_daily: must be >= 0``; without a field path
(a YAML syntax error) as ``file:line: message``, and without a line (an unreadable
file) as ``file: message``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drd.errors import UserError

PathTuple = tuple[str | int, ...]
"""A field's place in a policy: ``("sources", 1, "command")``."""


def format_path(path: Sequence[str | int]) -> str:
    """``("sources", 1, "command")`` -> ``"sources[1].command"``; ``()`` -> ``""``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a policy file: where (file, 1-based line, field path) and what."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def _sort_key(problem: Problem) -> tuple:
    return (problem.file, problem.line or 0, problem.path, problem.message)


class PolicyError(UserError):
    """One or more policy files are invalid; nothing of them was applied (exit status 2).

    ``problems`` lists every problem found, ordered by file and line; ``str()`` gives
    one per line.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems, key=_sort_key)
        super().__init__("\n".join(str(problem) for problem in self.problems))

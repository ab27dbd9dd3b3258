"""Read YAML and remember the line of every key and list item.

PyYAML's ``safe_load`` forgets where things were written and silently keeps the last
of two equal keys. :func:`read_yaml` composes the node tree with the safe loader,
builds plain Python data from it, and records, for each place in the data (a tuple
such as ``("sources", 1, "command")``), the 1-based line where it was written: the
key's line for a mapping entry, the item's first line for a list item. Repeated keys
and non-text keys come back as problems, not silently dropped.

Anchors, aliases and ``<<`` merge keys work as in ``yaml.safe_load``. What a hostile
or broken file could do to the reader is bounded: nesting deeper than
:data:`MAX_DEPTH` and more than :data:`MAX_VALUES` values (counting every use of an
alias in full, against "billion laughs") are refused, and characters YAML does not
allow, numbers with too many digits and impossible dates are syntax errors with their
line -- never an exception other than :class:`YamlSyntaxError`. No I/O.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policies.problems import PathTuple

_MERGE_TAG = "tag:yaml.org,2002:merge"

MAX_DEPTH = 100
"""How deeply collections may nest (a policy needs about 5 levels)."""

MAX_VALUES = 100_000
"""How many values a document may build to, aliases counted each time they are used."""

_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML's line breaks
_TOO_DEEP = f"nested too deeply (more than {MAX_DEPTH} levels)"
_INT_TAG = "tag:yaml.org,2002:int"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_SCALAR_KINDS = {
    _INT_TAG: "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    _TIMESTAMP_TAG: "a date or time",
}


class YamlSyntaxError(ValueError):
    """The text is not one well-formed YAML document; ``line`` is 1-based, or None."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class YamlDocument:
    """The data of a YAML document, where each part of it was written, and key problems.

    ``problems`` are ``(path, line, message)`` for repeated keys and keys that are not
    text; the data keeps the first of repeated keys.
    """

    data: Any = None
    lines: dict[PathTuple, int] = field(default_factory=dict)
    problems: list[tuple[PathTuple, int, str]] = field(default_factory=list)

    def line_of(self, path: PathTuple) -> int:
        """The line of ``path``, or of its nearest written parent (a missing key's mapping)."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:length]))
            if line is not None:
                return line
        return 1


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _too_many_digits(text: str) -> bool:
    limit = sys.get_int_max_str_digits()
    return limit > 0 and sum(character.isdigit() for character in text) > limit


class _Refused(yaml.MarkedYAMLError):
    """A document this module refuses to read further: its ``problem`` is the message."""


def _refuse(node: Node, message: str) -> _Refused:
    return _Refused(problem=message, problem_mark=node.start_mark)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing collections nested more than :data:`MAX_DEPTH` deep
    while composing (PyYAML composes recursively: deep nesting would exhaust the stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self._depth >= MAX_DEPTH:
            raise _Refused(problem=_TOO_DEEP, problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """Builds data from nodes, recording lines and key problems into a YamlDocument."""

    def __init__(self, loader: yaml.SafeLoader, document: YamlDocument) -> None:
        self.loader = loader
        self.document = document
        self.active: set[int] = set()  # nodes being built: an alias back to one is a loop
        self.values = 0  # values built so far, every use of an alias counted
        self.depth = 0  # nodes being built, one inside the other (aliases and merges too)

    def build(self, node: Node, path: PathTuple) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _refuse(node, f"too many values (more than {MAX_VALUES}, counting each use "
                          "of an alias in full)")
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self.active:
            self.document.problems.append((path, _line(node), "an alias refers to itself"))
            return None
        if self.depth >= MAX_DEPTH:
            raise _refuse(node, _TOO_DEEP)
        self.active.add(id(node))
        self.depth += 1
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._mapping(node, path)
        finally:
            self.depth -= 1
            self.active.discard(id(node))

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as error:  # PyYAML's constructors raise about anything
            # an impossible date (2024-13-45), an integer of thousands of digits, and
            # explicit tags on text they cannot read (!!bool maybe, !!timestamp soon),
            # which PyYAML answers with ValueError, KeyError, AttributeError...
            text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            message = f"{text!r} cannot be read as {_SCALAR_KINDS.get(node.tag, node.tag)}"
            if node.tag == _INT_TAG and _too_many_digits(node.value):
                message += ": it has too many digits"
            elif node.tag == _TIMESTAMP_TAG and isinstance(error, ValueError):
                message += f": {error}"  # "month must be in 1..12"
            raise _refuse(node, message) from None

    def _sequence(self, node: SequenceNode, path: PathTuple) -> list:
        items = []
        for index, child in enumerate(node.value):
            self.document.lines[path + (index,)] = _line(child)
            items.append(self.build(child, path + (index,)))
        return items

    def _mapping(self, node: MappingNode, path: PathTuple) -> dict:
        merged: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    # earlier merge sources win, as in YAML's merge key rules
                    for key, value in self.build(source, path).items():
                        merged.setdefault(key, value)
        own: dict = {}
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in own:
                self.document.problems.append(
                    (path + (key,), _line(key_node),
                     f"duplicate key; it is already set at line {first_lines[key]}")
                )
                continue
            first_lines[key] = _line(key_node)
            self.document.lines[path + (key,)] = _line(key_node)
            own[key] = self.build(value_node, path + (key,))
        return {**merged, **own}

    def _merge_sources(self, node: Node) -> list[MappingNode]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        raise _refuse(node, "a << merge key needs a mapping or a list of mappings")

    def _key(self, key_node: Node, path: PathTuple) -> str | None:
        key = self._scalar(key_node) if isinstance(key_node, ScalarNode) else None
        if not isinstance(key, str):
            self.document.problems.append(
                (path, _line(key_node), f"a key must be text, not {key_node.value!r}"
                 if isinstance(key_node, ScalarNode) else "a key must be text")
            )
            return None
        return key


def read_yaml(text: str) -> YamlDocument:
    """Parse ``text`` (one YAML document) into data, lines and key problems.

    An empty document gives ``data`` None. Raises :class:`YamlSyntaxError` when the text
    is not YAML (a character YAML does not allow, such as NUL, included), holds several
    documents, uses a tag the safe loader refuses, has a scalar that cannot be
    constructed, nests too deeply or builds to too many values; never anything else.
    """
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        document = YamlDocument()
        if root is not None:
            document.lines[()] = _line(root)
            document.data = _Builder(loader, document).build(root, ())
        return document
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = ": ".join(part for part in (error.context, error.problem) if part)
        if not isinstance(error, _Refused) and ("alias" in message or "anchor" in message):
            message += ' (quote values that start with * or &, e.g. "*/5 * * * *")'
        raise YamlSyntaxError(message or "not valid YAML",
                              mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as error:
        line = len(_LINE_BREAK.findall(text, 0, error.position)) + 1
        character = (f"#x{error.character:04x}" if isinstance(error.character, int)
                     else repr(error.character))
        raise YamlSyntaxError(
            f"character {character} is not allowed in YAML ({error.reason})", line
        ) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(f"not valid YAML: {error}", None) from None
    except RecursionError:
        # a backstop: compose_node and the builder refuse deep nesting before this
        raise YamlSyntaxError(_TOO_DEEP, None) from None
    finally:
        if loader is not None:
            loader.dispose()

"""Read YAML and remember the line of every key and list item.

PyYAML's ``safe_load`` forgets where things were written and silently keeps the last
of two equal keys. :func:`read_yaml` composes the node tree with the safe loader,
builds plain Python data from it, and records, for each place in the data (a tuple
such as ``("sources", 1, "command")``), the 1-based line where it was written: the
key's line for a mapping entry, the item's first line for a list item. Repeated keys
and non-text keys come back as problems, not silently dropped.

Anchors, aliases and ``<<`` merge keys work as in ``yaml.safe_load``. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policies.problems import PathTuple

_MERGE_TAG = "tag:yaml.org,2002:merge"


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


class _Builder:
    """Builds data from nodes, recording lines and key problems into a YamlDocument."""

    def __init__(self, loader: yaml.SafeLoader, document: YamlDocument) -> None:
        self.loader = loader
        self.document = document
        self.active: set[int] = set()  # nodes being built: an alias back to one is a loop

    def build(self, node: Node, path: PathTuple) -> Any:
        if isinstance(node, ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.active:
            self.document.problems.append((path, _line(node), "an alias refers to itself"))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

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
        raise yaml.MarkedYAMLError(
            problem="a << merge key needs a mapping or a list of mappings",
            problem_mark=node.start_mark,
        )

    def _key(self, key_node: Node, path: PathTuple) -> str | None:
        key = (self.loader.construct_object(key_node, deep=True)
               if isinstance(key_node, ScalarNode) else None)
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
    is not YAML, holds several documents, or uses a tag the safe loader refuses.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        document = YamlDocument()
        if root is not None:
            document.lines[()] = _line(root)
            document.data = _Builder(loader, document).build(root, ())
        return document
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = ": ".join(part for part in (error.context, error.problem) if part)
        if "alias" in message or "anchor" in message:
            message += ' (quote values that start with * or &, e.g. "*/5 * * * *")'
        raise YamlSyntaxError(message or "not valid YAML",
                              mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(f"not valid YAML: {error}", None) from None
    finally:
        loader.dispose()

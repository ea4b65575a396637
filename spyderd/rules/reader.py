"""Reader: rule files to plain located entries (stage 1 of reader -> collector -> compiler).

The reader walks yaml's composed node tree instead of loading plain Python values, because
the nodes carry marks: every entry and every key keeps its file, line and column, and string
values become `SourceText` so a condition error points into the file. It knows the shape of
a file (a list of `rule:`, `list:`, `macro:` mappings) and nothing about their meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from spyderd.rules.diagnostics import Diagnostic, Location, error, warning
from spyderd.rules.source import SourceFile, SourceText

ENTRY_KINDS = ("rule", "list", "macro")


class _Constructor(SafeConstructor):
    """YAML values as plain Python, with a bare `=` read as the string "=" (YAML 1.1 gives it
    a 'value' tag that PyYAML cannot build; Falco's `comps: [=, startswith]` uses it)."""


_Constructor.add_constructor("tag:yaml.org,2002:value", SafeConstructor.construct_yaml_str)


def construct(node: yaml.Node) -> Any:
    """A YAML node's value as plain Python (raises yaml.MarkedYAMLError)."""
    return _Constructor().construct_object(node, deep=True)


RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(slots=True)
class Item:
    """One key of an entry: its Python value and the YAML node it came from."""

    key: str
    value: Any
    node: yaml.Node
    key_loc: Location
    file: SourceFile

    @property
    def loc(self) -> Location:
        return node_location(self.node, self.file)

    def text(self) -> SourceText:
        """The value as located text; only meaningful when the node is a string scalar."""
        return SourceText.from_node(self.node, self.file)

    def elements(self) -> list[tuple[Any, yaml.Node]]:
        """(value, node) of each element when the value is a sequence, else []."""
        if not isinstance(self.node, yaml.SequenceNode):
            return []
        return list(zip(self.value, self.node.value, strict=True))


@dataclass(slots=True)
class Entry:
    """A `rule:`, `list:` or `macro:` mapping from a file, keys kept in file order."""

    kind: str
    name: str
    loc: Location
    file: SourceFile
    items: dict[str, Item] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        item = self.items.get(key)
        return default if item is None else item.value


def node_location(node: yaml.Node, file: SourceFile) -> Location:
    """1-based location of a YAML node's first character."""
    return Location(file.name, node.start_mark.line + 1, node.start_mark.column + 1)


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Rule files in load order: a directory gives its *.yaml/*.yml sorted by name.

    A missing directory is skipped (rules.d may not exist); a missing file named on purpose
    is an error. A missing path is taken as a file when it ends in .yaml or .yml.
    """
    files: list[Path] = []
    diags: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    (p for p in path.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file()),
                    key=lambda p: p.name,
                )
            )
        elif path.exists():
            files.append(path)
        elif path.suffix in RULE_SUFFIXES:
            diags.append(error("E002", "rule file not found", Location(str(path), 1, 1)))
    return files, diags


def read_paths(paths: Iterable[str | Path]) -> tuple[list[Entry], list[Diagnostic]]:
    """Every entry of every rule file, in load order, with all diagnostics found."""
    files, diags = expand_paths(paths)
    entries: list[Entry] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            diags.append(error("E002", f"cannot read rule file: {exc}", Location(str(path), 1, 1)))
            continue
        found, problems = read_text(text, str(path))
        entries.extend(found)
        diags.extend(problems)
    return entries, diags


def read_text(text: str, name: str) -> tuple[list[Entry], list[Diagnostic]]:
    """Entries of one rule file's text; `name` is what diagnostics call the file."""
    file = SourceFile.from_text(name, text)
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        return [], [_yaml_error(exc, file)]
    except yaml.YAMLError as exc:
        return [], [error("E001", f"YAML error: {exc}", Location(name, 1, 1))]
    entries: list[Entry] = []
    diags: list[Diagnostic] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, yaml.SequenceNode):
            diags.append(
                _at("E003", "a rule file is a list of rule:, list: and macro: entries", doc, file)
            )
            continue
        for node in doc.value:
            entry = _entry(node, file, diags)
            if entry is not None:
                entries.append(entry)
    return entries, diags


def _yaml_error(exc: yaml.MarkedYAMLError, file: SourceFile) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "YAML syntax error"
    if exc.context and exc.problem:
        problem = f"{exc.problem} ({exc.context})"
    return error(
        "E001", f"YAML syntax error: {problem}", Location(file.name, line, col), file.line(line)
    )


def _at(code: str, message: str, node: yaml.Node, file: SourceFile) -> Diagnostic:
    loc = node_location(node, file)
    return error(code, message, loc, file.line(loc.line))


def _entry(node: yaml.Node, file: SourceFile, diags: list[Diagnostic]) -> Entry | None:
    """One list element as an Entry, or None (with a diagnostic) when it is not one."""
    if not isinstance(node, yaml.MappingNode):
        diags.append(_at("E003", "each entry is a mapping with rule:, list: or macro:", node, file))
        return None
    items = mapping_items(node, file, diags)
    if items is None:
        return None
    kinds = [k for k in ENTRY_KINDS if k in items]
    if len(kinds) != 1:
        what = "none" if not kinds else "more than one"
        diags.append(_at("E003", f"entry has {what} of rule:, list:, macro:", node, file))
        return None
    head = items[kinds[0]]
    if not isinstance(head.value, str) or not head.value.strip():
        diags.append(_at("E005", f"{kinds[0]}: needs a non-empty name", head.node, file))
        return None
    return Entry(kinds[0], head.value, head.key_loc, file, items)


def mapping_items(
    node: yaml.MappingNode, file: SourceFile, diags: list[Diagnostic]
) -> dict[str, Item] | None:
    """The mapping's keys and values; a value YAML cannot construct is an error."""
    items: dict[str, Item] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            diags.append(_at("E003", "keys must be plain names", key_node, file))
            continue
        key_loc = node_location(key_node, file)
        if key in items:
            diags.append(
                warning(
                    "W009",
                    f"duplicate key {key!r}; the last one is used",
                    key_loc,
                    file.line(key_loc.line),
                )
            )
        try:
            value = construct(value_node)
        except yaml.MarkedYAMLError as exc:
            diags.append(_yaml_error(exc, file))
            return None
        items[key] = Item(key, value, value_node, key_loc, file)
    return items

"""Strings from rule files that remember where they came from, down to the character.

A condition is parsed from the *value* of a YAML scalar, so a parse error has an offset into
that value. `SourceText.locate` turns the offset back into the file's line and column, for
single-line (plain or quoted), literal (`|`) and folded (`>` or multi-line flow) scalars.
Literal and single-line scalars map exactly; folded ones map line by line, which is exact
unless the folded text uses escapes.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import yaml

from spyderd.rules.diagnostics import Location

# raw length of a double-quoted escape after the backslash: \xNN, \uNNNN, \UNNNNNNNN
_ESCAPE_WIDTH = {"x": 3, "u": 5, "U": 9}


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A rule file's name and lines, for source lines under diagnostics."""

    name: str
    lines: tuple[str, ...]

    @classmethod
    def from_text(cls, name: str, text: str) -> SourceFile:
        return cls(name, tuple(text.splitlines()))

    def line(self, number: int) -> str:
        """The 1-based line `number`, or "" past the end."""
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""


class SourceText:
    """A string value plus a map from offsets in it to file locations.

    The map is a sorted list of segments (value offset, line, col): an offset falls in the
    last segment starting at or before it, and its column runs on from the segment's.
    """

    __slots__ = ("_files", "_segments", "_starts", "file", "value")

    def __init__(
        self,
        value: str,
        file: SourceFile,
        segments: list[tuple[int, int, int]],
        files: list[SourceFile] | None = None,
    ) -> None:
        """`files`, when given, names each segment's file (text joined from several places:
        an appended condition, generated exception text); else every segment is in `file`."""
        self.value = value
        self.file = file
        order = sorted(range(len(segments)), key=lambda i: segments[i])
        self._segments = [segments[i] for i in order] or [(0, 1, 1)]
        self._files = [files[i] for i in order] if files else None
        self._starts = [s[0] for s in self._segments]

    @classmethod
    def join(cls, pieces: list[tuple[str, SourceText | None]]) -> SourceText:
        """Texts from anywhere joined into one: each piece is literal glue (None) or located
        text whose offsets keep pointing where it was written."""
        value, segments, files = "", [], []
        first: SourceFile | None = None
        for glue, src in pieces:
            if src is None:
                value += glue
                continue
            first = first or src.file
            for i, (start, line, col) in enumerate(src._segments):
                segments.append((len(value) + start, line, col))
                files.append(src._files[i] if src._files else src.file)
            value += src.value
        anchor = first or SourceFile("<generated>", ())
        return cls(value, anchor, segments or [(0, 1, 1)], files or [anchor])

    @classmethod
    def plain(cls, text: str, name: str = "<condition>") -> SourceText:
        """A string not from a YAML file (e.g. `spyderctl query EXPR`): offsets map to itself."""
        segments, offset = [], 0
        for number, line in enumerate(text.split("\n"), start=1):
            segments.append((offset, number, 1))
            offset += len(line) + 1
        return cls(text, SourceFile.from_text(name, text), segments)

    @classmethod
    def from_node(cls, node: yaml.ScalarNode, file: SourceFile) -> SourceText:
        """The scalar's value with a map back to where each part sits in `file`."""
        value = str(node.value)
        start, end = node.start_mark, node.end_mark
        if node.style == "|":
            return cls(value, file, _literal_segments(value, start.line, file))
        if start.line == end.line and node.style in (None, "", '"', "'"):
            raw = file.line(start.line + 1)
            return cls(
                value, file, _single_line_segments(node.style, raw, start.line + 1, start.column)
            )
        return cls(value, file, _folded_segments(node, value, file))

    @property
    def start(self) -> Location:
        return self.locate(0)

    def locate(self, offset: int) -> Location:
        """File location of character `offset` of the value (clamped to the value)."""
        offset = max(0, min(offset, len(self.value)))
        index = bisect_right(self._starts, offset) - 1
        start, line, col = self._segments[index]
        file = self._files[index] if self._files else self.file
        return Location(file.name, line, col + offset - start)

    def source_line(self, loc: Location) -> str:
        if self._files:
            file = next((f for f in self._files if f.name == loc.file), self.file)
            return file.line(loc.line)
        return self.file.line(loc.line)


def _single_line_segments(
    style: str | None, raw: str, line: int, col0: int
) -> list[tuple[int, int, int]]:
    """Exact map for a one-line scalar: quotes shift by one, escapes shrink the value."""
    if style not in ('"', "'"):
        return [(0, line, col0 + 1)]
    segments = [(0, line, col0 + 2)]
    ri, vi = col0 + 1, 0  # raw index after the opening quote, value index
    while ri < len(raw):
        width = 1
        if style == "'" and raw.startswith("''", ri):
            width = 2
        elif raw[ri] == style:
            break  # the closing quote
        elif style == '"' and raw[ri] == "\\" and ri + 1 < len(raw):
            width = 1 + _ESCAPE_WIDTH.get(raw[ri + 1], 1)
        ri, vi = ri + width, vi + 1
        if width > 1:
            segments.append((vi, line, ri + 1))
    return segments


def _literal_segments(
    value: str, indicator_line: int, file: SourceFile
) -> list[tuple[int, int, int]]:
    """Exact map for a `|` block: value line k is file line indicator+1+k, after the indent."""
    indent = _block_indent(file, indicator_line + 2)
    segments, offset = [], 0
    for k, piece in enumerate(value.split("\n")):
        segments.append((offset, indicator_line + 2 + k, indent + 1))
        offset += len(piece) + 1
    return segments


def _block_indent(file: SourceFile, first_line: int) -> int:
    """Indentation of a block scalar: that of its first non-blank line."""
    for number in range(first_line, len(file.lines) + 1):
        raw = file.line(number)
        if raw.strip():
            return len(raw) - len(raw.lstrip(" "))
    return 0


def _folded_segments(
    node: yaml.ScalarNode, value: str, file: SourceFile
) -> list[tuple[int, int, int]]:
    """Approximate map for folded text: find each file line's content in the value, in order."""
    start, end = node.start_mark, node.end_mark
    quote = 1 if node.style in ('"', "'") else 0
    segments: list[tuple[int, int, int]] = []
    cursor = 0
    for index in range(start.line, end.line + 1):
        raw = file.line(index + 1)
        lo = start.column + quote if index == start.line else 0
        hi = end.column - quote if index == end.line else len(raw)
        if index == start.line and node.style == ">":
            continue  # the indicator line holds no content
        piece = raw[lo:hi]
        content = piece.strip()
        found = value.find(content, cursor) if content else -1
        if found >= 0:
            lead = len(piece) - len(piece.lstrip())
            segments.append((found, index + 1, lo + lead + 1))
            cursor = found + len(content)
    return segments or [(0, start.line + 1, start.column + 1)]

"""Condition text to a Lark tree, with syntax errors turned into located diagnostics."""

from __future__ import annotations

import functools
from importlib import resources

from lark import Lark, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from spyderd.errors import RuleError
from spyderd.rules.diagnostics import Diagnostic, error
from spyderd.rules.source import SourceText

# terminal name -> what a user reads in "expected one of"; the order is the display order
READABLE: dict[str, str] = {
    "WORD": "name or value",
    "STRING": "quoted string",
    "_LPAR": "(",
    "_RPAR": ")",
    "_COMMA": ",",
    "EQ": "=",
    "NE": "!=",
    "LT": "<",
    "LE": "<=",
    "GT": ">",
    "GE": ">=",
    "_IN": "in",
    "CONTAINS": "contains",
    "ICONTAINS": "icontains",
    "STARTSWITH": "startswith",
    "ENDSWITH": "endswith",
    "GLOB": "glob",
    "MATCHES": "matches",
    "IEQ": "i=",
    "INE": "i!=",
    "ISTARTSWITH": "istartswith",
    "IENDSWITH": "iendswith",
    "IGLOB": "iglob",
    "IMATCHES": "imatches",
    "HAS": "has",
    "IHAS": "ihas",
    "IIN": "iin",
    "PMATCH": "pmatch",
    "IPMATCH": "ipmatch",
    "_AMP": "&",
    "_EXISTS": "exists",
    "_AND": "and",
    "_OR": "or",
    "_NOT": "not",
    "$END": "end of condition",
}


@functools.cache
def condition_parser() -> Lark:
    """The condition parser, built on first use and reused: building it is the slow part."""
    grammar = resources.files(__package__).joinpath("condition.lark").read_text("utf-8")
    return Lark(
        grammar, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=True
    )


def parse_condition(src: SourceText) -> Tree:
    """The syntax tree of `src.value`; raises RuleError with one located diagnostic."""
    try:
        return condition_parser().parse(src.value)
    except UnexpectedInput as exc:
        raise RuleError([syntax_diagnostic(exc, src)]) from None


def syntax_diagnostic(exc: UnexpectedInput, src: SourceText) -> Diagnostic:
    """A Lark error as a diagnostic: where, what was found, and what would have been valid."""
    text = src.value
    end = len(text.rstrip())
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        offset = exc.token.start_pos or 0
        code, message = "E201", f"unexpected {_show(exc.token.type, str(exc.token))}"
    elif isinstance(exc, UnexpectedCharacters):
        offset = exc.pos_in_stream or 0
        char = text[offset]
        code, message = (
            ("E204", "unterminated string")
            if char in "\"'"
            else ("E202", f"unexpected character {char!r}")
        )
    else:
        offset = end
        code, message = "E203", "unexpected end of condition"
    loc = src.locate(offset)
    expected = [] if code == "E204" else _expected(text, offset)
    keyword = isinstance(exc, UnexpectedToken) and str(exc.token).isalpha()
    if code == "E201" and keyword and READABLE["STRING"] in expected:
        message += " (a keyword: quote it to use it as a value)"
    return error(code, message, loc, src.source_line(loc), expected)


def _show(kind: str, text: str) -> str:
    return f"{text!r}" if kind in ("WORD", "STRING") else f"'{READABLE.get(kind, text)}'"


def _expected(text: str, offset: int) -> list[str]:
    """Terminals the parser accepts at `offset`, in readable form.

    Asked of an interactive parser fed the text before the error, because the state Lark
    reports after its default reductions lists fewer choices than the user had.
    """
    try:
        interactive = condition_parser().parse_interactive(text[:offset])
        interactive.exhaust_lexer()
        accepted = interactive.accepts()
    except UnexpectedInput:
        return []
    return [name for key, name in READABLE.items() if key in accepted]

"""Located rule diagnostics with stable codes, so `spyderd --check` and editors can point at text.

Codes are stable (documented below); messages may improve. E* are errors and stop loading,
W* are warnings and are kept on the RuleSet. Each diagnostic may carry a chain of outer
locations ("in macro X used by rule Y at file:line:col"), the way a macro error is explained.

    E001 YAML syntax error            E002 file cannot be read
    E003 bad document structure       E004 required key missing
    E005 key has the wrong type       E006 bad severity
    E007 bad event kind               E101 duplicate rule
    E102 append to an undefined list/macro, or `append` on a rule
    E103 override of an undefined rule
    E201 unexpected token             E202 unexpected character
    E203 unexpected end of condition  E204 unterminated string
    E301 unknown field                E302 unknown list
    E303 unknown macro                E304 recursive macro or list
    E305 type mismatch                E306 bad regular expression
    E307 bad causal operator or option
    E308 condition nested too deeply  E401 bad output template
    W008 unknown key                  W009 duplicate key
    W102 list or macro redefined      W301 bare word looks like an undefined list
    W302 field never present where it is used
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based position in a rule file."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found while loading rules, located to the character."""

    code: str
    severity: str  # "error" or "warning"
    message: str
    file: str
    line: int
    col: int
    source_line: str = ""
    expected: list[str] = field(default_factory=list)
    chain: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def location(self) -> Location:
        return Location(self.file, self.line, self.col)

    def __str__(self) -> str:
        out = [f"{self.file}:{self.line}:{self.col}: {self.severity}[{self.code}]: {self.message}"]
        out.extend(f"  {link}" for link in self.chain)
        if self.expected:
            out.append("  expected one of: " + ", ".join(_quote(e) for e in self.expected))
        if self.source_line:
            out.append("    " + self.source_line.rstrip("\n"))
            out.append("    " + _caret_pad(self.source_line, self.col) + "^")
        return "\n".join(out)


def _quote(expected: str) -> str:
    """Quote symbols and keywords (`')'`, `'and'`) but not descriptions (`quoted string`)."""
    return expected if " " in expected else f"'{expected}'"


def _caret_pad(line: str, col: int) -> str:
    """Whitespace up to `col`, keeping tabs so the caret lines up under tabbed text."""
    return "".join("\t" if ch == "\t" else " " for ch in line[: max(col - 1, 0)])


def error(
    code: str,
    message: str,
    loc: Location,
    source_line: str = "",
    expected: list[str] | None = None,
    chain: tuple[str, ...] = (),
) -> Diagnostic:
    """An error diagnostic at `loc`."""
    return Diagnostic(
        code,
        "error",
        message,
        loc.file,
        loc.line,
        loc.col,
        source_line,
        list(expected or []),
        chain,
    )


def warning(
    code: str, message: str, loc: Location, source_line: str = "", chain: tuple[str, ...] = ()
) -> Diagnostic:
    """A warning diagnostic at `loc`: reported, but the rules still load."""
    return Diagnostic(code, "warning", message, loc.file, loc.line, loc.col, source_line, [], chain)

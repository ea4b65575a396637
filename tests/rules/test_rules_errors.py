"""Located diagnostics: exact file, line and column for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_support import rule_errors, rule_text, write

from spyderd.errors import RuleError
from spyderd.rules import Diagnostic, compile_condition, load_rules


def load_one(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = write(tmp_path, "r.yaml", text)
    return rule_errors(lambda: load_rules([path]))


def only_error(tmp_path: Path, text: str) -> Diagnostic:
    errors = [d for d in load_one(tmp_path, text) if d.is_error]
    assert len(errors) == 1, [str(d) for d in errors]
    return errors[0]


def test_syntax_error_in_single_line_condition(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="process.name = and"))
    assert (d.code, d.line, d.col) == ("E201", 3, 29)
    assert d.file == str(tmp_path / "r.yaml")
    assert d.message == "unexpected 'and' (a keyword: quote it to use it as a value)"
    assert d.expected == ["name or value", "quoted string"]
    assert d.source_line == "  condition: process.name = and"


def test_keyword_hint_only_where_a_value_was_expected(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="process.name = sh and and x"))
    assert (d.message, d.col) == ("unexpected 'and'", 36)
    assert d.expected == ["name or value", "(", "not"]


def test_syntax_error_in_quoted_condition_counts_the_quote(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition='"process.name = and"'))
    assert (d.line, d.col) == (3, 30)


def test_syntax_error_in_single_quoted_condition_after_escape(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="'process.name = ''a'' ) '"))
    # the value is  process.name = 'a' )  and the stray ) sits at file column 36
    assert (d.code, d.line, d.col) == ("E201", 3, 36)


def test_syntax_error_in_literal_block_condition(tmp_path: Path) -> None:
    text = """\
- rule: r
  event: exec
  condition: |
    process.name = sh
      and (process.pid = 1
      or process.pid = )
  severity: high
  output: x
"""
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E201", 6, 24)
    assert d.source_line == "      or process.pid = )"
    assert "name or value" in d.expected


def test_end_of_literal_block_condition(tmp_path: Path) -> None:
    text = """\
- rule: r
  event: exec
  condition: |
    (process.name = sh
     or process.pid = 1
  severity: high
  output: x
"""
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E203", 5, 24)
    assert d.expected == [")", "and", "or"]


def test_syntax_error_in_folded_condition(tmp_path: Path) -> None:
    text = """\
- rule: r
  event: exec
  condition: >
    process.name = sh and
    process.pid = )
  severity: high
  output: x
"""
    d = only_error(tmp_path, text)
    assert (d.line, d.col) == (5, 19)


def test_unterminated_string_and_bad_character(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="process.name = 'sh"))
    assert (d.code, d.line, d.col) == ("E204", 3, 29)
    d = only_error(tmp_path, rule_text(condition="process.name ! sh"))
    assert (d.code, d.col) == ("E202", 27)
    assert "=" in d.expected and "exists" in d.expected


def test_unknown_field_suggests_nearest(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="process.pid = 1 and process.nmae = sh"))
    assert (d.code, d.line, d.col) == ("E301", 3, 34)
    assert "unknown field 'process.nmae'" in d.message
    assert "did you mean 'process.name'" in d.message
    assert d.chain == (f"in rule 'r' at {tmp_path / 'r.yaml'}:1:3",)


def test_unknown_list(tmp_path: Path) -> None:
    text = "- list: shells\n  items: [sh]\n" + rule_text(condition="process.name in shellz")
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E302", 5, 30)
    assert "unknown list 'shellz'; did you mean 'shells'?" in d.message


def test_unknown_macro(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="spawned_shell and process.pid = 1"))
    assert (d.code, d.col) == ("E303", 14)


def test_recursive_macro_names_the_cycle(tmp_path: Path) -> None:
    text = """\
- macro: a
  condition: b or process.pid = 1
- macro: b
  condition: process.name = sh and a
""" + rule_text(condition="a")
    d = only_error(tmp_path, text)
    assert d.code == "E304"
    assert d.message == "recursive macro: a -> b -> a"
    assert (d.line, d.col) == (4, 36)
    assert any("in macro 'b'" in link for link in d.chain)


def test_error_inside_macro_is_located_in_the_macro(tmp_path: Path) -> None:
    text = "- macro: m\n  condition: process.nam = x\n" + rule_text(condition="m")
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E301", 2, 14)


def test_duplicate_rule(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text("dup") + rule_text("dup"))
    assert (d.code, d.line, d.col) == ("E101", 6, 3)
    assert d.chain == (f"first defined at {tmp_path / 'r.yaml'}:1:3",)


@pytest.mark.parametrize(
    "condition, col, words",
    [
        ('process.pid startswith "a"', 26, "operator 'startswith' does not apply to process.pid"),
        ('process.pid = "abc"', 28, "'abc' is not an integer"),
        ("process.name < x", 27, "operator '<' does not apply to process.name (str)"),
        ("process.name in (sh, 10.0.0.0/8)", 35, "only applies to ip fields"),
        ("process.pid in (1, 10.0.0.0/8)", 33, "is not an integer"),
        ("connection.remote_ip = 10.0.0.0/8", 37, "test it with 'in (10.0.0.0/8)'"),
        ("connection.remote_ip in (300.1.1.1)", 39, "is not an IP address"),
        ("process.listening = yes", 34, "is not true or false"),
        ("process.name", 14, "only bool fields stand alone"),
        ("process.args = x", 27, "operator '=' does not apply to process.args (list[str])"),
    ],
)
def test_type_mismatch(tmp_path: Path, condition: str, col: int, words: str) -> None:
    d = only_error(tmp_path, rule_text(condition=condition))
    assert (d.code, d.line, d.col) == ("E305", 3, col)
    assert words in d.message


def test_type_mismatch_in_a_list_item_points_at_the_item(tmp_path: Path) -> None:
    text = "- list: pids\n  items: [1, two]\n" + rule_text(condition="process.pid in (pids)")
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E305", 2, 14)


def test_bad_regex_points_into_the_pattern(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="process.name matches 'ab(c'"))
    assert (d.code, d.line, d.col) == ("E306", 3, 38)


@pytest.mark.parametrize(
    "condition, code, col",
    [
        ("ancestor(process.name = sh, depth=0)", "E307", 48),
        ("ancestor(process.name = sh, deep=2)", "E307", 42),
        ("parent(process.name = sh, depth=2)", "E307", 40),
        ("sibling(process.name = sh, within=1m)", "E307", 41),
        ("descendant(process.name = sh, within=soon)", "E307", 51),
        ("descendant(process.name = sh, depth=2)", "E307", 44),
        ("ancestr(process.name = sh)", "E307", 14),
    ],
)
def test_bad_causal_operator(tmp_path: Path, condition: str, code: str, col: int) -> None:
    d = only_error(tmp_path, rule_text(condition=condition))
    assert (d.code, d.col) == (code, col)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = "- rule: r\n  event: exec\n  condition: process.name = sh\n   severity: high\n"
    d = only_error(tmp_path, text)
    assert (d.code, d.line, d.col) == ("E001", 4, 12)
    assert "mapping values are not allowed here" in d.message


def test_missing_keys_bad_severity_bad_event(tmp_path: Path) -> None:
    text = """\
- rule: a
  event: exec
- rule: b
  event: exek
  condition: process.name = sh
  severity: urgent
  output: x
"""
    diags = load_one(tmp_path, text)
    got = [(d.code, d.line, d.col) for d in diags]
    assert got == [("E004", 1, 3), ("E007", 4, 10), ("E006", 6, 13)]
    assert "missing 'condition', 'severity', 'output'" in diags[0].message
    assert "did you mean 'exec'" in diags[1].message
    assert diags[2].expected == ["critical", "high", "medium", "low", "info"]


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", rule_text("one", "process.nmae = sh") + rule_text("two", "x ="))
    write(tmp_path, "b.yaml", rule_text("three", "process.pid = abc", output="{nope}"))
    diags = rule_errors(lambda: load_rules([tmp_path]))
    assert [(Path(d.file).name, d.code) for d in diags] == [
        ("a.yaml", "E301"),
        ("a.yaml", "E203"),
        ("b.yaml", "E305"),
        ("b.yaml", "E401"),
    ]


def test_output_template_errors(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(output="pid {process.pidd}"))
    assert (d.code, d.line, d.col) == ("E401", 5, 17)
    assert "did you mean 'process.pid'" in d.message
    d = only_error(tmp_path, rule_text(output="brace { here"))
    assert (d.code, d.col) == ("E401", 18)


def test_structure_errors(tmp_path: Path) -> None:
    assert only_error(tmp_path, "rule: x\n").code == "E003"
    assert only_error(tmp_path, "- foo: x\n").code == "E003"
    assert only_error(tmp_path, "- list: x\n  items: 3\n").code == "E005"
    assert only_error(tmp_path, "- list: x\n  items: [a]\n  append: true\n").code == "E102"
    d = only_error(tmp_path, rule_text() + "  append: true\n")
    assert d.code == "E102"


def test_warnings_do_not_stop_loading(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", rule_text() + "  severtiy: low\n")
    ruleset = load_rules([path])
    (w,) = ruleset.warnings
    assert (w.code, w.severity, w.line, w.col) == ("W008", "warning", 6, 3)
    assert "did you mean 'severity'" in w.message


def test_diagnostic_text_has_location_expected_and_caret(tmp_path: Path) -> None:
    d = only_error(tmp_path, rule_text(condition="(process.name = sh"))
    assert str(d) == (
        f"{tmp_path / 'r.yaml'}:3:32: error[E203]: unexpected end of condition\n"
        "  in rule 'r' at " + f"{tmp_path / 'r.yaml'}:1:3\n"
        "  expected one of: ')', 'and', 'or'\n"
        "      condition: (process.name = sh\n"
        "    " + " " * 31 + "^"
    )


def test_compile_condition_locates_within_the_text() -> None:
    with pytest.raises(RuleError) as info:
        compile_condition("process.name = sh and\n  process.pid >< 3")
    (d,) = info.value.diagnostics
    assert (d.file, d.line, d.col, d.code) == ("<condition>", 2, 16, "E201")


def test_missing_file_is_an_error_missing_directory_is_not(tmp_path: Path) -> None:
    ruleset = load_rules([tmp_path / "rules.d"])
    assert ruleset.rules == []
    (d,) = rule_errors(lambda: load_rules([tmp_path / "gone.yaml"]))
    assert d.code == "E002"

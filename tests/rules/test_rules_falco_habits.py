"""Golden diagnostics for Falco habits: each mistake a Falco user makes, at its exact line and
column, with the fix in the message; and everything found in one run."""

from __future__ import annotations

from pathlib import Path

from rules_support import rule_errors, write

from spyderd.rules import Diagnostic, load_rules


def diagnostics(tmp_path: Path, text: str) -> list[Diagnostic]:
    """Every diagnostic of one file, errors or warnings only."""
    path = write(tmp_path, "r.yaml", text)
    try:
        return load_rules([path]).warnings
    except Exception:  # noqa: BLE001 - rule_errors re-raises anything but RuleError
        return rule_errors(lambda: load_rules([path]))


def found(diags: list[Diagnostic]) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in diags]


def one(diags: list[Diagnostic], code: str) -> Diagnostic:
    hits = [d for d in diags if d.code == code]
    assert len(hits) == 1, [str(d) for d in diags]
    return hits[0]


def test_falco_output_field_syntax(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: "shell %proc.name by %user.name"
""",
    )
    assert found(diags) == [("W402", 5, 18), ("W402", 5, 32)]
    assert "write {process.name}" in diags[0].message
    assert "write {user.name}" in diags[1].message


def test_falco_field_in_output_braces(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: "shell {proc.pname}"
""",
        ),
        "E401",
    )
    assert (d.line, d.col) == (5, 19)
    assert "this is Falco's proc.pname: write {parent.name}" in d.message


def test_falco_quoted_list_item(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- list: cmds
  items: [ls, '"sh -c whoami"']
- rule: r
  event: exec
  condition: process.cmdline in (cmds)
  severity: high
  output: x
""",
    )
    d = one(diags, "W103")
    assert (d.line, d.col) == (2, 15)
    assert "write 'sh -c whoami'" in d.message


def test_misspelt_file_op(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: file
  condition: file.op = symlnk
  severity: high
  output: x
""",
        ),
        "W304",
    )
    assert (d.line, d.col) == (3, 24)
    assert (
        d.message
        == "file.op is never 'symlnk', so this never matches; did you mean 'symlink' or 'link'?"
    )


def test_misspelt_kernel_call_in_a_list_of_values(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: kernel
  condition: kernel.call in (mount, ptrac)
  severity: high
  output: x
""",
        ),
        "W304",
    )
    assert (d.line, d.col) == (3, 37)
    assert "did you mean 'ptrace'?" in d.message


def test_falco_syscall_as_file_op_is_explained(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: file
  condition: file.op = unlinkat
  severity: high
  output: x
""",
        ),
        "W304",
    )
    assert "Falco's unlinkat is file.op = unlink" in d.message


def test_misspelt_event_kind_in_a_condition(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: [exec, connect]
  condition: evt.kind = execve
  severity: high
  output: x
""",
        ),
        "W304",
    )
    assert (d.line, d.col) == (3, 25)
    assert "Falco's execve is spyderd's exec kind" in d.message


def test_event_key_with_falco_syscall(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: [exec, openat]
  condition: process.name = sh
  severity: high
  output: x
""",
        ),
        "E007",
    )
    assert (d.line, d.col) == (2, 17)
    assert "Falco's openat is spyderd's file kind with file.op = open" in d.message


def test_unused_list_and_macro(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- list: used
  items: [sh]
- list: nested
  items: [bash]
- list: outer
  items: [nested, zsh]
- list: lonely
  items: [x]
- macro: helper
  condition: process.name in (outer)
- macro: orphan
  condition: process.name = y
- rule: r
  event: exec
  condition: process.name in (used) or helper
  severity: high
  output: x
""",
    )
    assert found(diags) == [("W104", 7, 3), ("W105", 11, 3)]
    assert diags[0].message == "list 'lonely' is never used by a rule"
    assert diags[1].message == "macro 'orphan' is never used by a rule"


def test_library_file_without_rules_reports_no_unused(tmp_path: Path) -> None:
    lib = write(tmp_path, "00-lib.yaml", "- list: spare\n  items: [a]\n")
    rules = write(tmp_path, "10-r.yaml", "- rule: r\n  event: exec\n  condition: process.name"
                  " = sh\n  severity: high\n  output: x\n")  # fmt: skip
    assert load_rules([lib, rules]).warnings == []


def test_priority_points_to_severity(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: exec
  condition: process.name = sh
  priority: WARNING
  output: x
""",
    )
    assert found(diags) == [("E004", 1, 3), ("W008", 4, 3)]
    assert "spyderd calls it 'severity'" in diags[1].message
    assert "WARNING is medium" in diags[1].message


def test_falco_priority_as_severity(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: WARNING
  output: x
""",
        ),
        "E006",
    )
    assert (d.line, d.col) == (4, 13)
    assert "Falco's WARNING is spyderd's 'medium'" in d.message


def test_structural_error_does_not_hide_condition_errors(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: execve
  desc: shells
  condition: proc.name = sh and process.nam = x
  output: "{proc.name}"
  exceptions:
    - fd.name = /tmp
""",
    )
    assert found(diags) == [
        ("E004", 1, 3),  # severity missing
        ("E007", 2, 10),  # execve
        ("W008", 3, 3),  # desc
        ("E301", 4, 14),  # proc.name
        ("E301", 4, 33),  # process.nam
        ("E401", 5, 13),  # {proc.name}
        ("E301", 7, 7),  # fd.name in the exception
    ]
    assert "spyderd calls it 'description'" in diags[2].message
    assert "this is Falco's proc.name: write process.name" in diags[3].message
    assert "did you mean 'process.name'" in diags[4].message
    assert "this is Falco's fd.name: write file.path" in diags[6].message
    assert "not loaded" in diags[3].chain[0]


def test_falco_field_names_suggested_by_meaning(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: connect
  condition: >-
    proc.aname[2] = sshd or fd.sip = 10.0.0.1 or evt.type = connect
    or container.image.repository = nginx or user.loginuid = 0
  severity: high
  output: x
""",
    )
    messages = {(d.line, d.col): d.message for d in diags}
    assert "write ancestor(process.name = X, depth=2)" in messages[(4, 5)]
    assert "write connection.remote_ip" in messages[(4, 29)]
    assert "the rule's event: key" in messages[(4, 50)]
    assert "write container.image" in messages[(5, 8)]
    assert [d.code for d in diags] == ["E301"] * 4  # user.loginuid is a spyderd field too


def test_args_contains_with_a_space(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: exec
  condition: process.args contains "-c whoami"
  severity: high
  output: x
""",
        ),
        "W305",
    )
    assert (d.line, d.col) == (3, 36)
    assert "process.cmdline contains" in d.message and "process.args has" in d.message


def test_deprecated_symlink_field(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: file
  condition: file.target startswith /etc/
  severity: high
  output: x
""",
        ),
        "W306",
    )
    assert (d.line, d.col) == (3, 14)
    assert d.message.startswith("file.target is a deprecated name: write file.changed_path")


def test_unknown_constant(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: file
  condition: file.flags & O_TRUNK
  severity: high
  output: x
""",
        ),
        "E305",
    )
    assert (d.line, d.col) == (3, 27)
    assert "unknown constant 'O_TRUNK'; did you mean O_TRUNC?" in d.message


def test_structured_exception_errors_point_at_the_item(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: x
  exceptions:
    - name: known
      fields: [proc.pname, process.uid]
      comps: [=, <]
      values:
        - [sshd, root]
        - [cron, 0, extra]
""",
    )
    assert found(diags) == [("E301", 8, 16), ("E305", 11, 18), ("E005", 12, 11)]
    assert "write parent.name" in diags[0].message
    assert "'root' is not an integer" in diags[1].message
    assert "this row has 3 values for 2 fields" in diags[2].message


def test_append_to_undefined_rule(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: nowhere
  append: true
  condition: and not process.name = x
""",
        ),
        "E102",
    )
    assert (d.line, d.col) == (1, 3)


def test_append_takes_only_appendable_keys(tmp_path: Path) -> None:
    diags = diagnostics(
        tmp_path,
        """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: x
- rule: r
  append: true
  severity: low
""",
    )
    d = one(diags, "E005")
    assert (d.line, d.col) == (8, 3)
    assert "with append: true a rule takes only condition, exceptions, tags" in d.message


def test_override_mode_checked(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: x
- rule: r
  override:
    output: append
  output: y
""",
        ),
        "E005",
    )
    assert (d.line, d.col) == (8, 5)
    assert "output takes replace" in d.message


def test_appended_condition_error_located_in_its_own_file(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "00.yaml",
        """\
- rule: r
  event: exec
  condition: process.name = sh
  severity: high
  output: x
""",
    )
    site = write(
        tmp_path,
        "10.yaml",
        """\
- rule: r
  append: true
  condition: and not proc.name = vim
""",
    )
    diags = rule_errors(lambda: load_rules([base, site]))
    assert [(d.file, d.code, d.line, d.col) for d in diags] == [(str(site), "E301", 3, 22)]
    assert diags[0].source_line == "  condition: and not proc.name = vim"


def test_deprecated_field_in_output(tmp_path: Path) -> None:
    d = one(
        diagnostics(
            tmp_path,
            """\
- rule: r
  event: file
  condition: file.changed_path startswith /etc/
  severity: high
  output: "wrote {file.target}"
""",
        ),
        "W306",
    )
    assert (d.line, d.col) == (5, 19)
    assert d.message == "file.target is a deprecated name: write {file.changed_path}"


def test_broken_rule_with_rows_for_an_undefined_exception(tmp_path: Path) -> None:
    """Found by fuzzing: salvaging a broken rule whose exception has rows but no fields."""
    diags = diagnostics(tmp_path, """\
- rule: r
  event: exec
  condition: process.name = sh
  output: x
  exceptions:
    - name: known
      values:
        - [a, b]
""")
    assert found(diags) == [("E004", 1, 3), ("E102", 6, 7)]

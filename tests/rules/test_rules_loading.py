"""Loading several files: appends, overrides, toggles, exceptions, outputs, the kind index."""

from __future__ import annotations

import re
from pathlib import Path

from rules_support import lineage, proc, rule_errors, rule_text, write

from spyderd.model.events import ConnectEvent, ExecEvent
from spyderd.rules import DictContext, load_rules, message_id

BASE = """\
- list: shells
  items: [sh, bash]
- macro: suspicious
  condition: process.name in (shells)
- rule: Shell
  event: exec
  condition: suspicious
  severity: medium
  output: "shell {process.name}"
"""

SITE = """\
- list: shells
  append: true
  items: [zsh]
- macro: suspicious
  append: true
  condition: process.name = nc
- rule: Shell
  override: true
  event: [exec, connect]
  condition: suspicious and process.uid != 0
  severity: critical
  output: "site shell {process.name} uid {process.uid}"
"""


def exec_of(node_pid: int = 1) -> ExecEvent:
    return ExecEvent(time=1, pid=node_pid, filename="/bin/x")


def test_lists_and_macros_append_and_rule_override_across_files(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE)
    site = write(tmp_path, "site.yaml", SITE)
    ruleset = load_rules([base, site])
    (rule,) = ruleset.rules
    assert (rule.severity, rule.priority, rule.events) == ("critical", 2, ("exec", "connect"))
    assert rule.location.file == str(site) and rule.location.line == 7
    for exe, hit in [
        ("/bin/zsh", True),
        ("/bin/sh", True),
        ("/usr/bin/nc", True),
        ("/usr/bin/vim", False),
    ]:
        node = proc("p", exe)
        node.uid = 1000
        matches = ruleset.match(exec_of(), node, DictContext.of(node))
        assert bool(matches) is hit, exe
    node = proc("root", "/bin/zsh")
    assert ruleset.match(exec_of(), node, DictContext.of(node)) == [], "uid 0 excluded"


def test_order_matters_append_before_definition_fails(tmp_path: Path) -> None:
    write(tmp_path, "10-site.yaml", SITE.split("- macro")[0])
    write(tmp_path, "20-base.yaml", BASE)
    (d, *rest) = [d for d in rule_errors(lambda: load_rules([tmp_path])) if d.is_error]
    assert d.code == "E102" and Path(d.file).name == "10-site.yaml" and not rest


def test_directory_loads_yaml_and_yml_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", rule_text("B"))
    write(tmp_path, "a.yaml", rule_text("A"))
    write(tmp_path, "c.txt", "not yaml: [")
    assert [r.name for r in load_rules([tmp_path]).rules] == ["A", "B"]


def test_later_file_switches_a_rule_off_and_on(tmp_path: Path) -> None:
    write(tmp_path, "1.yaml", rule_text("A") + rule_text("B"))
    write(tmp_path, "2.yaml", "- rule: A\n  enabled: false\n")
    ruleset = load_rules([tmp_path])
    assert [r.name for r in ruleset.for_kind("exec")] == ["B"]
    rule_a = ruleset.get("A")
    assert rule_a is not None
    assert rule_a.enabled is False
    write(tmp_path, "3.yaml", "- rule: A\n  enabled: true\n")
    assert [r.name for r in load_rules([tmp_path]).for_kind("exec")] == ["A", "B"]


def test_lists_and_macros_redefined_replace_with_a_warning(tmp_path: Path) -> None:
    text = BASE + "- list: shells\n  items: [fish]\n"
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    assert [w.code for w in ruleset.warnings] == ["W102"]
    fish, sh = proc("f", "/usr/bin/fish"), proc("s", "/bin/sh")
    assert ruleset.match(exec_of(), fish, DictContext.of(fish))
    assert not ruleset.match(exec_of(), sh, DictContext.of(sh))


def test_exceptions_exclude(tmp_path: Path) -> None:
    text = (
        rule_text("Shell", "process.name in (sh, bash)")
        + """\
  exceptions:
    - process.cmdline contains "ansible"
    - |
      parent(process.name = sshd)
"""
    )
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    plain = proc("s", "/bin/sh", args=["sh", "-c", "id"])
    assert ruleset.match(exec_of(), plain, DictContext.of(plain))
    ansible = proc("s", "/bin/sh", args=["sh", "-c", "ansible-playbook"])
    assert not ruleset.match(exec_of(), ansible, DictContext.of(ansible))
    (_sshd, sh), ctx = lineage("/usr/sbin/sshd", "/bin/bash")
    assert not ruleset.match(exec_of(), sh, ctx)


def test_exception_errors_are_located(tmp_path: Path) -> None:
    text = rule_text() + "  exceptions:\n    - process.nam = x\n"
    (d,) = rule_errors(lambda: load_rules([write(tmp_path, "r.yaml", text)]))
    assert (d.code, d.line, d.col) == ("E301", 7, 7)
    assert d.chain == ("in exception 1 of rule 'r'",)


def test_rule_metadata(tmp_path: Path) -> None:
    text = rule_text("Web shell") + "  tags: [T1505.003, T1059, web, t1a]\n  description: why\n"
    (rule,) = load_rules([write(tmp_path, "r.yaml", text)]).rules
    assert rule.mitre == ["T1505.003", "T1059"]
    assert rule.tags == ["T1505.003", "T1059", "web", "t1a"]
    assert rule.description == "why"
    assert re.fullmatch(r"[0-9a-f]{32}", rule.message_id)
    assert rule.message_id == message_id("Web shell") != message_id("Web shell 2")


def test_message_id_is_stable_across_processes() -> None:
    # pinned: journald catalog entries are keyed on it
    assert message_id("Shell spawned below a web server") == "25df7610e0f150f283ae8432da20f46a"


def test_output_renders_fields_lists_missing_and_braces(tmp_path: Path) -> None:
    output = (
        "{{lit}} {process.name} args={process.args} ip={connection.remote_ip} "
        "cwd={process.cwd} parent={parent.name} listening={process.listening}"
    )
    text = rule_text("o", "evt.kind = connect", output=output).replace(
        "event: exec", "event: connect"
    )
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    (_web, sh), ctx = lineage("/usr/sbin/nginx", "/bin/sh")
    sh.attrs["args"] = ["sh", "-i"]
    ev = ConnectEvent(
        time=1,
        pid=1,
        family=4,
        local_ip="10.0.0.1",
        local_port=1,
        remote_ip="1.2.3.4",
        remote_port=4444,
    )
    (m,) = ruleset.match(ev, sh, ctx)
    assert m.output == ("{lit} sh args=sh -i ip=1.2.3.4 cwd=<NA> parent=nginx listening=false")


def test_events_only_meet_their_bucket(tmp_path: Path) -> None:
    text = rule_text("E") + rule_text("C", "process.name = sh").replace("exec", "connect")
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    assert [r.name for r in ruleset.for_kind("exec")] == ["E"]
    assert [r.name for r in ruleset.for_kind("connect")] == ["C"]
    assert ruleset.for_kind("exit") == []
    node = proc("s", "/bin/sh")
    assert [m.rule.name for m in ruleset.match(exec_of(), node, DictContext.of(node))] == ["E"]


def test_compile_condition_with_loaded_lists_and_macros(tmp_path: Path) -> None:
    ruleset = load_rules([write(tmp_path, "r.yaml", BASE)])
    pred = ruleset.compile_condition("suspicious or process.name in shells")
    node = proc("s", "/bin/bash")
    assert pred(None, node, DictContext.of(node), []) is True

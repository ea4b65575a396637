"""RuleSet at run time: a rule that raises is disabled and the others keep matching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rules_support import proc, rule_text, write

import spyderd.rules as rules_api
from spyderd.model.events import ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules import DictContext, load_rules


def test_rule_that_raises_is_disabled_and_matching_goes_on(tmp_path: Path) -> None:
    text = rule_text("Broken", "process.accepts > 0") + rule_text("Fine", "process.name = sh")
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    node = proc("s", "/bin/sh", accepts="not a number")  # a corrupt graph value
    ctx = DictContext.of(node)
    ev = ExecEvent(time=1, pid=1, filename="/bin/sh")
    assert [m.rule.name for m in ruleset.match(ev, node, ctx)] == ["Fine"]
    assert list(ruleset.disabled) == ["Broken"]
    assert ruleset.disabled["Broken"].startswith("ValueError: invalid literal for int()")
    assert [r.name for r in ruleset.for_kind("exec")] == ["Fine"]
    node.attrs["accepts"] = 5
    assert [m.rule.name for m in ruleset.match(ev, node, ctx)] == ["Fine"], "stays disabled"


def test_context_that_raises_disables_only_causal_rules(tmp_path: Path) -> None:
    text = rule_text("Causal", "ancestor(process.name = nginx)") + rule_text(
        "Local", "process.name = sh"
    )
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])

    class Broken:
        def parent(self, node: Node) -> Node | None:
            raise OSError("store gone")

        def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
            raise OSError("store gone")

    node = proc("s", "/bin/sh")
    ev = ExecEvent(time=1, pid=1, filename="/bin/sh")
    assert [m.rule.name for m in ruleset.match(ev, node, Broken())] == ["Local"]
    assert ruleset.disabled == {"Causal": "OSError: store gone"}


def test_public_api_is_explicit() -> None:
    expected = {
        "load_rules",
        "RuleSet",
        "Rule",
        "Match",
        "Diagnostic",
        "FIELDS",
        "compile_condition",
        "DictContext",
        "GraphContext",
    }
    assert expected <= set(rules_api.__all__)
    for name in rules_api.__all__:
        assert hasattr(rules_api, name), name


def test_field_catalogue_is_documented_and_typed() -> None:
    from spyderd.rules.fields import FIELD_TYPES

    required = {
        "evt.kind",
        "process.name",
        "process.exe",
        "process.args",
        "process.cmdline",
        "process.pid",
        "process.ppid",
        "process.uid",
        "process.comm",
        "process.id",
        "process.listening",
        "process.accepts",
        "process.container_id",
        "user.uid",
        "connection.local_ip",
        "connection.local_port",
        "connection.remote_ip",
        "connection.remote_port",
        "connection.family",
        "connection.result",
        "parent.name",
        "parent.exe",
        "parent.cmdline",
        "parent.pid",
        "exit.code",
        "exit.signal",
    }
    assert required <= set(rules_api.FIELDS)
    for name, fld in rules_api.FIELDS.items():
        assert fld.name == name and fld.type in FIELD_TYPES and fld.doc and fld.kinds

"""Shared helpers for the rule engine tests: process chains, rule files, error capture."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spyderd.errors import RuleError
from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules import DictContext, compile_condition
from spyderd.rules.diagnostics import Diagnostic


def proc(
    node_id: str,
    exe: str,
    parent: Node | None = None,
    via: str = "spawned",
    pid: int = 100,
    **attrs: Any,
) -> Node:
    """A process node; args default to the program name."""
    attrs.setdefault("args", [exe.rsplit("/", 1)[-1]])
    return Node(
        node_id,
        "process",
        pid=pid,
        ppid=parent.pid if parent else 0,
        parent=parent.id if parent else "",
        via=via if parent else "",
        attrs={"exe": exe, **attrs},
    )


def lineage(*exes: str) -> tuple[list[Node], DictContext]:
    """A chain root -> ... -> leaf, each spawned by the one before; returns (nodes, ctx)."""
    nodes: list[Node] = []
    for i, exe in enumerate(exes):
        nodes.append(proc(f"n{i}", exe, nodes[-1] if nodes else None, pid=100 + i))
    return nodes, DictContext.of(*nodes)


def check(
    condition: str,
    node: Node,
    ctx: DictContext | None = None,
    ev: Event | None = None,
    lists: Mapping[str, list] | None = None,
    macros: Mapping[str, str] | None = None,
    refs: list[Node] | None = None,
) -> bool:
    """Compile `condition` and evaluate it on one subject."""
    pred = compile_condition(condition, lists=lists, macros=macros)
    return pred(ev, node, ctx or DictContext.of(node), refs if refs is not None else [])


def rule_errors(action: Callable[[], Any]) -> list[Diagnostic]:
    """The diagnostics of the RuleError `action` raises (fails the test if none is raised)."""
    try:
        action()
    except RuleError as exc:
        return exc.diagnostics
    raise AssertionError("expected RuleError")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


RULE = """\
- rule: {name}
  event: exec
  condition: {condition}
  severity: high
  output: "{output}"
"""


def rule_text(
    name: str = "r", condition: str = "process.name = sh", output: str = "hit {process.name}"
) -> str:
    return RULE.format(name=name, condition=condition, output=output)

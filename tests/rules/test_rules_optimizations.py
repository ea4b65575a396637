"""The fast paths give the answers of the plain ones (property-based, differential).

Optimised compilation fuses `f op a or f op b` into one leaf, flattens and/or chains and
remembers macro results per event; the RuleSet files rules under guards (process name, file
path). Each is checked against the unoptimised reference on random conditions and events.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from spyderd.model import ExecEvent, FileEvent
from spyderd.model.nodes import Node
from spyderd.rules import DictContext, RuleSet
from spyderd.rules.collector import Definitions, ListDef, MacroDef, RuleDef
from spyderd.rules.compiler import Compiler
from spyderd.rules.diagnostics import Location
from spyderd.rules.ruleset import build_rules
from spyderd.rules.source import SourceText

NAMES = ["sh", "bash", "curl", "nginx", "python3"]
PATHS = ["/etc/cron.d/x", "/etc/passwd", "/var/log/auth.log", "/root/.bashrc", "/tmp/a"]
HERE = Location("<test>", 1, 1)
LISTS = {"shells": ListDef("shells", HERE, [("sh", HERE, ""), ("bash", HERE, "")])}


def leaf() -> st.SearchStrategy[str]:
    name = st.sampled_from(NAMES)
    path = st.sampled_from(PATHS)
    prefix = st.sampled_from(["/etc/", "/etc/cron", "/var/log/", "/root/", "/nope"])
    return st.one_of(
        st.builds("process.name = {}".format, name),
        st.builds("process.name != {}".format, name),
        st.builds("process.name in ({}, {})".format, name, name),
        st.just("process.name in shells"),
        st.builds("process.exe endswith {}".format, name),
        st.builds("process.cmdline contains {}".format, name),
        st.builds("file.changed_path = {}".format, path),
        st.builds("file.changed_path startswith {}".format, prefix),
        st.builds("file.path startswith {}".format, prefix),
        st.builds("file.name = {}".format, st.sampled_from([".bashrc", "x", "passwd"])),
        st.builds("file.changed_path in ({}, {})".format, path, path),
        st.just("file.op = open"),
        st.just("process.uid < 1000"),
        st.just("process.listening"),
        st.just("busy"),  # a macro
    )


def condition() -> st.SearchStrategy[str]:
    return st.recursive(
        leaf(),
        lambda inner: st.one_of(
            st.builds("({}) and ({})".format, inner, inner),
            st.builds("({}) or ({})".format, inner, inner),
            st.builds("{} or {} or {}".format, inner, inner, inner),
            st.builds("not ({})".format, inner),
            st.builds("parent({})".format, inner),
            st.builds("ancestor({})".format, inner),
        ),
        max_leaves=8,
    )


def world(names: list[str], uid: int) -> tuple[list[Node], DictContext]:
    nodes: list[Node] = []
    for i, name in enumerate(names):
        parent = nodes[-1] if nodes else None
        nodes.append(
            Node(
                f"n{i}",
                "process",
                pid=10 + i,
                uid=uid if i == len(names) - 1 else 0,
                parent=parent.id if parent else "",
                via="spawned" if parent else "",
                attrs={"exe": f"/usr/bin/{name}", "args": [name, "-c", "x"],
                       "listen_ports": [80] if name == "nginx" else []},
            )
        )  # fmt: skip
    return nodes, DictContext.of(*nodes)


def compiled(text: str, optimize: bool):
    macros = {"busy": MacroDef("busy", HERE, [SourceText.plain("process.name in (curl, nginx)")])}
    pred = Compiler(LISTS, macros, [], optimize=optimize).compile(SourceText.plain(text))
    assert pred is not None, text
    return pred


EVENT = st.one_of(
    st.builds(
        lambda p, op: FileEvent(time=1, pid=1, op=op, path=p, path2=""),
        st.sampled_from(PATHS),
        st.sampled_from(["open", "unlink", "chmod"]),
    ),
    st.just(ExecEvent(time=1, pid=1, filename="/usr/bin/sh")),
)


@settings(max_examples=300, deadline=None)
@given(
    text=condition(),
    names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
    uid=st.sampled_from([0, 1000]),
    ev=EVENT,
)
def test_optimised_predicates_agree_with_the_reference(text, names, uid, ev) -> None:
    nodes, ctx = world(names, uid)
    fast, slow = compiled(text, True), compiled(text, False)
    for subject in nodes:
        refs_fast: list[Node] = []
        refs_slow: list[Node] = []
        assert fast(ev, subject, ctx, refs_fast) == slow(ev, subject, ctx, refs_slow), text
        assert [n.id for n in refs_fast] == [n.id for n in refs_slow], text


@settings(max_examples=150, deadline=None)
@given(
    conditions=st.lists(condition(), min_size=1, max_size=6),
    names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
    ev=EVENT,
)
def test_guard_index_agrees_with_trying_every_rule(conditions, names, ev) -> None:
    defs = Definitions(lists=dict(LISTS))
    defs.macros["busy"] = MacroDef(
        "busy", HERE, [SourceText.plain("process.name in (curl, nginx)")]
    )
    for i, text in enumerate(conditions):
        defs.rules[f"r{i}"] = RuleDef(
            f"r{i}", HERE, "", SourceText.plain(text), (ev.kind,), "high",
            SourceText.plain("x"),
        )  # fmt: skip
    rules = build_rules(defs, [])
    indexed = RuleSet(rules, defs)
    flat = RuleSet([dataclasses.replace(r, guard=None) for r in rules], defs)
    nodes, ctx = world(names, 0)
    for subject in nodes:
        got = [m.rule.name for m in indexed.match(ev, subject, ctx)]
        want = [m.rule.name for m in flat.match(ev, subject, ctx)]
        assert got == want, conditions

"""parent() and ancestor(): depth, refs that explain a match, bounded walks, cycles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rules_support import check, lineage, proc, rule_text, write

from spyderd.model.nodes import Node
from spyderd.rules import MAX_DEPTH, DictContext, compile_condition, load_rules


def test_parent_tests_only_the_direct_parent() -> None:
    (_init, web, sh), ctx = lineage("/sbin/init", "/usr/sbin/nginx", "/bin/sh")
    refs: list = []
    assert check("parent(process.name = nginx)", sh, ctx, refs=refs)
    assert refs == [web]
    assert not check("parent(process.name = init)", sh, ctx)


def test_ancestor_nearest_first_and_depth() -> None:
    (_init, web, bash, sh), ctx = lineage("/sbin/init", "/usr/sbin/nginx", "/bin/bash", "/bin/sh")
    refs: list = []
    assert check("ancestor(process.name = nginx)", sh, ctx, refs=refs)
    assert refs == [web]
    assert not check("ancestor(process.name = nginx, depth=1)", sh, ctx)
    assert check("ancestor(process.name = nginx, depth=2)", sh, ctx)
    refs = []
    assert check("ancestor(process.pid > 0)", sh, ctx, refs=refs)
    assert refs == [bash], "the nearest ancestor that satisfies the condition"
    assert not check("ancestor(process.name = sh)", sh, ctx), "the subject is not its ancestor"


def test_nested_causal_operators_collect_every_reason() -> None:
    (init, web, bash, sh), ctx = lineage("/sbin/init", "/usr/sbin/nginx", "/bin/bash", "/bin/sh")
    refs: list = []
    cond = "ancestor(process.name = bash and parent(process.name = nginx))"
    assert check(cond, sh, ctx, refs=refs)
    assert refs == [bash, web]
    refs = []
    assert check(
        "parent(process.name = bash) and ancestor(process.name = init)", sh, ctx, refs=refs
    )
    assert refs == [bash, init]


def test_failed_branches_leave_no_refs() -> None:
    (_web, sh), ctx = lineage("/usr/sbin/nginx", "/bin/sh")
    refs: list = []
    assert check(
        "(ancestor(process.name = nginx) and process.pid = 0) or process.name = sh",
        sh,
        ctx,
        refs=refs,
    )
    assert refs == []
    assert check("not (ancestor(process.name = nginx) and process.pid = 0)", sh, ctx, refs=refs)
    assert refs == []


def test_exec_chain_counts_every_image() -> None:
    """A fork copy and the image it exec'd into are both ancestors."""
    web = proc("w", "/usr/sbin/nginx", pid=10)
    fork_copy = proc("w2", "/usr/sbin/nginx", web, via="spawned", pid=11)
    sh = proc("s", "/bin/sh", fork_copy, via="exec", pid=11)
    ctx = DictContext.of(web, fork_copy, sh)
    refs: list = []
    assert check("parent(process.name = nginx and process.pid = 11)", sh, ctx, refs=refs)
    assert refs == [fork_copy]
    refs = []
    assert check("ancestor(process.pid = 10)", sh, ctx, refs=refs)
    assert refs == [web]


def test_walks_stop_at_cycles() -> None:
    a = proc("a", "/bin/a")
    b = proc("b", "/bin/b", a)
    a.parent = "b"
    ctx = DictContext.of(a, b)
    assert [n.id for n in ctx.ancestors(a)] == ["b"]
    assert not check("ancestor(process.name = zzz)", a, ctx)
    selfish = proc("c", "/bin/c")
    selfish.parent = "c"
    assert list(DictContext.of(selfish).ancestors(selfish)) == []


def test_walks_are_bounded() -> None:
    nodes, ctx = lineage("/sbin/init", *["/bin/bash"] * (MAX_DEPTH + 10))
    leaf = nodes[-1]
    assert len(list(ctx.ancestors(leaf))) == MAX_DEPTH
    assert len(list(ctx.ancestors(leaf, depth=3))) == 3
    assert not check("ancestor(process.name = init)", leaf, ctx), "init is beyond the bound"
    assert check("ancestor(process.name = init)", nodes[MAX_DEPTH], ctx)


def test_unbounded_context_is_still_cut_by_the_compiler() -> None:
    """A context that ignores depth cannot make a rule walk forever."""
    loop = proc("x", "/bin/x")

    class Endless:
        calls = 0

        def parent(self, node: Node) -> Node:
            return loop

        def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
            while True:
                Endless.calls += 1
                yield loop

    pred = compile_condition("ancestor(process.name = nope, depth=5)")
    assert pred(None, loop, Endless(), []) is False
    assert Endless.calls == 5


def test_event_fields_inside_ancestor_warn(tmp_path: Path) -> None:
    text = rule_text(condition="ancestor(evt.kind = exec)")
    ruleset = load_rules([write(tmp_path, "r.yaml", text)])
    (w,) = ruleset.warnings
    assert (w.code, w.line, w.col) == ("W302", 3, 14)
    assert "evt.kind is always missing" in w.message

"""descendant(), sibling(), peer(), session(), wrote_by(); the ancestry cache; `not in`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rules_support import check, lineage, proc

from spyderd.errors import RuleError
from spyderd.model.events import ExecEvent, ListenEvent
from spyderd.model.nodes import Node
from spyderd.rules import DictContext, compile_condition
from spyderd.rules.compiler import Compiler
from spyderd.rules.source import SourceText

S = 1_000_000_000


def spawn(parent: Node, exe: str, pid: int, start: int, args: list[str] | None = None):
    """fork copy + exec image, as the graph records a command started by `parent`."""
    copy = proc(f"f{pid}", parent.attrs["exe"], parent, via="spawned", pid=pid)
    copy.start = start
    image = proc(f"x{pid}", exe, copy, via="exec", pid=pid, args=args or [exe])
    image.start = start + 1000
    return copy, image


def test_descendant_within_a_window_after_the_subject_started() -> None:
    web = proc("w", "/usr/sbin/nginx", pid=10)
    web.start = 100 * S
    c1, sh = spawn(web, "/bin/sh", 11, 130 * S)
    c2, curl = spawn(sh, "/usr/bin/curl", 12, 400 * S)
    ctx = DictContext.of(web, c1, sh, c2, curl)
    refs: list[Node] = []
    assert check("descendant(process.name = sh, within=1m)", web, ctx, refs=refs)
    assert refs == [sh]
    assert not check("descendant(process.name = sh, within=20s)", web, ctx)
    assert check("descendant(process.name = curl)", web, ctx), "no window: any descendant"
    assert not check("descendant(process.name = curl, within=4m)", web, ctx)
    assert check("descendant(process.name = curl, within=6m)", web, ctx)
    assert not check("descendant(process.id = w)", web, ctx), "the subject is not one"
    assert check("descendant(process.name = nginx)", web, ctx), "its fork copies are"
    assert check("descendant(process.name = curl, within=1h)", sh, ctx)


def test_durations_in_every_unit() -> None:
    web = proc("w", "/usr/sbin/nginx", pid=10)
    ctx = DictContext.of(web, *spawn(web, "/bin/sh", 11, 90 * 60 * S - 1000))  # sh at 90m
    for window, expected in (("2h", True), ("1h30m", True), ("1h", False), ("5400s", True),
                             ("5399999ms", False), ("1d", True)):  # fmt: skip
        assert check(f"descendant(process.name = sh, within={window})", web, ctx) is expected


def test_sibling_is_another_child_of_the_parent_process() -> None:
    bash = proc("b", "/bin/bash", pid=50)
    c1, curl = spawn(bash, "/usr/bin/curl", 51, 1)
    c2, sh = spawn(bash, "/bin/sh", 52, 2)
    ctx = DictContext.of(bash, c1, curl, c2, sh)
    refs: list[Node] = []
    assert check("sibling(process.name = curl)", sh, ctx, refs=refs)
    assert refs == [curl], "the exec'd image of the sibling process, not its fork copy"
    assert not check("sibling(process.name = sh)", sh, ctx), "its own line does not count"
    assert check("sibling(process.name = sh)", curl, ctx)
    assert check("sibling(process.name = sh)", c1, ctx), "from the fork copy as well"
    assert not check("sibling(process.name = bash)", bash, ctx), "no parent, no siblings"


def test_peer_is_the_process_at_the_other_end() -> None:
    client = proc("c", "/usr/bin/curl", pid=70)
    server = proc("s", "/usr/sbin/sshd", pid=20, listen_ports=[22])
    out = Node("conn1", "connection", attrs={"process_id": "c", "peer": "conn2",
                                              "direction": "out", "result": 0})  # fmt: skip
    inbound = Node("conn2", "connection", attrs={"process_id": "s", "peer": "conn1",
                                                  "direction": "in", "result": 0})  # fmt: skip
    ctx = DictContext.of(client, server, out, inbound)
    refs: list[Node] = []
    assert check("peer(process.name = sshd and process.listening)", client, ctx, refs=refs)
    assert refs == [server]
    assert check("peer(process.name = curl)", server, ctx)
    assert not check("peer(process.name = nginx)", client, ctx)
    assert check("process.connections_out = 1", client, ctx)
    assert check("process.connections_out = 0", server, ctx)


def test_session_reads_the_session_node() -> None:
    sess = Node("sess:1", "session", attrs={"interactive": True, "tty": "pts/3", "user": "ana",
                                            "loginuid": 1001})  # fmt: skip
    sh = proc("sh", "/bin/bash", pid=80, session_id="sess:1")
    lone = proc("lone", "/bin/bash", pid=81, interactive=False)
    ctx = DictContext.of(sess, sh, lone)
    refs: list[Node] = []
    assert check("session(session.interactive and session.user = ana)", sh, ctx, refs=refs)
    assert refs == [sess]
    assert check("session.tty = pts/3 and session.loginuid = 1001", sh, ctx)
    assert check("session.id = sess:1", sh, ctx)
    assert not check("session(session.interactive)", lone, ctx), "no session node"
    assert check("not session.interactive", lone, ctx), "falls back to the image's own copy"


def test_wrote_by_names_the_writer_of_the_executed_file() -> None:
    curl = proc("curl", "/usr/bin/curl", pid=90)
    file = Node("file:1:2", "file", attrs={"path": "/tmp/x", "writer": "curl"})
    x = proc("x", "/tmp/x", pid=91, exec_file="file:1:2")
    other = proc("y", "/usr/bin/ls", pid=92)
    ctx = DictContext.of(curl, file, x, other)
    refs: list[Node] = []
    assert check("wrote_by(process.name in (curl, wget))", x, ctx, refs=refs)
    assert refs == [curl]
    assert not check("wrote_by(process.name exists)", other, ctx)
    assert ctx.writer(file) is curl


def test_machine_fields_read_the_machine_node() -> None:
    machine = Node("machine:m1", "machine", attrs={"hostname": "web-7", "virt": "kvm",
                                                   "vm": True})  # fmt: skip
    sh = proc("sh", "/bin/sh", machine_id="m1")
    ctx = DictContext.of(machine, sh)
    assert check("machine.hostname = web-7 and machine.virt = kvm and machine.vm", sh, ctx)
    assert check("machine.id = m1", sh, ctx)
    assert not check("machine.hostname exists", proc("n", "/bin/sh"), ctx)


def test_not_in_is_the_negated_membership() -> None:
    (_, sh), ctx = lineage("/bin/bash", "/bin/sh")
    assert check("process.name not in (bash, zsh)", sh, ctx)
    assert not check("process.name not in (sh)", sh, ctx)
    assert check("process.name not in shells", sh, ctx, lists={"shells": ["zsh"]})
    assert check("not process.name not in (sh)", sh, ctx)


def test_causal_operators_nest() -> None:
    web = proc("w", "/usr/sbin/nginx", pid=10)
    c1, sh = spawn(web, "/bin/sh", 11, 1)
    c2, curl = spawn(sh, "/usr/bin/curl", 12, 2)
    c3, wget = spawn(sh, "/usr/bin/wget", 13, 3)
    ctx = DictContext.of(web, c1, sh, c2, curl, c3, wget)
    refs: list[Node] = []
    cond = "ancestor(process.name = sh and descendant(process.name = curl))"
    assert check(cond, wget, ctx, refs=refs)
    assert refs == [sh, curl]
    assert check("parent(process.name = sh) and sibling(process.name = curl)", wget, ctx)


class CountingContext(DictContext):
    """Counts parent() calls: the number of ancestry steps taken."""

    steps = 0

    def parent(self, node: Node) -> Node | None:
        CountingContext.steps += 1
        return super().parent(node)

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        return super().ancestors(node, depth)


def test_ancestry_cache_walks_each_image_once() -> None:
    nodes, _ = lineage("/sbin/init", *["/bin/bash"] * 20)
    ctx = CountingContext({n.id: n for n in nodes})
    compiler = Compiler({}, {}, [])
    pred = compiler.compile(SourceText.plain("ancestor(process.name = init)"))
    assert pred is not None
    (cache,) = compiler.caches
    leaf = nodes[-1]
    assert pred(None, leaf, ctx, [])
    first = CountingContext.steps
    assert first == 20, "one step per image up to init"
    CountingContext.steps = 0
    for node in nodes[5:]:
        refs: list[Node] = []
        assert pred(None, node, ctx, refs)
        assert refs == [nodes[0]]
    assert CountingContext.steps == len(nodes[5:]), "one parent() per subject, then cached"
    assert cache.hits >= len(nodes[5:])


def test_cache_is_dropped_when_a_read_attribute_can_change() -> None:
    """process.listening turns true with a listen event: a cached 'no' must not survive it."""
    from spyderd.rules import load_rules

    nodes, ctx = lineage("/sbin/init", "/usr/bin/python3", "/bin/bash", "/bin/sh")
    app, sh = nodes[1], nodes[3]
    rules_text = (
        "- rule: r\n  event: exec\n  severity: high\n  output: x\n"
        "  condition: ancestor(process.name = python3 and process.listening)\n"
    )
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.yaml"
        path.write_text(rules_text)
        rs = load_rules([path])
    exec_ev = ExecEvent(time=1, pid=sh.pid, filename="/bin/sh")
    assert rs.match(exec_ev, sh, ctx) == []
    app.attrs["listen_ports"] = [8000]
    assert rs.match(exec_ev, sh, ctx) == [], "stale until told: the cache still says no"
    listen = ListenEvent(time=2, pid=app.pid, family=4, local_ip="0.0.0.0", local_port=8000)
    rs.match(listen, app, ctx)
    (m,) = rs.match(exec_ev, sh, ctx)
    assert m.refs == [app]


def test_growing_questions_are_never_cached() -> None:
    compiler = Compiler({}, {}, [])
    compiler.compile(SourceText.plain("ancestor(descendant(process.name = sh))"))
    compiler.compile(SourceText.plain("ancestor(process.listening)"))
    assert len(compiler.caches) == 1 and compiler.caches[0].kinds == frozenset({"listen"})


def test_cache_notices_a_different_node_under_the_same_id() -> None:
    pred = compile_condition("ancestor(process.name = nginx)")
    for exe, expected in (("/usr/sbin/nginx", True), ("/bin/bash", False)):
        top = proc("top", exe)
        leaf = proc("leaf", "/bin/sh", top)
        assert pred(None, leaf, DictContext.of(top, leaf), []) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "descendant(process.name = sh, within=0s)",
        "descendant(process.name = sh, within=10)",
        "peer(process.name = sh, depth=1)",
        "session(session.tty exists, within=1m)",
        "wrote_by(process.name = curl, depth=2)",
    ],
)
def test_bad_options_are_errors(condition: str) -> None:
    with pytest.raises(RuleError) as exc:
        compile_condition(condition)
    assert exc.value.diagnostics[0].code == "E307"

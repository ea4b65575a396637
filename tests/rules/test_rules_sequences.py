"""Sequence rules: order, causal line, window and expiry, bounded state, reload, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_support import rule_errors, write

from spyderd.graph import Graph
from spyderd.model import (
    AcceptEvent,
    ConnectEvent,
    Event,
    ExecEvent,
    ForkEvent,
    ListenEvent,
)
from spyderd.rules import RuleSet, load_rules

S = 1_000_000_000
MIN = 60 * S
NAME = "Web shell calls out"
SEQUENCE = f"""\
- rule: {NAME}
  sequence:
    - event: accept
      condition: process.name = nginx
    - event: exec
      condition: process.name in (sh, bash)
    - event: connect
      condition: connection.remote_ip not in (10.0.0.0/8)
  within: 10m
  severity: critical
  tags: [T1505.003]
  output: "{{process.name}} -> {{connection.remote_ip}} after {{ancestor.name}} accepted"
"""


class World:
    """A live graph and a rule set, fed events in time order."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.rs = ruleset
        self.graph = Graph(None, "t", boot_wall_ns=0)
        self.t = 1000 * S
        self.matches: list = []

    def feed(self, ev: Event) -> list:
        node = self.graph.apply(ev)
        assert node is not None
        found = self.rs.match(ev, node, self.graph)
        self.matches.extend(found)
        return found

    def at(self, delta: int = 1_000_000) -> int:
        self.t += delta
        return self.t

    def start(self, pid: int, ppid: int, exe: str) -> None:
        t = self.at()
        self.feed(ForkEvent(time=t, ktime=t, pid=pid, ppid=ppid, child_start=t))
        t = self.at()
        self.feed(ExecEvent(time=t, ktime=t, pid=pid, ppid=ppid, filename=exe, args=[exe],
                            start=self.t - 1_000_000))  # fmt: skip

    def accept(self, pid: int) -> list:
        t = self.at()
        return self.feed(
            AcceptEvent(
                time=t,
                ktime=t,
                pid=pid,
                family=4,
                local_ip="10.0.0.2",
                local_port=80,
                remote_ip="198.51.100.7",
                remote_port=5,
            )
        )

    def connect(self, pid: int, ip: str = "203.0.113.9") -> list:
        t = self.at()
        return self.feed(
            ConnectEvent(
                time=t,
                ktime=t,
                pid=pid,
                family=4,
                local_ip="10.0.0.2",
                local_port=40000 + pid,
                remote_ip=ip,
                remote_port=443,
            )
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(load_rules([write(tmp_path, "seq.yaml", SEQUENCE)]))
    t = w.at()
    w.feed(ExecEvent(time=t, ktime=t, pid=10, filename="/usr/sbin/nginx", args=["nginx"]))
    return w


def test_steps_in_order_along_the_causal_line(world: World) -> None:
    world.accept(10)
    world.start(11, 10, "/bin/sh")
    world.start(12, 11, "/usr/bin/curl")
    (m,) = world.connect(12)
    assert m.rule.name == NAME
    assert m.output == "curl -> 203.0.113.9 after nginx accepted"
    nginx, sh = m.refs
    assert (nginx.pid, sh.pid) == (10, 11) and sh.attrs["exe"] == "/bin/sh"
    stats = world.rs.stats()["sequences"][NAME]
    assert stats["completed"] == 1 and stats["started"] == 1


def test_out_of_order_or_off_the_line_does_not_match(world: World) -> None:
    world.start(11, 10, "/bin/sh")  # shell before the accept
    world.accept(10)
    assert world.connect(11) == []
    world.start(20, 1, "/bin/bash")  # a shell, but not below nginx
    assert world.connect(20) == []
    world.start(13, 10, "/bin/sh")
    assert world.connect(13, ip="10.1.2.3") == [], "step 3's condition must hold"
    (m,) = world.connect(13)
    assert m.refs[1].pid == 13


def test_the_window_expires(world: World) -> None:
    world.accept(10)
    world.start(11, 10, "/bin/sh")
    world.at(11 * MIN)
    assert world.connect(11) == [], "eleven minutes after the accept: too late"
    stats = world.rs.stats()["sequences"][NAME]
    assert stats["expired"] >= 1 and stats["partials"] == 0
    world.accept(10)  # a new accept opens a new window
    world.start(12, 10, "/bin/sh")
    world.at(9 * MIN)
    assert len(world.connect(12)) == 1


def test_expiry_also_runs_without_matching_events(world: World) -> None:
    world.accept(10)
    assert world.rs.stats()["sequences"][NAME]["partials"] == 1
    world.rs.expire(world.t + 11 * MIN)
    assert world.rs.stats()["sequences"][NAME]["partials"] == 0


def test_a_completed_chain_fires_once_and_a_second_shell_fires_again(world: World) -> None:
    world.accept(10)
    world.start(11, 10, "/bin/sh")
    assert len(world.connect(11)) == 1
    assert world.connect(11) == [], "that shell's partial was consumed"
    world.start(12, 10, "/bin/bash")
    assert len(world.connect(12)) == 1, "the accept's window still holds another shell"


def test_partial_matches_are_bounded(tmp_path: Path) -> None:
    text = SEQUENCE.replace("  within: 10m\n", "  within: 10m\n  max_partial_matches: 3\n")
    w = World(load_rules([write(tmp_path, "seq.yaml", text)]))
    for pid in range(10, 16):
        t = w.at()
        w.feed(ExecEvent(time=t, ktime=t, pid=pid, filename="/usr/sbin/nginx", args=["nginx"]))
        w.accept(pid)
    stats = w.rs.stats()["sequences"][NAME]
    assert (stats["partials"], stats["dropped"]) == (3, 3)
    w.start(30, 10, "/bin/sh")  # nginx 10's partial was the oldest: dropped
    assert w.connect(30) == []
    w.start(31, 15, "/bin/sh")
    assert len(w.connect(31)) == 1


def test_reload_keeps_partial_matches_of_unchanged_sequences(tmp_path: Path, world: World) -> None:
    world.accept(10)
    world.start(11, 10, "/bin/sh")
    new = load_rules([write(tmp_path, "seq2.yaml", SEQUENCE)])
    assert new.adopt_state(world.rs) == [NAME]
    world.rs = new
    assert len(world.connect(11)) == 1
    changed = load_rules([write(tmp_path, "seq3.yaml", SEQUENCE.replace("10m", "5m"))])
    assert changed.adopt_state(new) == [], "a different window starts from scratch"


def test_exceptions_apply_to_every_step(tmp_path: Path) -> None:
    text = SEQUENCE.replace("  within: 10m\n", "  within: 10m\n  exceptions: [process.pid = 11]\n")
    w = World(load_rules([write(tmp_path, "seq.yaml", text)]))
    t = w.at()
    w.feed(ExecEvent(time=t, ktime=t, pid=10, filename="/usr/sbin/nginx", args=["nginx"]))
    w.accept(10)
    w.start(11, 10, "/bin/sh")
    assert w.connect(11) == []


def test_step_that_raises_disables_the_rule(tmp_path: Path) -> None:
    text = SEQUENCE.replace(
        "condition: process.name in (sh, bash)", "condition: process.cmdline contains id"
    )
    w = World(load_rules([write(tmp_path, "seq.yaml", text)]))
    t = w.at()
    w.feed(ExecEvent(time=t, ktime=t, pid=10, filename="/usr/sbin/nginx", args=["nginx"]))
    w.accept(10)
    w.start(11, 10, "/bin/sh")
    node = w.graph.live[11]
    node.attrs["args"] = [42]  # a corrupt graph value
    t = w.at()
    ev = ExecEvent(time=t, ktime=t, pid=11, filename="/bin/sh")
    w.rs.match(ev, node, w.graph)
    assert list(w.rs.disabled) == [NAME]
    assert NAME in w.rs.disabled and "TypeError" in w.rs.disabled[NAME]
    assert w.rs.for_kind("connect") == []


def test_listen_then_shell_two_steps(tmp_path: Path) -> None:
    text = """\
- rule: Listener shell
  sequence:
    - {event: listen, condition: process.name = python3}
    - {event: exec, condition: process.name = sh}
  within: 1h
  severity: high
  output: "{process.name} below listening {ancestor.name}"
"""
    w = World(load_rules([write(tmp_path, "s.yaml", text)]))
    t = w.at()
    w.feed(ExecEvent(time=t, ktime=t, pid=5, filename="/usr/bin/python3", args=["python3"]))
    t = w.at()
    w.feed(ListenEvent(time=t, ktime=t, pid=5, family=4, local_ip="0.0.0.0", local_port=8000))
    w.start(6, 5, "/bin/sh")
    (m,) = w.matches
    assert m.output == "sh below listening python3"


@pytest.mark.parametrize(
    "body, code, line, col",
    [
        ("  sequence:\n    - {event: exec, condition: x.y = 1}\n  within: 1m\n", "E005", 3, 5),
        ("  sequence: []\n  within: 1m\n", "E005", 2, 13),
        (("  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exce, condition: process.name = b}\n  within: 1m\n"), "E007", 4, 15),
        (("  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exec}\n  within: 1m\n"), "E004", 4, 7),
        (("  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exec, condition: process.nmae = b}\n  within: 1m\n"), "E301", 4, 32),
        (("  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exec, condition: process.name = b}\n  within: soon\n"), "E005", 5, 11),
        (("  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exec, condition: process.name = b}\n"), "E004", 1, 3),
        (("  event: exec\n  sequence:\n    - {event: exec, condition: process.name = a}\n"
         "    - {event: exec, condition: process.name = b}\n  within: 1m\n"), "E005", 2, 3),
    ],
)  # fmt: skip
def test_sequence_errors_are_located(
    tmp_path: Path, body: str, code: str, line: int, col: int
) -> None:
    text = "- rule: s\n" + body + "  severity: high\n  output: x\n"
    path = write(tmp_path, "s.yaml", text)
    diags = [d for d in rule_errors(lambda: load_rules([path])) if d.is_error]
    assert (diags[0].code, diags[0].line, diags[0].col) == (code, line, col), str(diags[0])

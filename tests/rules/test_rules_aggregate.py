"""Aggregate rules: counts and distinct counts per key in a window, bounded state, reload,
located errors. Fed through a live in-memory graph, as the daemon does."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_support import rule_errors, write

from spyderd.graph import Graph
from spyderd.model import ConnectEvent, Event, ExecEvent, ForkEvent
from spyderd.rules import RuleSet, load_rules

S = 1_000_000_000
NAME = "Discovery burst"
BURST = f"""\
- rule: {NAME}
  description: several discovery programs from one shell
  event: exec
  condition: process.name in (id, whoami, uname, hostname, ps)
  exceptions:
    - parent.name = excused
  aggregate:
    by: parent
    distinct: process.name
    count: 3
    within: 10s
  severity: medium
  tags: [T1082]
  output: "{{process.name}} below {{parent.name}}"
"""
SWEEP = """\
- rule: Sweep
  event: connect
  condition: connection.remote_ip = 127.0.0.1
  aggregate:
    by: [subject, connection.remote_ip]
    distinct: connection.remote_port
    count: 5
    within: 5s
    max_keys: 2
  severity: medium
  output: "{process.name} sweeps {connection.remote_ip}"
"""
COUNT = """\
- rule: Many
  event: exec
  condition: process.name = true
  aggregate: {by: user, count: 3, within: 1s}
  severity: low
  output: "{process.name}"
"""


class World:
    """A live graph and a rule set, fed events in time order."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.rs = ruleset
        self.graph = Graph(None, "t", boot_wall_ns=0)
        self.t = 1000 * S
        self.next_pid = 100

    def feed(self, ev: Event) -> list:
        node = self.graph.apply(ev)
        assert node is not None
        return self.rs.match(ev, node, self.graph)

    def run(self, ppid: int, exe: str, gap: int = 1_000_000) -> list:
        """fork + exec of `exe` below `ppid`; the matches of the exec."""
        self.next_pid += 1
        pid = self.next_pid
        self.t += gap
        self.feed(ForkEvent(time=self.t, ktime=self.t, pid=pid, ppid=ppid, child_start=self.t))
        self.t += 1000
        return self.feed(ExecEvent(time=self.t, ktime=self.t, pid=pid, ppid=ppid, filename=exe,
                                   args=[exe], start=self.t - 1000))  # fmt: skip

    def shell(self, exe: str = "/bin/bash") -> int:
        self.run(1, exe)
        return self.next_pid

    def connect(self, pid: int, port: int, ip: str = "127.0.0.1") -> list:
        self.t += 1_000_000
        return self.feed(ConnectEvent(time=self.t, ktime=self.t, pid=pid, family=4,
                                      local_ip="127.0.0.1", local_port=40000, remote_ip=ip,
                                      remote_port=port))  # fmt: skip


def world(tmp_path: Path, text: str) -> World:
    return World(load_rules([write(tmp_path, "agg.yaml", text)]))


def test_distinct_programs_from_one_shell_fire_once(tmp_path: Path) -> None:
    w = world(tmp_path, BURST)
    sh = w.shell()
    assert w.run(sh, "/usr/bin/id") == []
    assert w.run(sh, "/usr/bin/id") == [], "the same program twice is one distinct value"
    assert w.run(sh, "/usr/bin/whoami") == []
    (m,) = w.run(sh, "/bin/uname")
    assert m.rule.name == NAME
    assert m.output.startswith("uname below bash [3 distinct process.name (id whoami uname)")
    assert sorted(n.attrs["exe"] for n in m.refs) == ["/usr/bin/id", "/usr/bin/whoami"]
    assert w.run(sh, "/bin/hostname") == [], "quiet for the rest of the window"
    st = w.rs.stats()["aggregates"][NAME]
    assert (st["fired"], st["suppressed"], st["keys"]) == (1, 1, 1)


def test_keys_are_separate_and_the_window_slides(tmp_path: Path) -> None:
    w = world(tmp_path, BURST)
    a, b = w.shell(), w.shell()
    w.run(a, "/usr/bin/id")
    w.run(b, "/usr/bin/whoami")
    assert w.run(a, "/bin/uname") == [], "two shells, two keys"
    w.run(b, "/bin/uname")
    assert w.run(a, "/bin/ps", gap=11 * S) == [], "id and uname left the 10 s window"
    assert w.run(a, "/usr/bin/id") == []
    assert w.run(a, "/usr/bin/whoami") != []


def test_exceptions_are_not_counted(tmp_path: Path) -> None:
    w = world(tmp_path, BURST)
    sh = w.shell("/usr/local/bin/excused")
    for exe in ("/usr/bin/id", "/usr/bin/whoami", "/bin/uname", "/bin/ps"):
        assert w.run(sh, exe) == []
    assert w.rs.stats()["aggregates"][NAME]["counted"] == 0


def test_port_sweep_by_subject_and_address_with_bounded_keys(tmp_path: Path) -> None:
    w = world(tmp_path, SWEEP)
    scanner = w.shell("/usr/bin/python3")
    found = [m for port in range(20, 26) for m in w.connect(scanner, port)]
    (m,) = found
    assert "sweeps 127.0.0.1 [5 distinct connection.remote_port (20 21 22 23 24)" in m.output
    assert w.connect(scanner, 80, ip="10.0.0.1") == [], "another address: not the rule's"
    for _ in range(3):  # max_keys 2: the third key pushes the oldest out
        w.connect(w.shell("/usr/bin/python3"), 1)
    st = w.rs.stats()["aggregates"]["Sweep"]
    assert st["keys"] == 2 and st["dropped"] == 2


def test_event_count_per_user_and_expiry(tmp_path: Path) -> None:
    w = world(tmp_path, COUNT)
    assert w.run(1, "/bin/true") == [] and w.run(1, "/bin/true") == []
    assert len(w.run(1, "/bin/true")) == 1
    w.rs.expire(w.t + 5 * S)
    st = w.rs.stats()["aggregates"]["Many"]
    assert (st["keys"], st["expired"], st["fired"]) == (0, 1, 1)


def test_reload_keeps_counts_of_an_unchanged_rule_only(tmp_path: Path) -> None:
    w = world(tmp_path, BURST)
    sh = w.shell()
    w.run(sh, "/usr/bin/id")
    w.run(sh, "/usr/bin/whoami")
    same = load_rules([write(tmp_path, "agg.yaml", BURST)])
    assert same.adopt_state(w.rs) == [NAME]
    w.rs = same
    assert len(w.run(sh, "/bin/uname")) == 1, "the two earlier matches were kept"
    changed = load_rules([write(tmp_path, "agg.yaml", BURST.replace("count: 3", "count: 4"))])
    assert changed.adopt_state(same) == []
    assert changed.stats()["aggregates"][NAME]["keys"] == 0


@pytest.mark.parametrize(
    ("block", "code", "where", "text"),
    [
        ("    by: parnt\n    count: 3\n    within: 10s\n", "E301", (6, 9), "did you mean 'parent'"),
        ("    by: parent\n    count: 1\n    within: 10s\n", "E005", (7, 12), "from 2 to"),
        ("    by: parent\n    count: 3\n    within: often\n", "E005", (8, 13), "duration"),
        ("    by: parent\n    count: 3\n", "E004", (5, 3), "missing 'within'"),
        ("    by: parent\n    count: 3\n    within: 1s\n    distinct: process.nam\n", "E301",
         (9, 15), "process.name"),
        ("    by: parent\n    count: 3\n    within: 1s\n    top: 3\n", "E005", (9, 10), "top"),
    ],
)
def test_errors_are_located(tmp_path: Path, block: str, code: str, where: tuple, text: str) -> None:
    rule = ("- rule: R\n  event: exec\n  condition: process.name = id\n  severity: low\n"
            "  aggregate:\n" + block + "  output: x\n")  # fmt: skip
    path = write(tmp_path, "bad.yaml", rule)
    (d,) = [d for d in rule_errors(lambda: load_rules([path])) if d.is_error]
    assert (d.code, (d.line, d.col)) == (code, where), d
    assert text in d.message


def test_aggregate_on_a_sequence_is_refused(tmp_path: Path) -> None:
    text = """\
- rule: S
  sequence:
    - {event: exec, condition: process.name = a}
    - {event: exec, condition: process.name = b}
  within: 1m
  aggregate: {by: parent, count: 2, within: 1s}
  severity: low
  output: x
"""
    (d,) = rule_errors(lambda: load_rules([write(tmp_path, "s.yaml", text)]))
    assert d.code == "E005" and d.line == 6

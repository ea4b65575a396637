"""spyderctl rules validate|list|fields|test and spyderctl record.

`rules test PATH... --events FILE` replays a recording (see `spyderd.graph.replay`) through a fresh
in-memory graph and the rules in PATH, and prints every match. Like grep it exits 0 when
something matched (only `--rule NAME` counts when given), 1 when nothing did, 2 when the rules
or the recording are wrong.

`record --seconds N -o FILE` writes what the running daemon sees for N seconds: the events it
stores, preceded by the context a replay needs (the processes already running that the
recorded ones descend from, and their session and machine nodes), read from the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from spyderd.ctl.common import dirs, live_status, open_store
from spyderd.errors import SpyderError
from spyderd.model import Node, event_record

EXIT_MATCH, EXIT_NO_MATCH, EXIT_ERROR = 0, 1, 2
EXIT_NOT_RUNNING = 3
# node attributes a snapshot line carries for the rules (context, not bookkeeping)
SNAPSHOT_ATTRS = (
    "container_id", "container_name", "container_image", "container_runtime", "k8s_pod",
    "k8s_namespace", "k8s_pod_uid", "k8s_container", "netns", "pidns", "mntns", "userns",
    "utsns", "loginuid", "sessionid", "tty", "user", "group", "session_id", "interactive",
    "cwd", "interpreter", "euid", "accepts", "exec_file",
)  # fmt: skip


def add_parsers(sub: Any) -> None:
    """Register `rules` and `record` on spyderctl's subcommand parser."""
    p = sub.add_parser("rules", help="validate, list, describe, test or import rules")
    p.add_argument("action", choices=["validate", "list", "fields", "test", "import-sigma"])
    p.add_argument("paths", nargs="*", help="rule files or directories (default: installed); "
                   "import-sigma: Sigma files or directories")
    p.add_argument("--events", metavar="FILE", help="test: recorded events (JSON lines)")
    p.add_argument("--rule", action="append", metavar="NAME",
                   help="test: only count and print matches of this rule (repeatable)")
    p.add_argument("--standalone", action="store_true",
                   help="validate: check the files alone, not with the installed rules")
    p.add_argument("--lists", action="store_true", help="list: the lists defined")
    p.add_argument("--macros", action="store_true", help="list: the macros defined")
    p.add_argument("-o", "--output", metavar="FORMAT|FILE",
                   help="text or json (list, test); the rule file to write (import-sigma, "
                   "'-' for stdout)")
    p.set_defaults(fn=cmd_rules)
    p = sub.add_parser("record", help="write the live event stream to a file, for rules test")
    p.add_argument("--seconds", type=float, required=True, metavar="N")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="'-' for stdout")
    p.add_argument("--settle", type=float, default=3.0, metavar="SECONDS",
                   help="how long to wait for the daemon to store the last events")
    p.set_defaults(fn=cmd_record)


# -- rules -----------------------------------------------------------------------------------


def cmd_rules(args: argparse.Namespace) -> int:
    if args.action == "fields":
        from spyderd.rules.fields import describe

        print(describe())
        return 0
    if args.action == "import-sigma":
        return _import_sigma(args)
    if (args.output or "text") not in ("text", "json"):
        print(f"spyderctl: -o takes text or json for rules {args.action}", file=sys.stderr)
        return EXIT_ERROR
    args.output = args.output or "text"
    if args.action == "validate":
        return _validate(args)
    from spyderd.rules import load_rules

    paths = args.paths or _configured_paths(args)
    try:
        rs = load_rules(paths)
    except SpyderError as exc:
        print(str(exc), file=sys.stderr)
        return 1 if args.action != "test" else EXIT_ERROR
    for warning in rs.warnings:
        print(str(warning), file=sys.stderr)
    if args.action == "list":
        _list(rs, args)
        return 0
    return _test(rs, args)


def _validate(args: argparse.Namespace) -> int:
    """The files given, checked after the installed rules (so their lists and macros
    resolve) unless --standalone; warnings are shown for the files given only."""
    from spyderd.rules import load_rules
    from spyderd.rules.reader import expand_paths

    given = args.paths
    if not given or args.standalone:
        paths, mine = given or _configured_paths(args), None
    else:
        installed, _ = expand_paths(_configured_paths(args))
        mine_files, _ = expand_paths(given)
        known = {p.resolve() for p in installed}
        paths = [*installed, *(p for p in mine_files if p.resolve() not in known)]
        paths += [g for g in given if not Path(g).exists()]  # reported as not found
        mine = {str(p) for p in mine_files} | {str(p) for p in installed
                                               if p.resolve() in {m.resolve() for m in mine_files}}
    try:
        rs = load_rules(paths)
    except SpyderError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    warnings = [w for w in rs.warnings if mine is None or w.file in mine]
    for warning in warnings:
        print(str(warning), file=sys.stderr)
    count = len(rs.rules) if mine is None else sum(str(r.location.file) in mine for r in rs.rules)
    n = len(warnings)
    extra = "" if mine is None else f" (with the {len(rs.rules) - count} installed rules)"
    print(f"{count} rules ok{extra}" + (f", {n} warning{'s' * (n != 1)}" if n else ""))
    return 0


def _import_sigma(args: argparse.Namespace) -> int:
    """Sigma files to one spyderd rule file; the rules left out, and why, on stderr. Exit 0:
    all converted, 1: some left out (the others written), 2: bad arguments or files."""
    if not args.paths or not args.output:
        print("spyderctl: rules import-sigma needs FILE... and -o OUT.yaml", file=sys.stderr)
        return EXIT_ERROR
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"spyderctl: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ERROR
    # pySigma is heavy and only this command needs it: imported here, not at the top
    from spyderd.sigma.importer import import_sigma

    try:
        report = import_sigma(args.paths)
    except OSError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for skipped in report.skipped:
        print(str(skipped), file=sys.stderr)
    if args.output == "-":
        sys.stdout.write(report.yaml())
    else:
        Path(args.output).write_text(report.yaml(), encoding="utf-8")
    print(f"{len(report.converted)} rules converted to {args.output}, "
          f"{len(report.skipped)} not converted", file=sys.stderr)  # fmt: skip
    return 1 if report.skipped else 0


def _configured_paths(args: argparse.Namespace) -> list[str]:
    """The rule paths of the config file (`--config`, else the default one)."""
    from spyderd.common.config import DEFAULT_RULES, load_config

    try:
        return list(load_config(getattr(args, "config", None)).rules)
    except SpyderError:  # a broken config: the default paths, as with no config
        return list(DEFAULT_RULES)


def _list(rs: Any, args: argparse.Namespace) -> None:
    """Rules, or with --lists / --macros the lists and macros the rule files define."""
    if not (args.lists or args.macros):
        _list_rules(rs, args.output)
        return
    defs = rs.definitions
    for kind, table in (("list", defs.lists if args.lists else {}),
                        ("macro", defs.macros if args.macros else {})):  # fmt: skip
        for name, d in table.items():
            what = ([str(v) for v, _, _ in d.items] if kind == "list"
                    else " or ".join(f"({p.value})" if len(d.parts) > 1 else p.value
                                     for p in d.parts))  # fmt: skip
            if args.output == "json":
                print(json.dumps({"kind": kind, "name": name, "file": str(d.loc),
                                  "items" if kind == "list" else "condition": what}))
            else:
                shown = ", ".join(what) if kind == "list" else " ".join(str(what).split())
                print(f"{kind}\t{name}\t{shown}\t{d.loc}")


def _list_rules(rs: Any, output: str) -> None:
    for r in rs.rules:
        if output == "json":
            print(json.dumps({
                "name": r.name, "severity": r.severity, "events": list(r.events),
                "tags": r.tags, "mitre": r.mitre, "enabled": r.enabled,
                "sequence": r.is_sequence, "file": str(r.location), "sigma_id": r.sigma_id,
            }))  # fmt: skip
        else:
            kind = "sequence" if r.is_sequence else ",".join(r.events)
            state = "" if r.enabled else "\tdisabled"
            print(f"{r.name}\t{r.severity}\t{kind}\t{','.join(r.tags)}{state}")


def _test(rs: Any, args: argparse.Namespace) -> int:
    from spyderd.graph.replay import ReplaySource, read_recording

    if not args.events:
        print("spyderctl: rules test needs --events FILE", file=sys.stderr)
        return EXIT_ERROR
    unknown = [n for n in args.rule or () if rs.get(n) is None]
    if unknown:
        print(f"spyderctl: no such rule: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        source = ReplaySource(read_recording(args.events))
    except SpyderError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    wanted = set(args.rule or ())
    count = events = 0
    for ev, node in source:
        events += 1
        if node is None:
            continue
        for m in rs.match(ev, node, source.graph):
            if wanted and m.rule.name not in wanted:
                continue
            count += 1
            _print_match(m, ev, node, args.output)
    for name, reason in rs.disabled.items():
        print(f"spyderctl: rule {name!r} raised and was disabled: {reason}", file=sys.stderr)
    summary = f"{count} matches in {events} events"
    print(summary, file=sys.stderr if args.output == "json" else sys.stdout)
    if rs.disabled:
        return EXIT_ERROR
    return EXIT_MATCH if count else EXIT_NO_MATCH


def _print_match(m: Any, ev: Any, node: Node, output: str) -> None:
    if output == "json":
        print(json.dumps({
            "rule": m.rule.name, "severity": m.rule.severity, "priority": m.rule.priority,
            "mitre": m.rule.mitre, "tags": m.rule.tags, "output": m.output,
            "time": ev.time, "pid": ev.pid, "process_id": node.id,
            "exe": node.attrs.get("exe", ""), "refs": [r.id for r in m.refs],
            "event": event_record(ev, node.id),
        }))  # fmt: skip
        return
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.time / 1e9))
    print(f"{ts} {m.rule.severity:8} {m.rule.name}: {m.output}")


# -- record ----------------------------------------------------------------------------------


def cmd_record(args: argparse.Namespace) -> int:

    _, run = dirs(args)
    st = live_status(run)
    if not st or not st.get("ready"):
        print("spyderctl: spyderd is not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if args.seconds <= 0:
        print("spyderctl: --seconds must be positive", file=sys.stderr)
        return 2
    since = time.time_ns()
    time.sleep(args.seconds)
    until = time.time_ns()
    store = open_store(args)
    events = _wait_for_events(store, since, until, args.settle)
    ignore = {os.getpid(), st.get("pid")}
    events = [e for e in events if e.get("pid") not in ignore]
    lines = [*_preamble(store, events, since, st), *events]
    if args.output == "-":
        _write_lines(sys.stdout, lines)
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            _write_lines(out, lines)
        print(f"recorded {len(events)} events to {args.output}", file=sys.stderr)
    return 0


def _wait_for_events(store: Any, since: int, until: int, settle: float) -> list[dict]:
    """Events stored for [since, until]; waits up to `settle` s for the daemon's last batch
    (done as soon as an event after `until` shows the batch holding `until` was written)."""
    deadline = time.monotonic() + settle
    while True:
        later = next(iter(store.events(until + 1)), None)
        if later is not None or time.monotonic() >= deadline:
            return list(store.events(since, until))
        time.sleep(0.2)


def _preamble(store: Any, events: list[dict], since: int, status: dict) -> Iterable[dict]:
    """Header, context nodes and snapshot lines for the processes that predate `since`."""
    chains: dict[str, Node] = {}  # pre-existing images, root first (insertion order)
    for ev in events:
        node = store.node(ev.get("process_id", ""))
        if node is not None:
            _collect_ancestry(store, node, since, chains)
    machine_id = next((n.attrs.get("machine_id") for n in chains.values()
                       if n.attrs.get("machine_id")), "")
    boot = next((n.id.split(":")[1] for n in chains.values() if n.id.count(":") >= 3), "")
    walls = [n.start - n.attrs["start_ns"] for n in chains.values() if n.attrs.get("start_ns")]
    yield {"kind": "recording", "version": 1, "since": since, "boot": boot,
           "boot_wall_ns": min(walls) if walls else 0, "machine_id": machine_id,
           "daemon_pid": status.get("pid")}
    context = {n.attrs.get("session_id") for n in chains.values()} | {f"machine:{machine_id}"}
    for cid in sorted(c for c in context if c):
        ctx_node = store.node(cid)
        if ctx_node is not None:
            yield {"kind": "node", "node": ctx_node.to_dict()}
    by_pid: dict[int, Node] = {}
    for node in chains.values():
        by_pid[node.pid] = node  # the latest pre-existing image of each pid
    for node in by_pid.values():
        yield _snapshot_line(node)


def _collect_ancestry(store: Any, node: Node, since: int, out: dict[str, Node]) -> None:
    line, cur = [], node
    for _ in range(64):
        if cur.id in out:
            break
        if cur.start < since:
            line.append(cur)
        parent = store.node(cur.parent) if cur.parent else None
        if parent is None:
            break
        cur = parent
    for n in reversed(line):
        out.setdefault(n.id, n)


def _snapshot_line(node: Node) -> dict:
    a = node.attrs
    return {
        "kind": "snapshot", "pid": node.pid, "ppid": node.ppid,
        "start_ns": a.get("start_ns", 0), "comm": a.get("comm", ""), "exe": a.get("exe", ""),
        "args": list(a.get("args", [])), "uid": node.uid, "gid": a.get("gid", 0) or 0,
        "listen_ports": list(a.get("listen_ports", [])),
        "attrs": {k: a[k] for k in SNAPSHOT_ATTRS if a.get(k) not in (None, "")},
    }  # fmt: skip


def _write_lines(out: TextIO, lines: Iterable[dict]) -> None:
    out.writelines(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)

"""spyderctl: status, traces, findings and the audit trail, read from the store.

History never needs the daemon: LMDB serves concurrent readers. Live operations
(status, reload) use the runtime directory the daemon maintains.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from spyderd.errors import SpyderError, StoreError
from spyderd.timeparse import parse_when

EXIT_NOT_RUNNING = 3
EXIT_NOT_FOUND = 4


def _dirs(args) -> tuple[Path, Path]:
    state = args.state_dir or os.environ.get("SPYDERD_STATE_DIR") or "/var/lib/spyderd"
    run = args.runtime_dir or os.environ.get("SPYDERD_RUNTIME_DIR") or "/run/spyderd"
    return Path(state), Path(run)


def _open_store(args):
    from spyderd.graph import Store

    return Store(_dirs(args)[0], readonly=True)


def _read_status(run: Path) -> dict | None:
    try:
        st = json.loads((run / "status.json").read_text())
    except PermissionError:
        raise StoreError(f"permission denied: {run / 'status.json'} "
                         f"(root or the 'spyder' group can read it)") from None
    except (OSError, ValueError):
        return None
    try:
        os.kill(st["pid"], 0)
    except ProcessLookupError:
        st["ready"] = False
        st["stale"] = True
    except PermissionError:
        pass
    return st


def cmd_status(args) -> int:
    _, run = _dirs(args)
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        st = _read_status(run)
        if st and st.get("ready"):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if args.output == "json":
        print(json.dumps(st or {"ready": False}, indent=1))
    elif st is None:
        print(f"spyderd is not running (no status in {run})")
    else:
        _print_status(st)
    return 0 if st and st.get("ready") else EXIT_NOT_RUNNING


def _print_status(st: dict) -> None:
    state = "running" if st.get("ready") else ("stopped" if st.get("stopped") or st.get("stale")
                                                else "starting")
    print(f"spyderd {st.get('version')}: {state} (pid {st.get('pid')})")
    print(f"  events: {st.get('events')} ({st.get('events_per_s')}/s)  findings: "
          f"{st.get('findings')} (pending {st.get('findings_pending')})  rules: {st.get('rules')}")
    for name, p in sorted(st.get("probes", {}).items()):
        extra = f" - {p['reason']}" if p.get("reason") else ""
        print(f"  probe {name}: {p['state']}{extra}")
    lost = st.get("lost") or {}
    dec = st.get("decode_errors") or {}
    print(f"  lost: {sum(lost.values())} {lost or ''}  decode errors: {sum(dec.values())} "
          f"{dec or ''}  sink errors: {st.get('sink_errors', 0)}")
    for name, err in (st.get("rules_disabled") or {}).items():
        print(f"  rule disabled: {name}: {err}")
    for err in st.get("errors") or []:
        print(f"  error: {err}")


def cmd_trace(args) -> int:
    from spyderd.traces import build_trace
    from spyderd.traces.render import render_dot, render_tree

    store = _open_store(args)
    ident = args.id
    if args.pid is not None:
        images = store.processes_by_pid(args.pid)
        if not images:
            print(f"spyderctl: no process with pid {args.pid} in the store", file=sys.stderr)
            return EXIT_NOT_FOUND
        ident = max(images, key=lambda n: n.start).id
    if not ident:
        print("spyderctl: trace needs an ID or --pid", file=sys.stderr)
        return 2
    try:
        view = build_trace(store, ident)
    except KeyError as exc:
        print(f"spyderctl: {exc.args[0]}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.output == "json":
        print(json.dumps(view.to_dict(), indent=1))
    elif args.output in ("dot", "svg"):
        dot = render_dot(view)
        if args.output == "dot":
            print(dot)
        else:
            if not shutil.which("dot"):
                print("spyderctl: graphviz 'dot' is not installed", file=sys.stderr)
                return 1
            svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                                 check=True).stdout
            sys.stdout.write(svg.decode())
    else:
        print(render_tree(view))
    return 0


def cmd_findings(args) -> int:
    store = _open_store(args)
    since = parse_when(args.since) if args.since else 0
    rows = sorted((f for f in store.findings() if f.time >= since
                   and (not args.rule or f.rule == args.rule)), key=lambda f: f.time)
    for f in rows:
        if args.output == "json":
            print(json.dumps(f.to_dict()))
        else:
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.time / 1e9))
            print(f"{ts} {f.severity:8} {f.id} {f.trace_id} {f.rule}: {f.message}")
    return 0


def cmd_events(args) -> int:
    store = _open_store(args)
    since = parse_when(args.since) if args.since else 0
    for ev in store.events(since):
        if args.kind and ev["kind"] != args.kind:
            continue
        if args.pid is not None and ev["pid"] != args.pid:
            continue
        if args.output == "json":
            print(json.dumps(ev))
        else:
            ts = time.strftime("%H:%M:%S", time.localtime(ev["time"] / 1e9))
            rest = {k: v for k, v in ev.items() if k not in ("kind", "time", "ktime", "pid",
                                                              "tid", "process_id")}
            print(f"{ts} {ev['kind']:8} pid={ev['pid']} {json.dumps(rest)}")
    return 0


def cmd_rules(args) -> int:
    from spyderd.rules import load_rules

    paths = args.paths or ["/usr/share/spyderd/rules", "/etc/spyderd/rules.d"]
    try:
        rs = load_rules(paths)
    except SpyderError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.action == "list":
        for r in rs.rules:
            print(f"{r.name}\t{r.severity}\t{','.join(r.events)}\t{','.join(r.tags)}")
    else:
        print(f"{len(rs.rules)} rules ok")
    return 0


def cmd_reload(args) -> int:
    _, run = _dirs(args)
    st = _read_status(run)
    if not st or not st.get("ready"):
        print("spyderctl: spyderd is not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    result = run / "reload.json"
    before = result.stat().st_mtime if result.exists() else 0
    os.kill(st["pid"], signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if result.exists() and result.stat().st_mtime != before:
            res = json.loads(result.read_text())
            if res["ok"]:
                print(f"rules reloaded: {res['rules']} rules active")
                return 0
            print(res["errors"], file=sys.stderr)
            print(f"reload refused; {res['rules']} previous rules stay active", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("spyderctl: no answer from spyderd within 10 s", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spyderctl", description="query and control spyderd")
    ap.add_argument("--state-dir")
    ap.add_argument("--runtime-dir")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("status", help="daemon state, probes, losses")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("trace", help="show the trace of a finding, trace or process")
    p.add_argument("id", nargs="?")
    p.add_argument("--pid", type=int)
    p.add_argument("-o", "--output", choices=["tree", "json", "dot", "svg"], default="tree")
    p.set_defaults(fn=cmd_trace)
    p = sub.add_parser("findings", help="list findings")
    p.add_argument("--since")
    p.add_argument("--rule")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_findings)
    p = sub.add_parser("events", help="the raw audit trail")
    p.add_argument("--since")
    p.add_argument("--kind")
    p.add_argument("--pid", type=int)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_events)
    p = sub.add_parser("rules", help="validate or list rules")
    p.add_argument("action", choices=["validate", "list"])
    p.add_argument("paths", nargs="*")
    p.set_defaults(fn=cmd_rules)
    p = sub.add_parser("reload", help="reload rules in the running daemon")
    p.set_defaults(fn=cmd_reload)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except SpyderError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

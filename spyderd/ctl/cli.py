"""spyderctl: status, traces, findings, processes, queries and the audit trail.

History never needs the daemon: LMDB serves concurrent readers, so `trace`, `findings`,
`traces`, `ps`, `process`, `query` and `events` read the store directly. Live operations
(`status`, `reload`, `-f`) talk to the daemon over its control socket
(`<runtime_dir>/control.sock`); `status` falls back to the status file the daemon writes
every second, `reload` to SIGHUP when the socket is missing.

Conventions follow systemctl and journalctl: `-o json`, `--no-pager`, `--since`/`--until`
(`-1h`, `yesterday`, ISO 8601, `@UNIX`), colors only on a terminal, and the exit codes of
`spyderd.ctl.output.EXIT_CODES` (0 ok, 1 failure, 2 usage, 3 not running, 4 permission
denied, 5 not found).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from spyderd.common.timeparse import parse_when
from spyderd.ctl.common import (
    check_readable,
    dirs,
    event_filters,
    live_status,
    open_store,
    read_status,
)
from spyderd.ctl.output import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_NOT_RUNNING,
    EXIT_PERMISSION,
    SafeStream,
    paged,
    use_color,
)
from spyderd.ctl.store import add_parsers as add_store_parsers
from spyderd.errors import AccessError, NotRunningError, SpyderError, StoreError

__all__ = ["EXIT_NOT_FOUND", "EXIT_NOT_RUNNING", "EXIT_PERMISSION", "build_parser", "main"]


def cmd_status(args) -> int:
    _, run = dirs(args)
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        st = live_status(run)
        if st and st.get("ready"):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if args.output == "json":
        print(json.dumps(st or {"ready": False}, indent=1))
    elif st is None:
        print(f"spyderd is not running (no control socket or status in {run})")
    else:
        _print_status(st, use_color())
    return 0 if st and st.get("ready") else EXIT_NOT_RUNNING


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _age(ns: int) -> str:
    """How far back the store goes, for `status`."""
    if not ns:
        return "no events yet"
    s = max(time.time() - ns / 1e9, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"oldest event {s / size:.1f} {unit} ago"
    return f"oldest event {s:.0f} s ago"


def _print_status(st: dict, color: bool) -> None:
    state = "running" if st.get("ready") else ("stopped" if st.get("stopped") or st.get("stale")
                                                else "starting")
    dot = "●"
    if color:
        dot = ("\033[1;32m●\033[0m" if st.get("ready") else "\033[1;31m●\033[0m")
    print(f"{dot} spyderd {st.get('version')}: {state} (pid {st.get('pid')})")
    print(f"  events: {st.get('events')} ({st.get('events_per_s')}/s)  findings: "
          f"{st.get('findings')} (pending {st.get('findings_pending')})  rules: {st.get('rules')}")
    if (st.get("loader") or {}).get("text"):
        print(f"  loader: {st['loader']['text']}")
    for name, p in sorted(st.get("probes", {}).items()):
        extra = f" - {p['reason']}" if p.get("reason") else ""
        print(f"  probe {name}: {p.get('text') or p['state'] + extra}")
    lost = st.get("lost") or {}
    dec = st.get("decode_errors") or {}
    print(f"  lost: {sum(lost.values())} {lost or ''}  decode errors: {sum(dec.values())} "
          f"{dec or ''}  sink errors: {st.get('sink_errors', 0)}")
    if st.get("kernel_counters"):
        print("  kept in the kernel: " + ", ".join(
            f"{k} {v}" for k, v in sorted(st["kernel_counters"].items())))
    _print_more(st)
    for name, err in (st.get("rules_disabled") or {}).items():
        print(f"  rule disabled: {name}: {err}")
    seqs = (st.get("rules_stats") or {}).get("sequences") or {}
    if seqs:
        total = {k: sum(s.get(k, 0) for s in seqs.values()) for k in ("partials", "dropped",
                                                                     "expired", "completed")}
        print(f"  sequence rules: {len(seqs)}, partial matches {total['partials']} (dropped "
              f"{total['dropped']} at the limit, expired {total['expired']}), "
              f"completed {total['completed']}")
    aggs = (st.get("rules_stats") or {}).get("aggregates") or {}
    if aggs:
        tot = {k: sum(a.get(k, 0) for a in aggs.values()) for k in ("keys", "dropped",
                                                                    "expired", "fired")}
        print(f"  aggregate rules: {len(aggs)}, keys {tot['keys']} (dropped {tot['dropped']} "
              f"at the limit, expired {tot['expired']}), fired {tot['fired']}")
    for err in st.get("errors") or []:
        print(f"  error: {err}")


def store_health_lines(store: dict) -> list[str]:
    """The store's faults in words: "store: disk full since 13:02:11, 5120 events not stored"."""
    h = store.get("health") or {}
    lines = []
    if store.get("moved_aside"):
        lines.append(f"store: was corrupted at start, moved aside to {store['moved_aside']}")
    if h.get("state") == "degraded":
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
        lines.append(f"store: {h.get('fault')} since {since}, {h.get('events_not_stored', 0)} "
                     f"events not stored, {h.get('findings_not_stored', 0)} findings not "
                     f"stored, {h.get('held_findings', 0)} findings and "
                     f"{h.get('held_events', 0)} events held in memory (retrying)")
    elif h.get("faults"):
        lines.append(f"store: writing (recovered from {h['faults']} faults; "
                     f"{h.get('events_not_stored', 0)} events and "
                     f"{h.get('findings_not_stored', 0)} findings were not stored)")
    if h.get("space_level"):
        lines.append(f"store: low on space: {h.get('free_mb')} MiB free (below "
                     f"store.{h['space_level']}_mb)")
    if h.get("corrupt"):
        lines.append(f"store: replaced {h['corrupt']} times after corruption at run time")
    if h.get("records_refused"):
        lines.append(f"store: {h['records_refused']} records refused by LMDB (not stored)")
    return lines


def _print_more(st: dict) -> None:
    gap = st.get("capture_gap")
    if gap:
        how = "clean stop" if gap.get("clean") else "unclean stop: crash, kill or power loss"
        sent = f"; the previous run was sent {gap['sender']}" if gap.get("sender") else ""
        print(f"  capture gap before this start: {gap.get('seconds')} s ({how}){sent}")
    store = st.get("store") or {}
    if store:
        print(f"  store: {store.get('path')}  {_size(store.get('bytes', 0))} "
              f"(used {_size(store.get('used_bytes', 0))}), {store.get('events', 0)} events, "
              f"{store.get('nodes', 0)} nodes, {_age(store.get('oldest', 0))}")
        proj = store.get("projection") or {}
        if proj.get("days") is not None:
            print(f"  store.max_size_mb holds ~{proj['days']:g} days at the current rate "
                  f"({proj['events_per_s']:g} events/s, {proj['bytes_per_event']:g} B/event)")
        for line in store_health_lines(store):
            print(f"  {line}")
    en = st.get("enrich") or {}
    if en:
        print(f"  context: {en.get('containers', 0)} containers, {en.get('sessions', 0)} "
              f"sessions, {en.get('vms', 0)} VMs on a {en.get('virt')} machine; gone before "
              f"read {en.get('proc_gone', 0)}, errors {en.get('errors', 0)} "
              f"(state files {en.get('state_errors', 0)}, netns {en.get('netns_errors', 0)})")
    fd = st.get("findings_detail") or {}
    if fd:
        print(f"  findings: sent {fd.get('sent', 0)}, folded {fd.get('folded', 0)}, "
              f"suppressed {fd.get('suppressed', 0)}; traces: {fd.get('traces_active', 0)} "
              f"active, {fd.get('traces_sent', 0)} sent (threshold "
              f"{fd.get('trace_threshold')})")
        for name, s in (fd.get("sinks") or {}).items():
            down = "  DOWN" if s.get("down_since") else ""
            err = f"  last error: {s['last_error']}" if s.get("last_error") else ""
            print(f"  sink {name}: sent {s.get('sent', 0)}, errors {s.get('errors', 0)}"
                  f"{down}{err}")
        sup = fd.get("suppressions") or {}
        if sup.get("policies"):
            print(f"  suppressions: {sup['policies']} policies, hits {sup.get('hits') or {}}")
    al = st.get("alerts")
    if al:
        reason = f" - {al['reason']}" if al.get("reason") else ""
        print(f"  journal alerts: {al.get('state')}{reason}: read {al.get('read', 0)}, "
              f"attached {al.get('attached', 0)}, unattached {al.get('unattached', 0)}")
    ctl = st.get("control")
    if ctl:
        print(f"  control socket: {ctl.get('socket')} (requests {ctl.get('requests', 0)}, "
              f"refused {ctl.get('rejected', 0)})")
    _print_fleet(st)


def _print_fleet(st: dict) -> None:
    """The fleet exporter and capture.scope lines of `spyderctl status`."""
    fl = st.get("fleet")
    if fl:
        box = fl.get("outbox", {})
        state = "connected" if fl.get("connected") else "NOT connected"
        err = f"; last error: {fl['last_error']}" if fl.get("last_error") else ""
        print(f"  fleet: {state} to {fl.get('url')} as {fl.get('name')}; published "
              f"{fl.get('published', 0)} ({fl.get('duplicates', 0)} duplicates), queued "
              f"{box.get('queued', 0)}, dropped {box.get('dropped', 0)}, publish errors "
              f"{fl.get('publish_errors', 0)}{err}")
    sc = st.get("scope")
    if sc:
        print(f"  scope: {sc.get('kind')} {sc.get('target')}, {sc.get('dropped', 0)} events "
              "outside it ignored")



# The command groups below import their module when run (lazily, on purpose): each pulls in
# a heavy part (lark for rules and queries, the trace renderers, pySigma, the fleet's
# nats), and `spyderctl status` or `reload` must start without any of them.

def cmd_trace(args) -> int:
    from spyderd.ctl.process import cmd_trace as run

    return run(args, open_store(args))


def cmd_ps(args) -> int:
    from spyderd.ctl.process import cmd_ps as run

    return run(args, open_store(args))


def cmd_process(args) -> int:
    from spyderd.ctl.process import cmd_process as run

    return run(args, open_store(args))


def cmd_findings(args) -> int:
    from spyderd.ctl.history import cmd_findings as run

    check_readable(dirs(args)[0])
    return run(args, lambda: open_store(args), dirs(args)[1])


def cmd_traces(args) -> int:
    from spyderd.ctl.history import cmd_traces as run

    check_readable(dirs(args)[0])
    return run(args, lambda: open_store(args), dirs(args)[1])


def cmd_query(args) -> int:
    from spyderd.common.config import load_config
    from spyderd.ctl.query import cmd_query as run

    store = open_store(args)
    paths = args.rules or list(load_config(args.config).rules)
    return run(args, store, paths)


def cmd_events(args) -> int:
    store = open_store(args)
    since = parse_when(args.since) if args.since else 0
    until = parse_when(args.until) if args.until else None
    with paged(args.no_pager) as out:
        for ev in store.events(since, until, **event_filters(args)):
            if args.kind and ev["kind"] != args.kind:
                continue
            if args.output == "json":
                out.write(json.dumps(ev) + "\n")
            else:
                ts = time.strftime("%H:%M:%S", time.localtime(ev["time"] / 1e9))
                rest = {k: v for k, v in ev.items() if k not in ("kind", "time", "ktime", "pid",
                                                                  "tid", "process_id")}
                out.write(f"{ts} {ev['kind']:8} pid={ev['pid']} {json.dumps(rest)}\n")
    return 0


def cmd_suppressions(args) -> int:
    """The suppression policies of the config (or PATHs), with hits from the daemon."""
    from spyderd.common.config import load_config
    from spyderd.traces.suppress import load_suppressions, policy_files

    paths = args.paths or list(load_config(args.config).findings.suppressions)
    supp = load_suppressions(paths)
    hits: dict = {}
    try:
        st = live_status(dirs(args)[1]) or {}
        hits = ((st.get("findings_detail") or {}).get("suppressions") or {}).get("hits") or {}
    except AccessError:
        pass
    now = time.time()
    rows = [dict(p.to_dict(), expired=p.expired(now), hits=hits.get(p.name, 0))
            for p in supp.policies]
    if args.output == "json":
        for r in rows:
            print(json.dumps(r))
        return 0
    if not rows:
        files = ", ".join(str(f) for f in policy_files(paths)) or "none found"
        print(f"no suppression policies (looked in {', '.join(map(str, paths))}; files: "
              f"{files})")
        return 0
    for r in rows:
        state = "expired" if r["expired"] else "active"
        print(f"{r['name']}  [{state}, {r['hits']} hits]  {r['where']}")
        for key in ("rule", "ancestor", "container_image", "user"):
            if r[key]:
                print(f"    {key}: {', '.join(r[key])}")
        if r["expires"]:
            print(f"    expires: {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['expires']))}")
        if r["reason"]:
            print(f"    reason: {r['reason']}")
    return 0


def cmd_reload(args) -> int:
    from spyderd.daemon import control

    _, run = dirs(args)
    try:
        res = control.request(run, "reload", timeout=60)
    except NotRunningError:
        return _reload_by_signal(run)
    if res.get("ok"):
        print(f"rules reloaded: {res.get('rules')} rules active")
        return 0
    print(res.get("errors") or res.get("error", ""), file=sys.stderr)
    print(f"reload refused; {res.get('rules', '?')} previous rules stay active", file=sys.stderr)
    return EXIT_FAILURE


def _reload_by_signal(run: Path) -> int:
    """No control socket (an older daemon): SIGHUP, then wait for its reload.json."""
    st = read_status(run)
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
            return EXIT_FAILURE
        time.sleep(0.1)
    print("spyderctl: no answer from spyderd within 10 s", file=sys.stderr)
    return EXIT_FAILURE


# -- command line ----------------------------------------------------------------------------

def _index_options(p: argparse.ArgumentParser) -> None:
    """Filters the store answers from its indexes (events and query)."""
    p.add_argument("--path", help="events naming this exact path (file, exec, wrote_exec)")
    p.add_argument("--remote", metavar="IP", help="connections with this remote address")
    p.add_argument("--user", metavar="NAME|UID", help="events of this user id")
    p.add_argument("--container", metavar="ID", help="events of processes in this container "
                   "(full id)")


def _common(p: argparse.ArgumentParser, outputs: tuple[str, ...] = ("text", "json"),
            window: bool = False) -> None:
    p.add_argument("-o", "--output", choices=list(outputs), default=outputs[0])
    p.add_argument("--no-pager", action="store_true", help="do not pipe output into a pager")
    if window:
        p.add_argument("-S", "--since", metavar="WHEN",
                       help="from this time on: -1h, yesterday, 2026-01-31 12:00, @UNIX")
        p.add_argument("-U", "--until", metavar="WHEN", help="up to this time")


def _add_history(sub) -> None:
    p = sub.add_parser("findings", help="list findings (-f follows new ones)")
    _common(p, window=True)
    p.add_argument("--rule", action="append", metavar="NAME", help="only this rule (repeatable)")
    p.add_argument("--severity", choices=["critical", "high", "medium", "low", "info"],
                   help="at least this severity")
    p.add_argument("--container", metavar="ID|NAME", help="id prefix or name; 'host' for none")
    p.add_argument("--trace", metavar="TRACE_ID", help="only findings of this trace")
    p.add_argument("--all", action="store_true", help="include suppressed findings")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new findings")
    p.set_defaults(fn=cmd_findings)
    p = sub.add_parser("traces", help="list traces (-f follows new and growing ones)")
    _common(p, window=True)
    p.add_argument("--rule", action="append", metavar="NAME", help="traces with this rule")
    p.add_argument("--severity", choices=["critical", "high", "medium", "low", "info"],
                   help="traces with a finding of at least this severity")
    p.add_argument("--container", metavar="ID", help="container id prefix; 'host' for none")
    p.add_argument("--min-score", type=int, default=0, metavar="N")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing traces as sent")
    p.set_defaults(fn=cmd_traces)
    p = sub.add_parser("events", help="the raw audit trail")
    _common(p, window=True)
    p.add_argument("--kind")
    p.add_argument("--pid", type=int)
    _index_options(p)
    p.set_defaults(fn=cmd_events)
    p = sub.add_parser("query", help="run a rule condition over stored history")
    _common(p, window=True)
    p.add_argument("expr", help="a condition, e.g. 'process.name = \"curl\"'")
    p.add_argument("--kind", help="only events of this kind (exec, connect, alert, ...)")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N matches")
    p.add_argument("--pid", type=int, help="only events of this pid (indexed)")
    _index_options(p)
    p.add_argument("--rules", action="append", metavar="PATH",
                   help="rule files whose lists and macros the condition may use")
    p.set_defaults(fn=cmd_query)


def _add_graph(sub) -> None:
    p = sub.add_parser("trace", help="show the trace of a finding, trace or process")
    p.add_argument("id", nargs="?", help="fnd-..., trc-..., proc:... or a pid")
    p.add_argument("--pid", type=int, help="the process with this pid (see --since)")
    p.add_argument("-S", "--since", "--at", dest="since", metavar="WHEN",
                   help="with --pid: the image of the pid running then, and the trace of "
                        "what it did (its finding's trace): -10m, 12:30, @UNIX")
    p.add_argument("-l", "--full", action="store_true",
                   help="do not cut tree lines to the terminal's width")
    p.add_argument("--fleet", action="store_true",
                   help="follow stitched connections to other hosts (needs fleet.url)")
    p.add_argument("--depth", type=int, default=4, help="host hops to follow with --fleet")
    _common(p, outputs=("tree", "json", "dot", "svg", "html"))
    p.set_defaults(fn=cmd_trace)
    p = sub.add_parser("ps", help="processes in the store (running ones; --all for every image)")
    _common(p, window=True)
    p.add_argument("--all", action="store_true", help="ended images too")
    p.add_argument("--container", metavar="ID|NAME", help="id prefix or name; 'host' for none")
    p.add_argument("--user", metavar="NAME|UID")
    p.set_defaults(fn=cmd_ps)
    p = sub.add_parser("process", help="one process: ancestry, children, connections, container")
    p.add_argument("id", nargs="?", help="proc:... (see ps)")
    p.add_argument("--pid", type=int)
    _common(p)
    p.set_defaults(fn=cmd_process)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spyderctl", description="query and control spyderd",
                                 epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir")
    ap.add_argument("--runtime-dir")
    ap.add_argument("--config", help="spyderd config (for rule and suppression paths)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("status", help="daemon state, probes, losses, store, sinks")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_status)
    _add_graph(sub)
    _add_history(sub)
    p = sub.add_parser("suppressions", help="list suppression policies")
    p.add_argument("paths", nargs="*", help="policy files or directories (default: config)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(fn=cmd_suppressions)
    from spyderd.ctl.rules import add_parsers as add_rule_parsers

    add_rule_parsers(sub)  # rules validate|list|fields|test, record
    add_store_parsers(sub)  # store check|salvage
    p = sub.add_parser("reload", help="reload rules and suppressions in the running daemon")
    p.set_defaults(fn=cmd_reload)
    return ap


_TIME_OPTIONS = ("--since", "--until", "-S", "-U")


def _glue_time_values(argv: list[str]) -> list[str]:
    """`--since -1h` as journalctl takes it: argparse would read `-1h` as an option."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in _TIME_OPTIONS:
            value = next(it, None)
            out.append(a if value is None else f"{a}={value}" if a.startswith("--")
                       else a + value)
        else:
            out.append(a)
    return out


def _options(extra: list[str]) -> list[str]:
    return [a for a in extra if a.startswith("-") and a != "-"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(_glue_time_values(argv))
    if extra and getattr(args, "paths", None) is not None and not _options(extra):
        args.paths = [*args.paths, *extra]  # `rules validate --standalone FILE`: paths last
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    if not isinstance(sys.stdout, SafeStream):  # see ctl.output: no raw control characters
        sys.stdout = SafeStream(sys.stdout)  # type: ignore[assignment]
    # Ctrl-C and SIGTERM end a `-f` follow cleanly even when started from a shell that
    # ignores SIGINT for background jobs (Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return args.fn(args)
    except AccessError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_PERMISSION
    except NotRunningError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except StoreError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_PERMISSION if str(exc).startswith("permission denied") else EXIT_FAILURE
    except SpyderError as exc:
        print(f"spyderctl: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""spyderctl trace, ps and process: the causal graph around a finding, trace or process."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import sys
from typing import Any

from spyderd.ctl.history import window
from spyderd.ctl.output import EXIT_FAILURE, EXIT_NOT_FOUND, paged, use_color
from spyderd.graph.query import History
from spyderd.model import Node
from spyderd.traces import build_trace
from spyderd.traces.build import ancestors, chain_entry, chain_text, node_json
from spyderd.traces.dot import picture, render_dot
from spyderd.traces.html import render_html
from spyderd.traces.render import (
    alert_line,
    command,
    conn_line,
    container_label,
    file_line,
    proc_line,
    render_tree,
    ts,
    user_of,
)


def _err(msg: str) -> None:
    print(f"spyderctl: {msg}", file=sys.stderr)


def image_for_pid(store, pid: int, at: int = 0) -> Node | None:
    """The stored image of a pid running at wall time `at` (else the first one started after
    it, else the last before); without `at`, the latest (the running one, if it runs)."""
    images = sorted(store.processes_by_pid(pid), key=lambda n: n.start)
    if not images:
        return None
    if not at:
        return images[-1]
    running = [n for n in images if n.start <= at and (not n.end or n.end >= at)]
    if running:
        return running[-1]
    after = [n for n in images if n.start > at]
    return after[0] if after else images[-1]


def _trace_of_pid(store, pid: int, at: int) -> str | None:
    """Without a time, the pid's latest image (its ancestry and subtree). With one, the
    trace of what the image running then did: its latest finding's trace, else the image."""
    img = image_for_pid(store, pid, at)
    if img is None or not at:
        return img.id if img is not None else None
    mine = [f for f in store.findings(max(img.start - 1, 0)) if f.process_id == img.id]
    return mine[-1].trace_id if mine and mine[-1].trace_id else img.id


def cmd_trace(args, store) -> int:
    ident = args.id
    if ident and ident.isdigit() and args.pid is None:  # `spyderctl trace 1234`
        ident, args.pid = None, int(ident)
    if args.pid is not None:
        ident = _trace_of_pid(store, args.pid, window(args)[0])
        if ident is None:
            _err(f"no process with pid {args.pid} in the store")
            return EXIT_NOT_FOUND
    if not ident:
        _err("trace needs an ID (finding fnd-..., trace trc-..., process proc:...) or --pid")
        return 2
    try:
        view = build_trace(store, ident)
    except KeyError as exc:
        _err(str(exc.args[0]))
        return EXIT_NOT_FOUND
    if getattr(args, "fleet", False):
        return _fleet_trace(args, view.to_dict())
    if args.output == "json":
        print(json.dumps(view.to_dict(), indent=1))
        return 0
    if args.output in ("dot", "svg", "html"):
        return _picture(view, args.output)
    width = 0 if args.full or not sys.stdout.isatty() else shutil.get_terminal_size().columns
    with paged(args.no_pager) as out:
        out.write(render_tree(view, color=use_color(), width=width) + "\n")
    return 0


def _picture(view, output: str) -> int:
    """-o dot, svg or html: graphviz source, its SVG, or the self-contained page."""
    pic = picture(view)
    dot = render_dot(view, pic)
    if output == "dot":
        print(dot)
        return 0
    svg = _svg(dot)
    if svg is None:
        return EXIT_FAILURE
    sys.stdout.write(render_html(view, pic, svg) if output == "html" else svg)
    return 0


def _fleet_trace(args, local: dict[str, Any]) -> int:
    """`trace --fleet`: follow stitched peer edges to the other hosts (spyderd.fleet)."""
    from spyderd.fleet.bus import bus_from_config

    bus = bus_from_config(args.config)
    if bus is None:
        _err("--fleet needs fleet.url in the spyderd config (see README: Fleet)")
        return EXIT_FAILURE
    from spyderd.fleet.fleettrace import render_fleet_dot, render_fleet_tree, run_fleet_trace

    doc = run_fleet_trace(bus, local, depth=args.depth)
    if args.output == "json":
        print(json.dumps(doc, indent=1))
    elif args.output == "dot":
        print(render_fleet_dot(doc))
    elif args.output in ("svg", "html"):
        svg = _svg(render_fleet_dot(doc))
        if svg is None:
            return EXIT_FAILURE
        sys.stdout.write(svg)
    else:
        with paged(args.no_pager) as out:
            out.write(render_fleet_tree(doc) + "\n")
    return 0


def _svg(dot: str) -> str | None:
    """graphviz source to SVG, or None after saying why not."""
    if not shutil.which("dot"):
        _err("graphviz 'dot' is not installed (apt-get install graphviz), or use -o dot")
        return None
    res = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=False)
    if res.returncode != 0:
        _err(f"dot failed: {res.stderr.decode(errors='replace').strip()}")
        return None
    return res.stdout.decode()


# -- ps --------------------------------------------------------------------------------------

def cmd_ps(args, store) -> int:
    """Processes as the store knows them: running ones (latest image per pid), or all."""
    since, until = window(args)
    rows = [n for n in _ps_candidates(store, args, since, until)
            if (args.all or not n.end)
            and (not args.container or _in_container(n, args.container))
            and (not args.user or args.user in (user_of(n), str(n.uid)))]
    if args.output == "json":
        for n in rows:
            print(json.dumps(node_json(n)))
        return 0
    with paged(args.no_pager) as out:
        out.write(f"{'PID':>7} {'PPID':>7} {'USER':10} {'STARTED':19} {'CONTAINER':14} "
                  f"{'ID':40} COMMAND\n")
        for n in rows:
            out.write(f"{n.pid:>7} {n.ppid:>7} {user_of(n)[:10]:10} {ts(n.start, True)[:19]} "
                      f"{(container_label(n) or '-')[:14]:14} {n.id:40} {command(n)[:200]}"
                      f"{'' if not n.end else '  (ended)'}\n")
    return 0


def _ps_candidates(store, args, since: int, until: int | None) -> list[Node]:
    """Through the store's indexes: running images from `live`, a numeric user from the
    user index, a full container id from the container index, else by start time."""
    if not args.all:
        return [n for n in store.live_processes()
                if n.start >= since and (until is None or n.start <= until)]
    uid = _uid(args.user) if args.user else None
    if uid is not None:
        return list(store.by_user(uid, since, until))
    if args.container and len(args.container) == 64:
        return list(store.in_container(args.container, since, until))
    return list(store.nodes_between(since, until, kind="process"))


def _uid(user: str) -> int | None:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _in_container(n: Node, want: str) -> bool:
    ctr = n.attrs.get("container_id") or ""
    if want in ("host", "-"):
        return not ctr
    return bool(ctr) and (ctr.startswith(want) or n.attrs.get("container_name") == want)


# -- process ---------------------------------------------------------------------------------

def process_report(store, node: Node) -> dict[str, Any]:
    """A process image with its ancestry, images, children, connections, files, alerts."""
    h = History(store)
    anc = list(reversed(ancestors(store, node)))
    out: dict[str, Any] = {"process": node_json(node)}
    out["ancestry"] = [chain_entry(a, "ancestor") for a in anc]
    out["chain"] = chain_text(out["ancestry"] + [chain_entry(node, "subject")])
    out["children"] = [node_json(c) for c in h.children(node)]
    out["connections"] = []
    out["files"] = []
    out["alerts"] = []
    for e in store.edges(node.id, "out"):
        other = store.node(e.dst)
        if other is None:
            continue
        if e.kind in ("connect", "accept", "listen"):
            d = node_json(other)
            d["edge"] = e.kind
            for pe in store.edges(other.id, "out"):
                peer_conn = store.node(pe.dst) if pe.kind == "peer" else None
                if peer_conn is not None:
                    d["peer_process"] = peer_conn.attrs.get("process_id", "")
            out["connections"].append(d)
        elif e.kind in ("wrote", "changed", "deleted", "denied"):
            out["files"].append({"edge": e.kind, "time": e.time, **node_json(other)})
        elif e.kind == "alerted":
            out["alerts"].append(node_json(other))
    for e in store.edges(node.id, "in"):
        f = store.node(e.src) if e.kind == "executed-file" else None
        if f is not None:
            out["files"].append({"edge": "executed-file", "time": e.time, **node_json(f),
                                 "writer": f.attrs.get("writer", "")})
    sess = h.session(node)
    out["session"] = node_json(sess) if sess else None
    out["findings"] = [f.to_dict() for f in store.findings(since_ns=node.start)
                       if f.process_id == node.id]
    return out


def cmd_process(args, store) -> int:
    node = None
    if args.pid is not None:
        node = image_for_pid(store, args.pid)
    elif args.id:
        node = store.node(args.id)
    if node is None or node.kind != "process":
        _err(f"no process {args.id or f'with pid {args.pid}'} in the store")
        return EXIT_NOT_FOUND
    rep = process_report(store, node)
    if args.output == "json":
        print(json.dumps(rep, indent=1))
        return 0
    with paged(args.no_pager) as out:
        out.write(_process_text(store, node, rep) + "\n")
    return 0


def _process_text(store, node: Node, rep: dict[str, Any]) -> str:
    a = node.attrs
    lines = [proc_line(node), f"  id:        {node.id}"]
    if a.get("exe"):
        lines.append(f"  exe:       {a['exe']}" + (f"  (cwd {a['cwd']})" if a.get("cwd") else ""))
    lines.append(f"  user:      {user_of(node)} (uid {node.uid})")
    if a.get("container_id"):
        lines.append(f"  container: {a.get('container_name') or '-'} {a['container_id']}"
                     + (f" image {a['container_image']}" if a.get("container_image") else ""))
    else:
        lines.append("  container: - (host)")
    if rep["session"]:
        lines.append(f"  session:   {rep['session']['id']}")
    lines.append(f"  started:   {ts(node.start, True)}" +
                 (f"  ended {ts(node.end, True)}" if node.end else "  (running)"))
    lines.append(f"  ancestry:  {rep['chain']}")
    if rep["children"]:
        lines.append("  children:")
        for c in rep["children"]:
            lines.append(f"    {proc_line(_node(c))}")
    for c in rep["connections"]:
        peer = store.node(c.get("peer_process", ""))
        via = f"  (peer {peer.name}[{peer.pid}])" if peer else ""
        lines.append(f"  · {conn_line(_node(c))}{via}")
    for f in rep["files"]:
        lines.append(f"  · {file_line(f['edge'], _node(f))}")
    for al in rep["alerts"]:
        lines.append(f"  · {alert_line(_node(al))}")
    for f in rep["findings"]:
        lines.append(f"  !! {f['rule']} ({f['severity']}) {f['id']} trace {f['trace_id']}")
    return "\n".join(lines)


def _node(d: dict[str, Any]) -> Node:
    """A node back from a report entry (minus the entry's own keys)."""
    return Node.from_dict({k: v for k, v in d.items()
                           if k not in ("edge", "time", "writer", "peer_process", "name")})

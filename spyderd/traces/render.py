"""Text tree and graphviz renderings of a trace view.

The tree reads top-down like `ps --forest`: each process with its start time, pid, user,
container and command line; under it what it did (connections, file writes, alerts) and,
marked `!!`, the findings on it. The graph draws each node kind in its own shape, host
activity and each container in its own fill color (with a legend), inbound connections as
arrows into the process that accepted them and outbound ones out of the process that made
them, and findings as red notes pinned to their subjects.
"""

from __future__ import annotations

import pwd
import shlex
import time
from collections.abc import Callable
from typing import Any

from spyderd.model import Node
from spyderd.traces.build import TraceView

HOST_COLOR = "#f2f2f2"
PALETTE = ["#cfe2ff", "#d1f2d9", "#ffe8b3", "#ead7ff", "#c8f0f0", "#ffd6e7", "#e2f0b8",
           "#ffd9c7"]
SEVERITY_COLORS = {"critical": "#b00020", "high": "#d93025", "medium": "#e37400",
                   "low": "#1a73e8", "info": "#5f6368"}
_ANSI = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[36m",
         "info": "\033[2m", "dim": "\033[2m", "bold": "\033[1m", "reset": "\033[0m"}


def ts(ns: int, date: bool = False) -> str:
    if not ns:
        return "--:--:--"
    fmt = "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S"
    return time.strftime(fmt, time.localtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d}"


def user_of(n: Node) -> str:
    name = n.attrs.get("user")
    if name:
        return str(name)
    try:
        return pwd.getpwuid(n.uid).pw_name
    except (KeyError, OverflowError):
        return str(n.uid)


def container_label(n: Node) -> str:
    a = n.attrs
    if not a.get("container_id"):
        return ""
    return a.get("container_name") or a["container_id"][:12]


def command(n: Node) -> str:
    args = n.attrs.get("args") or []
    return shlex.join(args) if args else (n.attrs.get("exe") or n.attrs.get("comm") or "?")


def proc_line(n: Node) -> str:
    ctr = container_label(n)
    where = f" [{ctr}]" if ctr else ""
    end = ""
    if n.end and "exit_code" in n.attrs:
        sig = n.attrs.get("exit_signal")
        end = f"  (exit {n.attrs['exit_code']}" + (f", signal {sig}" if sig else "") + ")"
    exe = n.attrs.get("exe") or ""
    shown = command(n)
    if exe and not shown.startswith(exe) and "/" in exe:
        shown = f"{exe}: {shown}"
    return f"{ts(n.start)} {n.name or '?'}[{n.pid}] {user_of(n)}{where}  {shown}{end}"


def conn_line(n: Node) -> str:
    a = n.attrs
    if n.kind == "listener":
        return f"listen {a.get('local_ip')}:{a.get('local_port')}"
    res = a.get("result", 0)
    status = "" if res == 0 else f" failed({res})"
    if a.get("direction") == "out":
        return (f"connect {a.get('local_ip')}:{a.get('local_port')} -> "
                f"{a.get('remote_ip')}:{a.get('remote_port')}{status}")
    return (f"accept {a.get('local_ip')}:{a.get('local_port')} <- "
            f"{a.get('remote_ip')}:{a.get('remote_port')}{status}")


def file_line(kind: str, f: Node) -> str:
    verb = {"wrote": "wrote", "changed": f.attrs.get("last_op") or "changed",
            "deleted": "deleted", "denied": "denied open of",
            "executed-file": "executed"}.get(kind, kind)
    return f"{verb} {f.attrs.get('path') or f.id}"


def alert_line(a: Node) -> str:
    who = a.attrs.get("identifier") or a.attrs.get("unit") or "?"
    return f"alert <{a.attrs.get('priority', '?')}> {who}: {a.attrs.get('message', '')}"


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        if not self.color or style not in _ANSI:
            return text
        return f"{_ANSI[style]}{text}{_ANSI['reset']}"


def _index(view: TraceView) -> dict[str, Any]:
    kids: dict[str, list[str]] = {}
    extra: dict[str, list[str]] = {}
    peers: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for e in view.edges:
        if e.kind in ("spawned", "exec"):
            kids.setdefault(e.src, []).append(e.dst)
            has_parent.add(e.dst)
        elif e.kind == "peer":
            peers.setdefault(e.src, []).append(e.dst)
        elif e.kind == "executed-file":
            extra.setdefault(e.dst, []).append(("executed-file", e.src))
        elif e.dst in view.nodes:
            extra.setdefault(e.src, []).append((e.kind, e.dst))
    return {"kids": kids, "extra": extra, "peers": peers, "has_parent": has_parent}


def _did_lines(view: TraceView, nid: str, idx: dict[str, Any]) -> list[tuple[str, str]]:
    """(style, text) lines for what a process did: connections, files, alerts."""
    out = []
    for kind, other_id in idx["extra"].get(nid, []):
        other = view.nodes.get(other_id)
        if other is None:
            continue
        if other.kind in ("connection", "listener"):
            line = conn_line(other)
            for p in idx["peers"].get(other.id, []):
                peer = view.nodes.get(p)
                owner = view.nodes.get(peer.attrs.get("process_id", "")) if peer else None
                if owner is not None:
                    line += f"  (peer {owner.name}[{owner.pid}])"
            out.append(("", "· " + line))
        elif other.kind == "file":
            line = file_line(kind, other)
            writer = view.nodes.get(other.attrs.get("writer", ""))
            if kind == "executed-file" and writer is not None:
                line += f"  (written by {writer.name}[{writer.pid}])"
            out.append(("", "· " + line))
        elif other.kind == "alert":
            out.append(("medium", "· " + alert_line(other)))
    return out


def render_tree(view: TraceView, color: bool = False) -> str:
    """Indented causal tree, findings marked inline with '!!'."""
    paint = _Paint(color)
    idx = _index(view)
    marks: dict[str, list[tuple[str, str]]] = {}
    for f in view.findings:
        count = f" x{f['count']}" if f.get("count", 1) > 1 else ""
        sup = f" [suppressed: {f['suppressed']}]" if f.get("suppressed") else ""
        marks.setdefault(f["process_id"], []).append(
            (f["severity"], f"!! {f['rule']} ({f['severity']}){count}{sup}  {f['id']}"))
    lines = [_header(view, paint)]

    def walk(nid: str, prefix: str, last: bool, depth: int) -> None:
        n = view.nodes[nid]
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        role = view.roles.get(nid, "")
        text = proc_line(n) + ("   <- trace root" if role == "root" else "")
        style = "dim" if role == "context" else ("bold" if role in ("root", "subject") else "")
        lines.append(prefix + branch + paint(style, text))
        sub = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for sev, m in marks.get(nid, []):
            lines.append(sub + "   " + paint(sev, m))
        for style, d in _did_lines(view, nid, idx):
            lines.append(sub + "   " + paint(style, d))
        ch = [_skip_copy(view, idx, marks, k) for k in idx["kids"].get(nid, [])
              if k in view.nodes]
        for i, k in enumerate(ch):
            walk(k, sub, i == len(ch) - 1, depth + 1)

    tops = [n for n in view.nodes.values()
            if n.kind == "process" and n.id not in idx["has_parent"]]
    for top in sorted(tops, key=lambda n: n.start):
        walk(top.id, "", True, 0)
    if view.truncated:
        lines.append(paint("dim", f"(truncated: more than {len(view.nodes)} nodes)"))
    return "\n".join(lines)


def _skip_copy(view: TraceView, idx: dict[str, Any], marks: dict[str, Any], nid: str) -> str:
    """A fork copy that only exec'd something else is shown as what it exec'd."""
    n = view.nodes[nid]
    kids = [k for k in idx["kids"].get(nid, []) if k in view.nodes]
    if (n.via == "spawned" and not n.attrs.get("snapshot") and len(kids) == 1
            and view.nodes[kids[0]].via == "exec" and nid not in marks
            and not idx["extra"].get(nid) and view.roles.get(nid) not in ("root", "subject")):
        return kids[0]
    return nid


def _header(view: TraceView, paint: Callable[[str, str], str]) -> str:
    s = view.summary
    if view.kind != "trace":
        return paint("bold", f"process {view.id}  findings={len(view.findings)}")
    c = s.get("counts") or {}
    head = (f"trace {view.id}  score={s.get('score', '?')} (threshold {s.get('threshold', '?')})"
            f"  root={view.root} ({s.get('root_kind', '?')})")
    rest = (f"  rules: {', '.join(s.get('rules', {}))}\n"
            f"  {ts(s.get('first', 0), True)} .. {ts(s.get('last', 0), True)}  "
            f"findings={len(view.findings)} processes={c.get('processes', '?')} "
            f"connections={c.get('connections', '?')} files={c.get('files', '?')} "
            f"alerts={c.get('alerts', '?')}")
    if s.get("suppressed"):
        rest += f"\n  suppressed by policy '{s['suppressed']}' (score zeroed)"
    return paint("bold", head) + "\n" + rest


# -- graphviz --------------------------------------------------------------------------------

def container_colors(view: TraceView) -> dict[str, str]:
    """Fill color per container id ('' is the host), in order of first appearance."""
    colors: dict[str, str] = {"": HOST_COLOR}
    for n in sorted(view.nodes.values(), key=lambda n: (n.start, n.id)):
        ctr = n.attrs.get("container_id") or ""
        if ctr not in colors:
            colors[ctr] = PALETTE[(len(colors) - 1) % len(PALETTE)]
    return colors


def render_dot(view: TraceView) -> str:
    """Graphviz source: shapes by node kind, colors by container, findings highlighted."""
    colors = container_colors(view)
    flagged: dict[str, list[dict[str, Any]]] = {}
    for f in view.findings:
        flagged.setdefault(f["process_id"], []).append(f)
    out = ["digraph trace {",
           ('  graph [rankdir=LR, fontname="Helvetica", fontsize=11, '
            f'label="{_esc(_title(view))}", labelloc=t];'),
           '  node [fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    names = {}
    for n in view.nodes.values():
        if n.attrs.get("container_id"):
            names.setdefault(n.attrs["container_id"], container_label(n))
    for n in sorted(view.nodes.values(), key=lambda n: (n.start, n.id)):
        out.append("  " + _dot_node(n, colors, view.roles.get(n.id, ""), n.id in flagged))
    out += _dot_edges(view)
    for pid_node, fs in flagged.items():
        for f in fs:
            fid = f["id"]
            count = f" x{f['count']}" if f.get("count", 1) > 1 else ""
            sup = "\\n(suppressed)" if f.get("suppressed") else ""
            color = SEVERITY_COLORS.get(f["severity"], "#d93025")
            out.append(f'  "{fid}" [shape=note, style=filled, fillcolor="#fde2e1", '
                       f'color="{color}", fontcolor="{color}", '
                       f'label="{_esc(f["rule"])}\\n{f["severity"]}{count}{sup}"];')
            out.append(f'  "{fid}" -> "{pid_node}" [style=dashed, color="{color}", '
                       'arrowhead=none];')
    out += _legend(colors, names)
    out.append("}")
    return "\n".join(out)


def _title(view: TraceView) -> str:
    s = view.summary
    if view.kind == "trace":
        return f"trace {view.id}  score {s.get('score', '?')}  ({s.get('root_kind', '?')} root)"
    return f"process {view.id}"


def _dot_node(n: Node, colors: dict[str, str], role: str, flagged: bool) -> str:
    fill = colors.get(n.attrs.get("container_id") or "", HOST_COLOR)
    nid = _esc(n.id)
    if n.kind == "process":
        ctr = container_label(n)
        label = (f"{_esc(n.name or '?')}[{n.pid}]  {_esc(user_of(n))}\\n"
                 f"{_esc(command(n)[:70])}\\n{ts(n.start)}"
                 + (f"  [{_esc(ctr)}]" if ctr else ""))
        border = ', color="#d93025", penwidth=3' if flagged else (
            ', penwidth=2' if role == "root" else "")
        style = "filled,rounded" + (",dashed" if role == "context" else "")
        return (f'"{nid}" [shape=box, style="{style}", fillcolor="{fill}", '
                f'label="{label}"{border}];')
    if n.kind in ("connection", "listener"):
        inbound = n.kind == "listener" or n.attrs.get("direction") == "in"
        color = "#188038" if inbound else "#1a73e8"
        shape = "hexagon" if n.kind == "listener" else "ellipse"
        return (f'"{nid}" [shape={shape}, style=filled, fillcolor="{fill}", color="{color}", '
                f'label="{_esc(conn_line(n))}"];')
    if n.kind == "file":
        return (f'"{nid}" [shape=folder, style=filled, fillcolor="{fill}", '
                f'label="{_esc(n.attrs.get("path") or n.id)}"];')
    if n.kind == "alert":
        text = alert_line(n)[:90]
        return (f'"{nid}" [shape=octagon, style=filled, fillcolor="#fff4ce", color="#e37400", '
                f'label="{_esc(text)}"];')
    return f'"{nid}" [shape=box3d, style=filled, fillcolor="{fill}", label="{_esc(n.kind)}"];'


def _dot_edges(view: TraceView) -> list[str]:
    out = []
    for e in view.edges:
        src, dst = _esc(e.src), _esc(e.dst)
        if e.kind == "accept":  # inbound: from the connection into the process
            out.append(f'  "{dst}" -> "{src}" [label="accept", color="#188038"];')
        elif e.kind == "connect":
            out.append(f'  "{src}" -> "{dst}" [label="connect", color="#1a73e8"];')
        elif e.kind == "peer":
            if e.src < e.dst:  # peer edges come in pairs; draw one
                out.append(f'  "{src}" -> "{dst}" [dir=both, style=dashed, label="peer"];')
        elif e.kind == "alerted":
            out.append(f'  "{src}" -> "{dst}" [label="alerted", color="#e37400"];')
        else:
            out.append(f'  "{src}" -> "{dst}" [label="{_esc(e.kind)}"];')
    return out


def _legend(colors: dict[str, str], names: dict[str, str]) -> list[str]:
    out = ["  subgraph cluster_legend {", '    label="legend"; fontsize=10; color="#999999";']
    for i, (ctr, color) in enumerate(colors.items()):
        label = "host" if not ctr else f"container {names.get(ctr) or ctr[:12]}"
        out.append(f'    "legend_{i}" [shape=box, style=filled, fillcolor="{color}", '
                   f'label="{_esc(label)}"];')
    out.append('    "legend_in" [shape=ellipse, color="#188038", label="inbound connection"];')
    out.append('    "legend_out" [shape=ellipse, color="#1a73e8", label="outbound connection"];')
    out.append('    "legend_f" [shape=note, style=filled, fillcolor="#fde2e1", color="#d93025", '
               'label="finding"];')
    out.append("  }")
    return out


def _esc(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

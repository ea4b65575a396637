"""Text tree and graphviz renderings of a trace view."""

from __future__ import annotations

import time

from spyderd.model import Node
from spyderd.traces.build import TraceView


def _ts(ns: int) -> str:
    if not ns:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9)) + f".{ns // 1_000_000 % 1000:03d}"


def _proc_line(n: Node) -> str:
    args = " ".join(n.attrs.get("args") or []) or n.attrs.get("exe", "")
    ctr = n.attrs.get("container_id") or ""
    where = f" container={ctr[:12]}" if ctr else ""
    end = ""
    if n.end and "exit_code" in n.attrs:
        sig = n.attrs.get("exit_signal")
        end = f" exit={n.attrs['exit_code']}" + (f" sig={sig}" if sig else "")
    return f"{_ts(n.start)} {n.name or '?'}[{n.pid}] uid={n.uid}{where} {args}{end}"


def _conn_line(n: Node) -> str:
    a = n.attrs
    if n.kind == "listener":
        return f"listen {a.get('local_ip')}:{a.get('local_port')}"
    arrow = "->" if a.get("direction") == "out" else "<-"
    res = a.get("result", 0)
    status = "ok" if res == 0 else f"failed({res})"
    verb = "connect" if a.get("direction") == "out" else "accept"
    return (f"{verb} {a.get('local_ip')}:{a.get('local_port')} {arrow} "
            f"{a.get('remote_ip')}:{a.get('remote_port')} {status}")


def render_tree(view: TraceView) -> str:
    """Indented causal tree from the top ancestor, findings marked inline with '!!'."""
    kids: dict[str, list[str]] = {}
    conns: dict[str, list[Node]] = {}
    peers: dict[str, list[str]] = {}
    has_parent = set()
    for e in view.edges:
        if e.kind in ("spawned", "exec"):
            kids.setdefault(e.src, []).append(e.dst)
            has_parent.add(e.dst)
        elif e.kind in ("connect", "accept", "listen") and e.dst in view.nodes:
            conns.setdefault(e.src, []).append(view.nodes[e.dst])
        elif e.kind == "peer":
            peers.setdefault(e.src, []).append(e.dst)
    marks: dict[str, list[str]] = {}
    for f in view.findings:
        marks.setdefault(f["process_id"], []).append(f"!! {f['rule']} ({f['severity']})")
    lines = [f"{view.kind} {view.id}  root={view.root}  findings={len(view.findings)}"]

    def walk(nid: str, prefix: str, last: bool, depth: int) -> None:
        n = view.nodes[nid]
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + _proc_line(n))
        sub = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for m in marks.get(nid, []):
            lines.append(sub + "   " + m)
        for c in conns.get(nid, []):
            line = sub + "   · " + _conn_line(c)
            for p in peers.get(c.id, []):
                owner = view.nodes.get(view.nodes[p].attrs.get("process_id", "")) \
                    if p in view.nodes else None
                if owner is not None:
                    line += f"  (peer {owner.name}[{owner.pid}])"
            lines.append(line)
        ch = [k for k in kids.get(nid, []) if k in view.nodes]
        for i, k in enumerate(ch):
            walk(k, sub, i == len(ch) - 1, depth + 1)

    tops = [n for n in view.nodes.values() if n.kind == "process" and n.id not in has_parent]
    for top in sorted(tops, key=lambda n: n.start):
        walk(top.id, "", True, 0)
    return "\n".join(lines)


_PALETTE = ["#e8f0fe", "#fde7e9", "#e6f4ea", "#fef7e0", "#f3e8fd", "#e0f7fa"]


def render_dot(view: TraceView) -> str:
    """Graphviz: processes as boxes, connections as ellipses; each container its own color."""
    colors: dict[str, str] = {"": "#ffffff"}
    flagged = {f["process_id"] for f in view.findings}
    out = ["digraph trace {", '  rankdir=LR; node [fontname="monospace", fontsize=10];']
    for n in view.nodes.values():
        ctr = n.attrs.get("container_id", "")
        if ctr not in colors:
            colors[ctr] = _PALETTE[(len(colors) - 1) % len(_PALETTE)]
        fill = colors[ctr]
        if n.kind == "process":
            label = f"{n.name}[{n.pid}]\\n{' '.join(n.attrs.get('args') or [])[:60]}"
            border = ', color="red", penwidth=3' if n.id in flagged else ""
            out.append(f'  "{n.id}" [shape=box, style=filled, fillcolor="{fill}", '
                       f'label="{_esc(label)}"{border}];')
        else:
            out.append(f'  "{n.id}" [shape=ellipse, style=filled, fillcolor="{fill}", '
                       f'label="{_esc(_conn_line(n))}"];')
    for e in view.edges:
        style = ', style=dashed' if e.kind == "peer" else ""
        out.append(f'  "{e.src}" -> "{e.dst}" [label="{e.kind}"{style}];')
    out.append("}")
    return "\n".join(out)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")

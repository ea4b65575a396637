"""Graphviz picture of a trace view, laid out to fit a screen.

The picture reads top-down like the tree. Fork copies are folded into the image that
replaced them (see `render.fork_copies`). The host and each container are coloured
clusters, with each container inside the host it ran on. Inbound connections are green
arrows into the process that accepted them; outbound ones are blue arrows out of the process
that made them. Processes with findings have a red border and their rules written in. The
title holds a legend.

A shell that runs many one-off commands would put them all on one very wide rank. Instead,
leaf children are staggered over a few ranks (what graphviz's `unflatten` does), so a
30-process trace stays under 1,600 px wide at 100 %.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spyderd.model import Node
from spyderd.traces.build import PROC_EDGES, TraceView
from spyderd.traces.render import (
    command,
    container_label,
    edge_index,
    fork_copies,
    ts,
    user_of,
)

HOST_COLOR = "#f2f2f2"
PALETTE = ["#cfe2ff", "#d1f2d9", "#ffe8b3", "#ead7ff", "#c8f0f0", "#ffd6e7", "#e2f0b8",
           "#ffd9c7"]
SEVERITY_COLORS = {"critical": "#b00020", "high": "#d93025", "medium": "#e37400",
                   "low": "#1a73e8", "info": "#5f6368"}
IN_COLOR = "#188038"
OUT_COLOR = "#1a73e8"
FILE_COLOR = "#a142f4"
ALERT_COLOR = "#e37400"
GREY = "#5f6368"
MAX_PER_ROW = 3  # leaf children of one node on one rank before they are staggered
WRAP = 30  # characters per line of text inside a node
MAX_LINES = 2  # lines of a command shown in a node
MAX_RULES = 3  # finding lines shown in a node
MAX_CONNS = 2  # connections of one process leading nowhere else before they are grouped
MAX_GROUP_ROWS = 10  # commands listed in a group box
LEGEND_PER_ROW = 5


def container_colors(view: TraceView) -> dict[str, str]:
    """Fill color per container id ('' is the host), in order of first appearance."""
    colors: dict[str, str] = {"": HOST_COLOR}
    for n in sorted(view.nodes.values(), key=lambda n: (n.start, n.id)):
        ctr = n.attrs.get("container_id") or ""
        if ctr not in colors:
            colors[ctr] = PALETTE[(len(colors) - 1) % len(PALETTE)]
    return colors


@dataclass
class Picture:
    """What the picture draws: nodes (fork copies folded, plain leaves grouped) and edges."""

    shown: dict[str, Node]
    copies: dict[str, str]  # fork copy id -> the image drawn in its place
    groups: dict[str, list[Node]]  # group node id -> the plain one-off commands it lists
    edges: list[tuple[str, str, str]]
    flagged: dict[str, list[dict[str, Any]]]

    def drawn_as(self, node_id: str) -> str:
        """The id of the box that shows `node_id` (its own, its image's or its group's)."""
        nid = self.copies.get(node_id, node_id)
        return self._member.get(nid, nid)

    def __post_init__(self) -> None:
        self._member = {m.id: gid for gid, ms in self.groups.items() for m in ms}


def picture(view: TraceView) -> Picture:
    idx = edge_index(view)
    copies = fork_copies(view, idx)
    shown = {nid: n for nid, n in view.nodes.items() if nid not in copies}
    flagged: dict[str, list[dict[str, Any]]] = {}
    for f in view.findings:
        flagged.setdefault(copies.get(f["process_id"], f["process_id"]), []).append(f)
    edges = drawn_edges(view, copies)
    groups = _plain_leaves(view, shown, edges, flagged)
    member = {m.id: gid for gid, ms in groups.items() for m in ms}
    for gid, ms in groups.items():
        shown[gid] = Node(id=gid, kind="group", start=ms[0].start, attrs=dict(ms[0].attrs))
        for m in ms:
            del shown[m.id]
    out, seen = [], set()
    for src, dst, kind in edges:
        e = (member.get(src, src), member.get(dst, dst), kind)
        if e not in seen:
            seen.add(e)
            out.append(e)
    return Picture(shown, copies, groups, out, flagged)


def _plain_leaves(view: TraceView, shown: dict[str, Node], edges: list[tuple[str, str, str]],
                  flagged: dict[str, Any]) -> dict[str, list[Node]]:
    """Leaves with nothing else to show, grouped per owner: more than MAX_PER_ROW one-off
    commands of one parent (`id`, `uname -a` ... below a web shell), or more than
    MAX_CONNS connections of one process that lead nowhere else in the trace (the other
    requests a server answered)."""
    degree: dict[str, int] = {}
    owner: dict[str, tuple[str, str]] = {}
    for src, dst, kind in edges:
        degree[src] = degree.get(src, 0) + 1
        degree[dst] = degree.get(dst, 0) + 1
        if kind in PROC_EDGES or kind in ("connect", "listen", "accept"):
            owner[dst] = (src, kind)
    by_owner: dict[tuple[str, str, str], list[Node]] = {}
    for nid, n in shown.items():
        if nid not in owner or degree.get(nid) != 1 or nid in flagged or view.roles.get(nid):
            continue
        if n.kind not in ("process", "connection"):
            continue
        src, kind = owner[nid]
        key = (src, kind if n.kind == "connection" else "process",
               n.attrs.get("container_id") or "")
        by_owner.setdefault(key, []).append(n)
    return {f"group:{kind}:{src}:{ctr[:12]}": sorted(ns, key=lambda n: (n.start, n.id))
            for (src, kind, ctr), ns in by_owner.items()
            if len(ns) > (MAX_PER_ROW if kind == "process" else MAX_CONNS)}


def render_dot(view: TraceView, pic: Picture | None = None) -> str:
    """Graphviz source of the picture (see the module docstring)."""
    pic = pic or picture(view)
    colors = container_colors(view)
    idx = edge_index(view)
    out = ["digraph trace {",
           ('  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.2, ranksep=0.3,'
            ' labelloc=t, labeljust=l, margin=0.1,'),
           f"    label=<{_legend(view, colors)}>];",
           '  node [fontname="Helvetica", fontsize=10, margin="0.06,0.03"];',
           f'  edge [fontname="Helvetica", fontsize=8, color="{GREY}", arrowsize=0.6];']
    for m_i, (machine, ctrs) in enumerate(_clusters(view, pic.shown, idx).items()):
        out += _host_cluster(view, pic, m_i, machine, ctrs, colors)
    out += _edge_lines(pic.edges, _stagger(pic.edges, pic.shown))
    out.append("}")
    return "\n".join(out)


# -- structure ---------------------------------------------------------------------------------

def drawn_edges(view: TraceView, copies: dict[str, str]) -> list[tuple[str, str, str]]:
    """(src, dst, kind) as drawn: fork copies replaced by their image, each pair once."""
    out, seen = [], set()
    for e in view.edges:
        src, dst = copies.get(e.src, e.src), copies.get(e.dst, e.dst)
        if e.src in copies and e.dst == copies[e.src]:
            continue  # the copy's own exec: folded away
        if src == dst or src not in view.nodes or dst not in view.nodes:
            continue
        if e.kind == "peer" and (dst, src, "peer") in seen:
            continue  # peer edges come in pairs; draw one
        if (src, dst, e.kind) not in seen:
            seen.add((src, dst, e.kind))
            out.append((src, dst, e.kind))
    return out


def _owner(view: TraceView, n: Node, idx: dict[str, Any]) -> Node | None:
    """The process a connection, file or alert belongs to (for its cluster)."""
    if n.kind == "process":
        return n
    owner = view.nodes.get(n.attrs.get("process_id", ""))
    if owner is not None:
        return owner
    for src, did in idx["extra"].items():
        if any(other == n.id for _, other in did):
            return view.nodes.get(src)
    return None


def _clusters(view: TraceView, shown: dict[str, Node],
              idx: dict[str, Any]) -> dict[str, dict[str, list[Node]]]:
    """machine id -> container id ('' for the host itself) -> nodes drawn there."""
    out: dict[str, dict[str, list[Node]]] = {}
    for n in sorted(shown.values(), key=lambda n: (n.start, n.id)):
        owner = _owner(view, n, idx) or n
        machine = owner.attrs.get("machine_id") or n.attrs.get("machine_id") or ""
        ctr = owner.attrs.get("container_id") or ""
        out.setdefault(machine, {}).setdefault(ctr, []).append(n)
    return out


def _stagger(edges: list[tuple[str, str, str]], shown: dict[str, Node]) -> dict[tuple, int]:
    """minlen per edge: a node's leaf children spread over ranks, MAX_PER_ROW per rank."""
    has_out = {s for s, _, k in edges if k != "peer"}
    below: dict[str, list[tuple[str, str, str]]] = {}
    for e in edges:
        src, _dst, kind = e
        if kind in ("peer", "executed-file", "accept"):
            continue  # drawn against the flow, or across: no rank of their own
        below.setdefault(src, []).append(e)
    out = {}
    for kids in below.values():
        leaves = [e for e in kids if e[1] not in has_out]
        if len(leaves) <= MAX_PER_ROW:
            continue
        leaves.sort(key=lambda e: shown[e[1]].start if e[1] in shown else 0)
        for i, e in enumerate(leaves):
            out[e] = 1 + i // MAX_PER_ROW
    return out


# -- nodes -------------------------------------------------------------------------------------

def _host_cluster(view: TraceView, pic: Picture, i: int, machine: str,
                  ctrs: dict[str, list[Node]], colors: dict[str, str]) -> list[str]:
    label = "host " + (machine[:12] if machine else "")
    out = [f"  subgraph cluster_host_{i} {{",
           f'    label="{_esc(label.strip())}"; fontsize=9; fontcolor="{GREY}";',
           '    style="rounded,filled"; fillcolor="#fcfcfc"; color="#bdbdbd";']
    for n in ctrs.get("", []):
        out.append("    " + _node(view, pic, n, colors))
    for j, (ctr, nodes) in enumerate((c, ns) for c, ns in ctrs.items() if c):
        color = colors.get(ctr, PALETTE[0])
        name = next((container_label(n) for n in nodes if container_label(n)), ctr[:12])
        out += [f"    subgraph cluster_host_{i}_ctr_{j} {{",
                f'      label="container {_esc(name)}"; fontsize=9;',
                (f'      style="rounded,filled"; fillcolor="{_tint(color)}"; '
                 f'color="{_shade(color)}"; penwidth=1.5;')]
        out += ["      " + _node(view, pic, n, colors) for n in nodes]
        out.append("    }")
    out.append("  }")
    return out


def _node(view: TraceView, pic: Picture, n: Node, colors: dict[str, str]) -> str:
    fill = colors.get(n.attrs.get("container_id") or "", HOST_COLOR)
    nid = _esc(n.id)
    if n.kind == "process":
        return _process_node(n, fill, view.roles.get(n.id, ""), pic.flagged.get(n.id, []))
    if n.kind == "group":
        return _group_node(n.id, pic.groups[n.id], fill)
    if n.kind == "listener":
        return (f'"{nid}" [shape=hexagon, style=filled, fillcolor="{fill}", color="{IN_COLOR}",'
                f' fontcolor="{IN_COLOR}", label="listen :{n.attrs.get("local_port")}"];')
    if n.kind == "connection":
        return _conn_node(n, fill)
    if n.kind == "file":
        path = n.attrs.get("path") or n.id
        return (f'"{nid}" [shape=folder, style=filled, fillcolor="{fill}", color="{FILE_COLOR}",'
                f' label="{_esc(_wrap_text(path))}"];')
    if n.kind == "alert":
        who = n.attrs.get("identifier") or n.attrs.get("unit") or "?"
        text = f"alert <{n.attrs.get('priority', '?')}> {who}: {n.attrs.get('message', '')}"
        return (f'"{nid}" [shape=octagon, style=filled, fillcolor="#fff4ce", '
                f'color="{ALERT_COLOR}", label="{_esc(_wrap_text(text))}"];')
    return f'"{nid}" [shape=box3d, style=filled, fillcolor="{fill}", label="{_esc(n.kind)}"];'


def _process_node(n: Node, fill: str, role: str, findings: list[dict[str, Any]]) -> str:
    head = f"<b>{_h(n.name or '?')}[{n.pid}]</b> <font color=\"{GREY}\">{_h(user_of(n))}</font>"
    rows = [head]
    rows += [f'<font point-size="9">{_h(line)}</font>'
             for line in wrap(command(n), WRAP, MAX_LINES)]
    rows.append(f'<font point-size="8" color="{GREY}">{ts(n.start)}'
                + (" · trace root" if role == "root" else "") + "</font>")
    for f in findings[:MAX_RULES]:
        color = SEVERITY_COLORS.get(f["severity"], SEVERITY_COLORS["high"])
        count = f" x{f['count']}" if f.get("count", 1) > 1 else ""
        sup = " (suppressed)" if f.get("suppressed") else ""
        text = f"! {f['rule']} ({f['severity']}{count}){sup}"
        rows += [f'<font color="{color}"><b>{_h(line)}</b></font>'
                 for line in wrap(text, WRAP, 2)]
    if len(findings) > MAX_RULES:
        rows.append(f'<font color="{SEVERITY_COLORS["high"]}">+{len(findings) - MAX_RULES} '
                    "more findings</font>")
    label = _table(rows)
    style = "filled,rounded" + (",dashed" if role == "context" else "")
    if findings:
        border = f', color="{_worst_color(findings)}", penwidth=3'
    else:
        border = ", penwidth=2" if role == "root" else ""
    return f'"{_esc(n.id)}" [shape=box, style="{style}", fillcolor="{fill}", label=<{label}>{border}];'


def _group_node(gid: str, members: list[Node], fill: str) -> str:
    if members[0].kind == "connection":
        inbound = members[0].attrs.get("direction") != "out"
        color = IN_COLOR if inbound else OUT_COLOR
        what = f"{len(members)} {'inbound' if inbound else 'outbound'} connections"
        rows = [f'<font color="{color}"><b>{what}</b></font>']
        lines = [_conn_text(m).replace("\n", " ") for m in members]
    else:
        color = "black"
        rows = [f"<b>{len(members)} commands</b>"]
        lines = [f"{m.name or '?'}[{m.pid}] {command(m)}" for m in members]
    rows += [f'<font point-size="9">{_h(_cut(line, WRAP + 6))}</font>'
             for line in lines[:MAX_GROUP_ROWS]]
    if len(members) > MAX_GROUP_ROWS:
        rows.append(f'<font point-size="9" color="{GREY}">+{len(members) - MAX_GROUP_ROWS} '
                    "more</font>")
    return (f'"{_esc(gid)}" [shape=box, style="filled,rounded", fillcolor="{fill}", '
            f'color="{color}", label=<{_table(rows)}>];')


def _table(rows: list[str]) -> str:
    return ('<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
            + "".join(f'<tr><td align="left">{r}</td></tr>' for r in rows) + "</table>")


def _conn_text(n: Node) -> str:
    a = n.attrs
    res = a.get("result", 0)
    failed = "" if res == 0 else f"\nfailed ({res})"
    if a.get("direction") == "out":
        return f"to {a.get('remote_ip')}:{a.get('remote_port')}{failed}"
    return f"from {a.get('remote_ip')}:{a.get('remote_port')}\non :{a.get('local_port')}{failed}"


def _conn_node(n: Node, fill: str) -> str:
    out = n.attrs.get("direction") == "out"
    color, shape = (OUT_COLOR, "rarrow") if out else (IN_COLOR, "larrow")
    return (f'"{_esc(n.id)}" [shape={shape}, style=filled, fillcolor="{fill}", '
            f'color="{color}", fontcolor="{color}", label="{_esc(_conn_text(n))}"];')


def _worst_color(findings: list[dict[str, Any]]) -> str:
    order = list(SEVERITY_COLORS)
    worst = min((f["severity"] for f in findings),
                key=lambda s: order.index(s) if s in order else len(order))
    return SEVERITY_COLORS.get(worst, SEVERITY_COLORS["high"])


# -- edges and legend ----------------------------------------------------------------------------

_EDGE_STYLE = {
    "spawned": "",
    "exec": 'style=dashed',
    "connect": f'color="{OUT_COLOR}", penwidth=1.4',
    "accept": f'color="{IN_COLOR}", penwidth=1.4',
    "listen": f'color="{IN_COLOR}", style=dotted',
    "peer": 'dir=both, style=dashed, constraint=false, color="#9aa0a6"',
    "alerted": f'color="{ALERT_COLOR}"',
    "executed-file": f'color="{FILE_COLOR}", label="exec"',
}


def _edge_lines(edges: Iterable[tuple[str, str, str]], minlen: dict[tuple, int]) -> list[str]:
    out = []
    for e in edges:
        src, dst, kind = e
        if kind == "accept":  # inbound: from the connection into the process
            src, dst = dst, src
        style = _EDGE_STYLE.get(kind, f'color="{FILE_COLOR}", label="{_esc(kind)}"')
        if e in minlen and minlen[e] > 1:
            style += (", " if style else "") + f"minlen={minlen[e]}"
        out.append(f'  "{_esc(src)}" -> "{_esc(dst)}"' + (f" [{style}]" if style else "") + ";")
    return out


def _legend(view: TraceView, colors: dict[str, str]) -> str:
    """The title (trace, score, root) and a legend of colours and shapes, as an HTML label."""
    names = {}
    for n in view.nodes.values():
        if n.attrs.get("container_id"):
            names.setdefault(n.attrs["container_id"], container_label(n))
    cells = []
    for ctr, color in colors.items():
        label = "host" if not ctr else f"container {names.get(ctr) or ctr[:12]}"
        cells.append(f'<td bgcolor="{color}" border="1" color="#bdbdbd">{_h(label)}</td>')
    red = SEVERITY_COLORS["high"]
    inbound, outbound = "&lt; inbound connection", "outbound connection &gt;"
    cells += [f'<td border="1" color="{IN_COLOR}"><font color="{IN_COLOR}">{inbound}</font></td>',
              f'<td border="1" color="{OUT_COLOR}"><font color="{OUT_COLOR}">{outbound}</font></td>',
              f'<td border="1" color="{red}"><font color="{red}"><b>! finding</b></font></td>',
              f'<td border="1" color="{FILE_COLOR}">file</td>',
              '<td border="1" color="#bdbdbd">- - - exec (new program, same pid)</td>']
    rows = [cells[i:i + LEGEND_PER_ROW] for i in range(0, len(cells), LEGEND_PER_ROW)]
    title = f'<tr><td align="left"><b>{_h(_title(view))}</b></td></tr>'
    body = "".join('<tr><td align="left"><table border="0" cellspacing="3" cellpadding="2">'
                   f'<tr>{"".join(r)}</tr></table></td></tr>' for r in rows)
    return f'<table border="0" cellspacing="0" cellpadding="0">{title}{body}</table>'


def _title(view: TraceView) -> str:
    s = view.summary
    if view.kind != "trace":
        return f"process {view.id}"
    root = view.nodes.get(view.root)
    who = f"{root.name}[{root.pid}]" if root else view.root
    who = s.get("root_label") or who
    return (f"trace {view.id}  score {s.get('score', '?')}  {len(s.get('rules', {}))} rules  "
            f"root: {who} ({s.get('root_kind', '?')})")


# -- text helpers --------------------------------------------------------------------------------

def wrap(text: str, width: int, lines: int) -> list[str]:
    """`text` cut into at most `lines` lines of `width` characters, the last marked when cut."""
    out = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][:width - 1] + "…"
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _wrap_text(text: str) -> str:
    return "\n".join(wrap(text, WRAP, 3))


def _tint(color: str, keep: float = 0.35) -> str:
    """`color` mixed with white (cluster backgrounds lighter than their nodes)."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * keep):02x}" for c in rgb)


def _shade(color: str, keep: float = 0.6) -> str:
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * keep):02x}" for c in rgb)


def _printable(s: str) -> str:
    """Control characters (from a command line) would break graphviz's XML: shown as '?'."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in str(s))


def _h(s: str) -> str:
    """Escape for graphviz HTML-like labels."""
    return (_printable(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", " "))


def _esc(s: str) -> str:
    """Escape for a quoted graphviz string (`\\n` in `s` kept as a line break)."""
    return (_printable(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))

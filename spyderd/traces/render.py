"""Text tree of a trace view, and the one-line descriptions the other renderings share.

The tree reads top-down like `ps --forest`: each process with its start time, pid, user,
container and command line; under it what it did (connections, file writes, alerts) and,
marked `!!`, the findings on it. Fork copies that only exec'd something else are shown as
what they exec'd (see `fork_copies`). The pictures live in `dot` and `html`.
"""

from __future__ import annotations

import pwd
import shlex
import time
from collections.abc import Callable
from typing import Any

from spyderd.model import Node
from spyderd.traces.build import TraceView

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


def edge_index(view: TraceView) -> dict[str, Any]:
    """Process children, what each node did (connections, files, alerts) and local peers."""
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


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, the cut marked with `…` (0: no limit)."""
    return text if width <= 0 or len(text) <= width else text[:max(width - 1, 0)] + "…"


def _room(width: int, used: int) -> int:
    """What is left of a line `width` wide after `used` columns of tree (0: no limit)."""
    return max(width - used, 12) if width else 0


def render_tree(view: TraceView, color: bool = False, width: int = 0) -> str:
    """Indented causal tree, findings marked inline with '!!'; with `width`, every line is
    cut to it (`…` marks the cut), as systemctl does on a terminal."""
    paint = _Paint(color)
    idx = edge_index(view)
    marks: dict[str, list[tuple[str, str]]] = {}
    for f in view.findings:
        count = f" x{f['count']}" if f.get("count", 1) > 1 else ""
        sup = f" [suppressed: {f['suppressed']}]" if f.get("suppressed") else ""
        marks.setdefault(f["process_id"], []).append(
            (f["severity"], f"!! {f['rule']} ({f['severity']}){count}{sup}  {f['id']}"))
    copies = fork_copies(view, idx)
    lines = [_header(view, paint, width)]

    def walk(nid: str, prefix: str, last: bool, depth: int) -> None:
        n = view.nodes[nid]
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        role = view.roles.get(nid, "")
        text = proc_line(n) + ("   <- trace root" if role == "root" else "")
        style = "dim" if role == "context" else ("bold" if role in ("root", "subject") else "")
        lead = prefix + branch
        lines.append(lead + paint(style, fit(text, _room(width, len(lead)))))
        sub = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        room = _room(width, len(sub) + 3)
        for sev, m in marks.get(nid, []):
            lines.append(sub + "   " + paint(sev, fit(m, room)))
        for style, d in _did_lines(view, nid, idx):
            lines.append(sub + "   " + paint(style, fit(d, room)))
        ch = [copies.get(k, k) for k in idx["kids"].get(nid, []) if k in view.nodes]
        for i, k in enumerate(ch):
            walk(k, sub, i == len(ch) - 1, depth + 1)

    tops = [n for n in view.nodes.values()
            if n.kind == "process" and n.id not in idx["has_parent"]]
    for top in sorted(tops, key=lambda n: n.start):
        walk(top.id, "", True, 0)
    if view.truncated:
        lines.append(paint("dim", f"(truncated: more than {len(view.nodes)} nodes)"))
    return "\n".join(lines)


def fork_copies(view: TraceView, idx: dict[str, Any] | None = None) -> dict[str, str]:
    """Fork copies that only exec'd something else -> the image that replaced them.

    `sh` forks and the copy execs `id`: the copy ran no code of its own worth showing, so the
    tree and the pictures show `id` where the copy was. A copy is kept when it has findings,
    did something itself (connections, files, alerts), is the root or a subject, or has
    more than one child.
    """
    idx = idx or edge_index(view)
    flagged = {f["process_id"] for f in view.findings}
    out = {}
    for nid, n in view.nodes.items():
        kids = [k for k in idx["kids"].get(nid, []) if k in view.nodes]
        if (n.kind == "process" and n.via == "spawned" and not n.attrs.get("snapshot")
                and len(kids) == 1 and view.nodes[kids[0]].via == "exec"
                and nid not in flagged and not idx["extra"].get(nid)
                and view.roles.get(nid) not in ("root", "subject")):
            out[nid] = kids[0]
    return out


def _header(view: TraceView, paint: Callable[[str, str], str], width: int = 0) -> str:
    s = view.summary
    if view.kind != "trace":
        return paint("bold", f"process {view.id}  findings={len(view.findings)}")
    c = s.get("counts") or {}
    head = (f"trace {view.id}  score={s.get('score', '?')} (threshold {s.get('threshold', '?')})"
            f"  root: {s.get('root_label') or view.root} ({s.get('root_kind', '?')})")
    rest = (f"  rules: {', '.join(s.get('rules', {}))}\n"
            f"  {ts(s.get('first', 0), True)} .. {ts(s.get('last', 0), True)}  "
            f"findings={len(view.findings)} processes={c.get('processes', '?')} "
            f"connections={c.get('connections', '?')} files={c.get('files', '?')} "
            f"alerts={c.get('alerts', '?')}")
    if s.get("suppressed"):
        rest += f"\n  suppressed by policy '{s['suppressed']}' (score zeroed)"
    rest = "\n".join(fit(line, width) for line in rest.split("\n"))
    return paint("bold", fit(head, width)) + "\n" + rest

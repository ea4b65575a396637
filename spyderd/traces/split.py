"""One trace per attack: requests of a long-lived server split, causal joins merge again.

A web server that runs for months and is attacked again and again must not grow one giant
trace. Below an ``inbound`` root (a network server) that had accepted a connection, the first
image on the path from the server down to a finding's subject is the **request**: the
child that handled one inbound connection (a forked handler, a CGI process, the shell a web
shell started); below a pre-forked worker that accepts connections itself, the worker's
child is. Each request
that leads to findings is its own trace; its key is the root and the request. Findings on
the server image itself share the root's own trace. Every root also splits on idle gaps:
after `findings.trace_idle` seconds without a finding, the same key starts a new trace.

Requests that are one attack are joined again, within the same root, when:

- a process of one executed a file that a process of the other wrote (a dropper
  downloaded in one request and run in the next), or
- processes of both connected out to the same address (the same C2 server).

Connections made by the server itself and by the request's first image (a server's worker
talking to its database on every request) do not count: they would join everything. The
later trace is merged into the earlier one; its record keeps `merged_into`, so
`spyderctl trace` on the old id shows the merged trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from spyderd.model import Node
from spyderd.traces.roots import Ancestry, Root, find_root


class LinkGraph(Ancestry, Protocol):
    """What the links need from the live graph."""

    def get(self, node_id: str) -> Node | None: ...
    def writer(self, node: Node) -> Node | None: ...
    def connections(self, node: Node) -> list[Node]: ...


@dataclass(frozen=True, slots=True)
class Links:
    """What ties a finding to other traces of its root beyond its own request."""

    writers: frozenset[str] = field(default_factory=frozenset)  # trace keys of file writers
    dsts: frozenset[str] = field(default_factory=frozenset)  # outbound "ip:port"


def unit_of(g: LinkGraph, root: Root) -> str:
    """The request below a server root: the first image below it on the subject's path,
    when the server had accepted a connection by then (a server's helper started at boot
    is no request). Below a pre-forked worker that accepts connections itself, the
    worker's child on the path is the request."""
    if root.kind != "inbound" or len(root.path) < 2:
        return ""
    head = root.path[1]
    if _accepted(g, head, head.end or root.path[-1].start) and len(root.path) > 2:
        return root.path[2].id  # a worker: its child handles the request
    return head.id if _accepted(g, root.node, head.start) else ""


def _accepted(g: LinkGraph, n: Node, by: int) -> bool:
    return any(c.attrs.get("direction") == "in" and c.start <= by for c in g.connections(n))


def trace_key(root_id: str, unit: str = "") -> str:
    """The key a trace is grouped and identified by (the root alone without a request)."""
    return f"{root_id}>{unit}" if unit else root_id


def links(g: LinkGraph, root: Root) -> Links:
    """Writers of files run on the subject's line, and where the line connected out."""
    writers, dsts = set(), set()
    server_exe = root.node.attrs.get("exe") or ""
    for i, p in enumerate(root.path[1:]):
        w = g.writer(p)
        if w is not None:
            wr = find_root(g, w)
            writers.add(trace_key(wr.node.id, unit_of(g, wr)))
        if i == 0 or (server_exe and p.attrs.get("exe") == server_exe):
            continue  # the request's first image or a copy of the server: routine traffic
        for c in g.connections(p):
            a = c.attrs
            if a.get("direction") == "out" and a.get("remote_port"):
                dsts.add(f"{a.get('remote_ip')}:{a.get('remote_port')}")
    return Links(frozenset(writers), frozenset(dsts))


def root_label(g: LinkGraph, root: Root, unit: str = "") -> str:
    """The root in the words an operator uses: `nginx on :80,:443 (request from
    10.0.0.5:51234)`, `sshd session of alice on pts/0`, `container web-1 (nginx:1.25)`,
    `cron.service`."""
    n, a = root.node, root.node.attrs
    name = n.name or "?"
    where = ""
    if a.get("container_id") and root.kind != "container":
        where = f" in container {a.get('container_name') or a['container_id'][:12]}"
    if root.kind == "inbound":
        ports = ",".join(f":{p}" for p in sorted(set(a.get("listen_ports") or [])))
        label = f"{name} on {ports}" if ports else f"{name} (server)"
        req = _request_from(g, root, unit)
        return label + where + (f" (request from {req})" if req else "")
    if root.kind == "session":
        who = a.get("login_user") or a.get("user") or str(n.uid)
        tty = f" on {a['tty']}" if a.get("tty") and a.get("tty") != "?" else ""
        return f"{name} session of {who}{tty}{where}"
    if root.kind == "container":
        image = f" ({a['container_image']})" if a.get("container_image") else ""
        return f"container {a.get('container_name') or a.get('container_id', '')[:12]}{image}"
    if root.kind == "service":
        return (systemd_unit(n) or f"{name} (service)") + where
    return name + where


def _request_from(g: LinkGraph, root: Root, unit: str) -> str:
    """Who the request came from: the connection the server accepted last before it."""
    head = g.get(unit) if unit else None
    if head is None:
        return ""
    accepted = [c for c in g.connections(root.node)
                if c.attrs.get("direction") == "in" and c.start <= head.start]
    if not accepted:
        return ""
    c = max(accepted, key=lambda c: c.start)
    return f"{c.attrs.get('remote_ip')}:{c.attrs.get('remote_port')}"


def systemd_unit(n: Node, proc: str = "/proc") -> str:
    """The systemd unit of a running process, from its cgroup (`cron.service`); '' if it is
    gone, or in no unit."""
    if n.end or n.pid <= 0:
        return ""
    try:
        text = Path(proc, str(n.pid), "cgroup").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        units = [p for p in path.split("/") if p.endswith((".service", ".scope"))]
        if units:
            return units[-1]
    return ""

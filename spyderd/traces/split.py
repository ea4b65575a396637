"""One trace per attack: requests of a long-lived server split, causal joins merge again.

A web server that runs for months and is attacked again and again must not grow one giant
trace. Below an ``inbound`` root (a network server), the first image on the path from the
server down to a finding's subject is the **request**: the child that handled one inbound
connection (a forked worker, a CGI process, the shell a web shell started). Each request
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
from typing import Protocol

from spyderd.model import Node
from spyderd.traces.roots import Ancestry, Root, find_root


class LinkGraph(Ancestry, Protocol):
    """What the links need from the live graph."""

    def writer(self, node: Node) -> Node | None: ...
    def connections(self, node: Node) -> list[Node]: ...


@dataclass(frozen=True, slots=True)
class Links:
    """What ties a finding to other traces of its root beyond its own request."""

    writers: frozenset[str] = field(default_factory=frozenset)  # trace keys of file writers
    dsts: frozenset[str] = field(default_factory=frozenset)  # outbound "ip:port"


def unit_of(root: Root) -> str:
    """The request below a server root: the first image below it on the subject's path."""
    if root.kind != "inbound" or len(root.path) < 2:
        return ""
    return root.path[1].id


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
            writers.add(trace_key(wr.node.id, unit_of(wr)))
        if i == 0 or (server_exe and p.attrs.get("exe") == server_exe):
            continue  # the request's first image or a copy of the server: routine traffic
        for c in g.connections(p):
            a = c.attrs
            if a.get("direction") == "out" and a.get("remote_port"):
                dsts.add(f"{a.get('remote_ip')}:{a.get('remote_port')}")
    return Links(frozenset(writers), frozenset(dsts))

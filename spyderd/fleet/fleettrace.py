"""`spyderctl trace --fleet`: a local trace grown across hosts along stitched peer edges.

Start from the local trace view; for each connection in it, look its other end up in the
`spyder_peers` bucket; ask that end's host for its trace of the connection (its daemon
over request/reply, or the stitcher's central copy when the host does not answer); merge,
and repeat from the new connections up to `depth` hops. Scored once across hosts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from spyderd.fleet import messages as m
from spyderd.fleet.bus import BusConfig
from spyderd.traces.score import WEIGHTS


class FleetTrace:
    """The merged `-o json` shape: the local trace plus `hosts`, per-node `host`."""

    def __init__(self, local: dict[str, Any], host: str) -> None:
        self.doc = {**local, "kind": "fleet-trace", "hosts": [host], "links": []}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.doc["nodes"], self.doc["edges"], self.doc["findings"] = [], [], []
        self._fids: set[str] = set()
        self.merge(local, host)

    def merge(self, view: dict[str, Any], host: str) -> list[str]:
        """Add a host's view; returns the ids of connection nodes new to the trace."""
        if host not in self.doc["hosts"]:
            self.doc["hosts"].append(host)
        new_conns = []
        for n in view.get("nodes", []):
            if n["id"] in self.nodes:
                continue
            n = {**n, "host": host}
            self.nodes[n["id"]] = n
            self.doc["nodes"].append(n)
            if n.get("kind") == "connection":
                new_conns.append(n["id"])
        for e in view.get("edges", []):
            self._edge(e)
        for f in view.get("findings", []):
            if f.get("id") not in self._fids:
                self._fids.add(f.get("id"))
                self.doc["findings"].append({**f, "host": host})
        return new_conns

    def _edge(self, e: dict[str, Any]) -> None:
        key = (e["src"], e["dst"], e["kind"])
        if key not in self.edges:
            self.edges.add(key)
            self.doc["edges"].append(e)

    def link(self, conn: str, peer: dict[str, Any]) -> None:
        """A stitched peer edge between two hosts' ends of one connection."""
        self._edge({"src": conn, "dst": peer["peer"], "kind": "peer", "time": peer["time"],
                    "confidence": peer["confidence"]})
        self.doc["links"].append({"from": conn, "to": peer["peer"], "host": peer["machine"],
                                  "confidence": peer["confidence"]})

    def finish(self) -> dict[str, Any]:
        """Score once across hosts: one weight per distinct rule, by its severity."""
        rules: dict[str, str] = {}
        for f in self.doc["findings"]:
            if not f.get("suppressed"):
                rules.setdefault(f.get("rule", ""), f.get("severity", "info"))
        self.doc["score"] = sum(WEIGHTS.get(s, 0) for s in rules.values())
        self.doc["rules"] = sorted(rules)
        return self.doc


async def _ask(nc, subject: str, req: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    try:
        msg = await nc.request(subject, m.encode(req), timeout=timeout)
        reply = m.decode(msg.data)
    except Exception:  # noqa: BLE001 - no responder, timeout or a bad reply: try elsewhere
        return None
    return reply if reply.get("ok") else None


async def _peer_of(kv, conn_id: str) -> dict[str, Any] | None:
    try:
        entry = await kv.get(m.peer_key(conn_id))
        return json.loads(entry.value)
    except Exception:  # noqa: BLE001 - no stitched peer for this end
        return None


async def fleet_trace(bus: BusConfig, local: dict[str, Any], *, depth: int = 4,
                      timeout: float = 2.0) -> dict[str, Any]:
    """Grow `local` (a trace view's `to_dict`) across hosts; see the module doc."""
    import nats  # optional dependency, see spyderd.fleet.bus

    nc = await nats.connect(**{**bus.connect_options(), "max_reconnect_attempts": 1})
    try:
        return await grow(nc, bus.name, local, depth=depth, timeout=timeout)
    finally:
        await nc.close()


async def grow(nc, host: str, local: dict[str, Any], *, depth: int = 4,
               timeout: float = 2.0) -> dict[str, Any]:
    """`fleet_trace` on an open connection (the daemon's exporter reuses its own)."""
    from spyderd.fleet.bus import ensure_peers

    kv = await ensure_peers(nc.jetstream())
    ft = FleetTrace(local, host)
    frontier = [n["id"] for n in ft.doc["nodes"] if n.get("kind") == "connection"]
    seen: set[str] = set()
    for _ in range(depth):
        nxt: list[str] = []
        for conn in frontier:
            if conn in seen:
                continue
            seen.add(conn)
            peer = await _peer_of(kv, conn)
            if peer is None or peer.get("machine") == ft.nodes.get(conn, {}).get("host"):
                continue
            ft.link(conn, peer)
            seen.add(peer["peer"])
            if peer["peer"] in ft.nodes:
                continue
            req = {"v": m.VERSION, "machine": host, "op": "trace", "id": peer["peer"]}
            reply = (await _ask(nc, m.rpc_subject(peer["machine"]), req, timeout)
                     or await _ask(nc, m.STITCH_RPC, req, timeout))
            if reply is None:
                ft.doc.setdefault("unreachable", []).append(peer["machine"])
                continue
            nxt += ft.merge(reply["trace"], peer["machine"])
        frontier = nxt
    return ft.finish()


def inbound_links(doc: dict[str, Any], host: str) -> list[dict[str, Any]]:
    """Links from this host's accepted connections to other hosts: the trace came from
    there, so this host is not where it started."""
    nodes = {n["id"]: n for n in doc["nodes"]}
    return [ln for ln in doc["links"]
            if nodes.get(ln["from"], {}).get("host") == host
            and nodes.get(ln["from"], {}).get("direction") == "in"]


def run_fleet_trace(bus: BusConfig, local: dict[str, Any], depth: int = 4) -> dict[str, Any]:
    return asyncio.run(fleet_trace(bus, local, depth=depth))


def render_fleet_tree(doc: dict[str, Any]) -> str:
    """Text: one block per host, with the stitched links that lead from one to the next."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for n in doc["nodes"]:
        by_host.setdefault(n["host"], []).append(n)
    lines = [f"fleet trace {doc['id']}: {len(doc['hosts'])} hosts, score {doc['score']}"
             + (f" ({', '.join(doc['rules'])})" if doc["rules"] else "")]
    links = {ln["from"]: ln for ln in doc["links"]}
    flagged = {f.get("process_id") for f in doc["findings"]}
    for host in doc["hosts"]:
        lines.append(f"── host {host} " + "─" * max(0, 50 - len(host)))
        for n in sorted(by_host.get(host, []), key=lambda n: n.get("start", 0)):
            lines.append("  " + _node_line(n, n["id"] in flagged))
            ln = links.get(n["id"])
            if ln is not None:
                lines.append(f"      ⇄ continues on host {ln['host']} "
                             f"(confidence {ln['confidence']})")
    if doc.get("unreachable"):
        lines.append(f"unreachable hosts: {', '.join(sorted(set(doc['unreachable'])))}")
    return "\n".join(lines)


def _node_line(n: dict[str, Any], flagged: bool) -> str:
    mark = "! " if flagged else ""
    if n.get("kind") == "process":
        args = " ".join(n.get("args") or [])[:100]
        return f"{mark}{n.get('name') or n.get('exe')}[{n.get('pid')}] {args}".rstrip()
    if n.get("kind") == "connection":
        arrow = "→" if n.get("direction") == "out" else "←"
        return (f"{mark}conn {n.get('local_ip')}:{n.get('local_port')} {arrow} "
                f"{n.get('remote_ip')}:{n.get('remote_port')}")
    return f"{mark}{n.get('kind')} {n.get('path') or n['id']}"


_PALETTE = ("#e8f0fe", "#fde8e8", "#e6f4ea", "#fef7e0", "#f3e8fd", "#e0f7fa")


def render_fleet_dot(doc: dict[str, Any]) -> str:
    """Graphviz: one coloured cluster per host, peer edges dashed across clusters."""
    out = ["digraph fleet {", "  rankdir=TB; node [shape=box, fontsize=10];"]
    flagged = {f.get("process_id") for f in doc["findings"]}
    for i, host in enumerate(doc["hosts"]):
        out.append(f'  subgraph "cluster_{i}" {{ label="{_esc(host)}"; style=filled; '
                   f'fillcolor="{_PALETTE[i % len(_PALETTE)]}";')
        for n in doc["nodes"]:
            if n["host"] == host:
                color = ', color=red, penwidth=2' if n["id"] in flagged else ""
                out.append(f'    "{_esc(n["id"])}" [label="{_esc(_node_line(n, False))}"'
                           f'{color}];')
        out.append("  }")
    for e in doc["edges"]:
        style = ' [style=dashed, color=blue, label="peer"]' if e["kind"] == "peer" else ""
        out.append(f'  "{_esc(e["src"])}" -> "{_esc(e["dst"])}"{style};')
    out.append("}")
    return "\n".join(out)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')

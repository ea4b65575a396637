"""In-memory causal index of live processes; every change also goes to the store's next batch.

Ancestry lookups for live processes never touch LMDB: the images that live processes
descend from stay in memory until nothing alive points at them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from sys import intern
from typing import Protocol

from spyderd.capture.snapshot import ProcInfo
from spyderd.graph.store import Store
from spyderd.model import (
    AcceptEvent,
    AlertEvent,
    ConnectEvent,
    Edge,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    Finding,
    ForkEvent,
    ListenEvent,
    Node,
    Trace,
    WroteExecEvent,
    connection_id,
    process_id,
    walks,
)
from spyderd.model.nodes import CLOCK_TICK_NS

log = logging.getLogger("spyderd.graph")


class Enricher(Protocol):
    """Context for process nodes (implemented in `spyderd.enrich`).

    `process_attrs` returns attributes to merge into a new process node (container_id,
    container_name, netns, loginuid, tty, user, ...). It must not block: slow lookups are
    cached or filled in later. `context_nodes` returns (node, edge) pairs for the context
    the process lives in: container, session, machine nodes with in-container,
    in-session and on-machine edges. Nodes already in the graph are not re-added.
    """

    def process_attrs(self, node: Node, parent: Node | None) -> dict: ...

    def context_nodes(self, node: Node) -> list[tuple[Node, Edge]]: ...


class Graph:
    """Applies events to the graph and hands the changes to the store in batches."""

    def __init__(self, store: Store | None, boot: str, *, boot_wall_ns: int,
                 machine_id: str = "", max_recent: int = 200_000,
                 enricher: Enricher | None = None) -> None:
        self.store = store
        self.enricher = enricher
        self.boot = boot
        self.boot_wall_ns = boot_wall_ns
        self.machine_id = machine_id
        self.max_recent = max_recent
        self.live: dict[int, Node] = {}
        self.nodes: dict[str, Node] = {}  # insertion-ordered: oldest first for eviction
        self._children: dict[str, list[str]] = {}
        self._conns: dict[str, list[str]] = {}  # process id -> its connection node ids
        self._peer: dict[str, str] = {}  # connection id -> the other end's connection id
        # Nodes whose _children/_conns lists lost the ids of evicted nodes (the store has
        # them), and how many ids were linked since those lists were last pruned.
        self._spilled: set[str] = set()
        self._linked = 0
        self._pending_peer: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
        # pipe inode -> ([writer image ids], [reader image ids]) from fds 0-2 at exec
        self._pipes: OrderedDict[int, tuple[list[str], list[str]]] = OrderedDict()
        self._dirty: dict[str, Node] = {}
        self._edges: list[Edge] = []
        # (event, id of the image it was filed under): the store encodes the event object
        # itself (events are immutable), no per-event dict
        self._events: list[tuple[Event, str]] = []
        self._findings: dict[str, Finding] = {}
        self._traces: dict[str, Trace] = {}
        self.outbox = None  # fleet outbox (spyderd.fleet.outbox.Outbox) when fleet.url is set
        self.last_flush = time.monotonic()

    # -- nodes -----------------------------------------------------------------------------

    def _add(self, node: Node) -> Node:
        self.nodes[node.id] = node
        self._dirty[node.id] = node
        return node

    def _link(self, src: str, dst: str, kind: str, t: int) -> None:
        """Record an edge for the next batch and in the in-memory indexes."""
        self._edges.append(Edge(src, dst, kind, t))
        if kind in ("spawned", "exec"):
            self._children.setdefault(src, []).append(dst)
            self._linked += 1
        elif kind in ("connect", "accept"):
            self._conns.setdefault(src, []).append(dst)
            self._linked += 1
        elif kind == "peer":
            self._peer[src] = dst

    def touch(self, node: Node) -> None:
        """Mark a node changed so the next batch rewrites it."""
        self._dirty[node.id] = node

    def get(self, node_id: str) -> Node | None:
        """A node from memory, else from the store (only for long-gone images)."""
        node = self.nodes.get(node_id)
        if node is None and node_id and self.store is not None:
            node = self.store.node(node_id)
        return node

    def parent(self, node: Node) -> Node | None:
        return self.get(node.parent) if node.parent else None

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]:
        """Nearest first (see `spyderd.model.walks` for what `depth` means)."""
        return walks.ancestors(self.parent, node, depth)

    def children(self, node: Node) -> list[Node]:
        """Images spawned by or exec'd from `node`, oldest first."""
        ids = self._linked_ids(self._children, node, ("spawned", "exec"))
        out = [n for n in (self.get(i) for i in ids) if n is not None]
        return sorted(out, key=lambda n: n.start)

    def _linked_ids(self, index: dict[str, list[str]], node: Node,
                    kinds: tuple[str, ...]) -> list[str]:
        """Ids `index` holds for `node`, plus, for a node gone from memory or whose list
        was pruned (`_prune_indexes`), those only the store still has."""
        ids = index.get(node.id) or []
        if self.store is None or not (node.id in self._spilled or node.id not in self.nodes):
            return ids
        stored = [e.dst for e in self.store.edges(node.id, "out") if e.kind in kinds]
        seen = set(stored)
        return stored + [i for i in ids if i not in seen]

    def descendants(self, node: Node, within_ns: int | None = None,
                    limit: int = walks.MAX_DESCENDANTS) -> Iterator[Node]:
        """Breadth-first below `node`; only images started within `within_ns` of it."""
        return walks.descendants(self.children, node, within_ns, limit)

    def siblings(self, node: Node) -> list[Node]:
        """Other images spawned by the same parent image."""
        parent = self.parent(node)
        if parent is None:
            return []
        return [c for c in self.children(parent) if c.id != node.id]

    def connections(self, node: Node) -> list[Node]:
        """Connection nodes of a process image (outbound and accepted)."""
        ids = self._linked_ids(self._conns, node, ("connect", "accept"))
        return [n for n in (self.get(i) for i in ids) if n]

    def _peer_of(self, cid: str) -> str:
        """The other end of a local connection (from the store once `cid` left memory)."""
        other = self._peer.get(cid)
        if other is None and self.store is not None and cid not in self.nodes:
            other = next((e.dst for e in self.store.edges(cid, "out") if e.kind == "peer"),
                         None)
        return other or ""

    def peers(self, node: Node) -> list[Node]:
        """Processes at the other end of the image's local TCP connections."""
        out: list[Node] = []
        for cid in self._linked_ids(self._conns, node, ("connect", "accept")):
            other = self.get(self._peer_of(cid))
            proc = self.get(other.attrs.get("process_id", "")) if other else None
            if proc is not None and proc not in out:
                out.append(proc)
        return out

    def session(self, node: Node) -> Node | None:
        """The session node the process belongs to (set by the enricher)."""
        return self.get(node.attrs.get("session_id", ""))

    def writer(self, node: Node) -> Node | None:
        """For a file node, or a process whose image file was written here: the writer."""
        if node.kind != "file":
            node = self.get(node.attrs.get("exec_file", ""))
            if node is None:
                return None
        return self.get(node.attrs.get("writer", ""))

    def machine(self, node: Node) -> Node | None:
        """The machine node the image runs on (`machine.*` fields of rules)."""
        mid = node.attrs.get("machine_id") or self.machine_id
        return self.get(f"machine:{mid}") if mid else None

    def _process_node(self, pid: int, ppid: int, start_ns: int, *, exec_ktime: int = 0,
                      wall: int, uid: int, exe: str, args: list[str], comm: str,
                      parent: Node | None, via: str, cgroup_id: int = 0,
                      extra: dict | None = None) -> Node:
        node = Node(
            id=process_id(self.boot, pid, start_ns, exec_ktime),
            kind="process", start=wall, pid=pid, ppid=ppid, uid=uid,
            parent=parent.id if parent else "", via=via,
            attrs={"exe": intern(exe), "args": args, "comm": intern(comm),
                   "start_ns": start_ns,
                   "cgroup_id": cgroup_id, "machine_id": self.machine_id,
                   "container_id": ""},
        )
        if extra:
            node.attrs.update(extra)
        self._add(node)
        if self.enricher is not None:
            self._enrich(node, parent)
        return node

    def _enrich(self, node: Node, parent: Node | None) -> None:
        """Container, namespace, session and user context, plus the context nodes."""
        node.attrs.update(self.enricher.process_attrs(node, parent))
        for ctx_node, edge in self.enricher.context_nodes(node):
            if ctx_node.id not in self.nodes:
                self._add(ctx_node)
            self._edges.append(edge)

    # -- snapshot --------------------------------------------------------------------------

    def load_snapshot(self, procs: list[ProcInfo],
                      listening: dict[int, list[int]] | None = None) -> int:
        """Put every running process in the graph before capture starts.

        A process already stored by an earlier run (same pid and start time) keeps its
        id and latest image, so a restart does not split its history.
        """
        for p in procs:
            node = self._restore(p)
            if node is None:
                parent = self.live.get(p.ppid)
                node = self._process_node(
                    p.pid, p.ppid, p.start_ns, wall=self.boot_wall_ns + p.start_ns,
                    uid=p.uid, exe=p.exe, args=p.args, comm=p.comm, parent=parent,
                    via="spawned" if parent else "snapshot")
                node.attrs["snapshot"] = True
                if parent is not None:
                    self._link(parent.id, node.id, "spawned", node.start)
            if listening and p.pid in listening:
                ports = node.attrs.setdefault("listen_ports", [])
                ports.extend(x for x in listening[p.pid] if x not in ports)
                self.touch(node)
            self.live[p.pid] = node
        return len(procs)

    def _restore(self, p: ProcInfo) -> Node | None:
        if self.store is None:
            return None
        images = [n for n in self.store.processes_by_pid(p.pid)
                  if n.attrs.get("start_ns") == p.start_ns and n.id.startswith(
                      f"proc:{self.boot}:")]
        if not images:
            return None
        node = max(images, key=lambda n: n.start)
        for anc in [node, *self._stored_ancestors(node)]:
            self.nodes.setdefault(anc.id, anc)
        return node

    def _stored_ancestors(self, node: Node) -> list[Node]:
        """Ancestry read from the store only (memory does not hold these images)."""
        store = self.store
        if store is None:
            return []
        return list(walks.ancestors(lambda n: store.node(n.parent) if n.parent else None, node))

    # -- events ----------------------------------------------------------------------------

    def apply(self, ev: Event) -> Node | None:
        """Fold one event into the graph; returns the subject process node."""
        handler = _HANDLERS.get(type(ev), Graph._on_other)
        node = handler(self, ev)
        self._events.append((ev, node.id if node is not None else ""))
        return node

    def _subject(self, ev: Event) -> Node:
        """The live image of the event's process, created on the fly if capture missed it."""
        node = self.live.get(ev.pid)
        if node is None:
            node = self._process_node(
                ev.pid, 0, 0, exec_ktime=ev.ktime, wall=ev.time, uid=ev.uid, exe="",
                args=[], comm=ev.comm, parent=None, via="unknown", cgroup_id=ev.cgroup_id)
            node.attrs["incomplete"] = True
            self.live[ev.pid] = node
        return node

    def _on_fork(self, ev: ForkEvent) -> Node:
        if ev.thread:  # a new thread (capture.threads) belongs to its process's image
            return self._subject(ev)
        parent = self.live.get(ev.ppid)
        pa = parent.attrs if parent else {}
        node = self._process_node(
            ev.pid, ev.ppid, ev.child_start, wall=ev.time, uid=ev.uid,
            exe=pa.get("exe", ""), args=pa.get("args", []), comm=ev.comm, parent=parent,
            via="spawned", cgroup_id=ev.cgroup_id)
        if self.enricher is None:  # the enricher reads the child's own cgroup
            node.attrs["container_id"] = pa.get("container_id", "")
        if parent is not None:
            self._link(parent.id, node.id, "spawned", ev.time)
        self.live[ev.pid] = node
        return node

    def _on_exec(self, ev: ExecEvent) -> Node:
        prev = self.live.get(ev.pid)
        if prev is None and ev.ppid in self.live:
            prev = self._on_fork(ForkEvent(time=ev.time, ktime=ev.ktime, pid=ev.pid,
                                           uid=ev.uid, gid=ev.gid, comm=ev.comm,
                                           cgroup_id=ev.cgroup_id, ppid=ev.ppid,
                                           child_start=ev.start))
        start = ev.start or (prev.attrs.get("start_ns", 0) if prev else 0)
        node = self._process_node(
            ev.pid, ev.ppid or (prev.ppid if prev else 0), start, exec_ktime=ev.ktime,
            wall=ev.time, uid=ev.uid, exe=ev.filename, args=ev.args, comm=ev.comm,
            parent=prev, via="exec" if prev else "unknown", cgroup_id=ev.cgroup_id,
            extra={"gid": ev.gid, "loginuid": ev.loginuid, "sessionid": ev.sessionid,
                   **exec_extras(ev)})
        if ev.args_truncated:
            node.attrs["args_truncated"] = True
        self._join_pipes(node, ev)
        if prev is not None:
            if self.enricher is None:  # with one, exec into a container (runc init) is seen
                node.attrs["container_id"] = prev.attrs.get("container_id", "")
            prev.end = ev.time
            prev.attrs["replaced_by"] = node.id
            self.touch(prev)
            self._link(prev.id, node.id, "exec", ev.time)
        self.live[ev.pid] = node
        return node

    def _join_pipes(self, node: Node, ev: ExecEvent) -> None:
        """Pipe edges: writer --pipe_write--> pipe --pipe_read--> reader, once both ends of
        an anonymous pipe exec'd (`curl ... | sh`: either side may come first)."""
        for fd, side in zip(ev.stdio, ("r", "w", "w"), strict=False):
            ino = fd.get("pipe") if fd.get("type") == "pipe" else None
            if not ino:
                continue
            ends = self._pipes.get(ino)
            if ends is None:
                ends = self._pipes[ino] = ([], [])
                while len(self._pipes) > 65536:
                    self._pipes.popitem(last=False)
            writers, readers = ends
            mine, others = (readers, writers) if side == "r" else (writers, readers)
            if node.id in mine:
                continue
            mine.append(node.id)
            for oid in others:
                other = self.get(oid)
                if other is not None:
                    w, r = (other, node) if side == "r" else (node, other)
                    self._pipe_edge(ino, w, r, ev.time)

    def _pipe_edge(self, ino: int, writer: Node, reader: Node, t: int) -> None:
        pid = f"pipe:{self.boot}:{ino}"
        if pid not in self.nodes:
            self._add(Node(id=pid, kind="pipe", start=t,
                           attrs={"inode": ino, "machine_id": self.machine_id}))
        if not writer.attrs.get("pipe_readers"):
            self._link(writer.id, pid, "pipe_write", t)
        if not reader.attrs.get("pipe_writers"):
            self._link(pid, reader.id, "pipe_read", t)
        for node, key, other in ((writer, "pipe_readers", reader), (reader, "pipe_writers",
                                                                    writer)):
            ids = node.attrs.setdefault(key, [])
            if other.id not in ids and len(ids) < 16:
                ids.append(other.id)
                self.touch(node)

    def pipe_peers(self, node: Node, side: str) -> list[Node]:
        """The images at the other end of the image's stdin pipe (side "writers") or of
        its stdout/stderr pipe ("readers")."""
        return [n for i in node.attrs.get(f"pipe_{side}", ()) if (n := self.get(i))]

    def _on_exit(self, ev: ExitEvent) -> Node | None:
        node = self.live.pop(ev.pid, None)
        if node is None:
            return None
        node.end = ev.time
        node.attrs["exit_code"] = ev.code
        node.attrs["exit_signal"] = ev.signal
        self.touch(node)
        return node

    def _on_conn(self, ev: ConnectEvent | AcceptEvent) -> Node:
        proc = self._subject(ev)
        direction = "out" if isinstance(ev, ConnectEvent) else "in"
        conn = Node(
            id=connection_id(self.boot, ev.ktime, ev.pid, ev.local_port, ev.remote_port),
            kind="connection", start=ev.time, pid=ev.pid, uid=ev.uid,
            attrs={"direction": direction, "family": ev.family, "local_ip": ev.local_ip,
                   "local_port": ev.local_port, "remote_ip": ev.remote_ip,
                   "remote_port": ev.remote_port, "result": ev.result,
                   "process_id": proc.id, "machine_id": self.machine_id,
                   "container_id": proc.attrs.get("container_id", "")},
        )
        self._add(conn)
        kind = "connect" if direction == "out" else "accept"
        self._link(proc.id, conn.id, kind, ev.time)
        if direction == "in":
            proc.attrs["accepts"] = proc.attrs.get("accepts", 0) + 1
            self.touch(proc)
        if ev.result == 0:
            self._stitch(conn, direction, ev)
        return proc

    def _stitch(self, conn: Node, direction: str, ev: ConnectEvent | AcceptEvent) -> None:
        """Join both ends of a local TCP connection with a peer edge."""
        if direction == "out":
            key = (ev.local_ip, ev.local_port, ev.remote_ip, ev.remote_port)
        else:
            key = (ev.remote_ip, ev.remote_port, ev.local_ip, ev.local_port)
        other = self._pending_peer.pop(key, None)
        if other is not None and other[1] != direction:
            self._link(conn.id, other[0], "peer", ev.time)
            self._link(other[0], conn.id, "peer", ev.time)
            return
        self._pending_peer[key] = (conn.id, direction)
        while len(self._pending_peer) > 65536:
            self._pending_peer.popitem(last=False)

    def _on_listen(self, ev: ListenEvent) -> Node:
        proc = self._subject(ev)
        ports = proc.attrs.setdefault("listen_ports", [])
        if ev.local_port not in ports:
            ports.append(ev.local_port)
        lst = Node(id=f"listen:{self.boot}:{ev.ktime}:{ev.pid}:{ev.local_port}",
                   kind="listener", start=ev.time, pid=ev.pid, uid=ev.uid,
                   attrs={"family": ev.family, "local_ip": ev.local_ip,
                          "local_port": ev.local_port, "process_id": proc.id,
                          "machine_id": self.machine_id})
        self._add(lst)
        self._link(proc.id, lst.id, "listen", ev.time)
        self.touch(proc)
        return proc

    def _file_node(self, dev: int, inode: int, path: str, t: int) -> Node:
        fid = f"file:{dev}:{inode}" if inode else f"file:path:{path}"
        node = self.get(fid)
        if node is None:
            node = Node(id=fid, kind="file", start=t,
                        attrs={"path": path, "dev": dev, "inode": inode,
                               "machine_id": self.machine_id})
            self._add(node)
        elif path and node.attrs.get("path") != path:
            node.attrs["path"] = path
            self.touch(node)
        return node

    def _on_file(self, ev: FileEvent) -> Node:
        proc = self._subject(ev)
        if ev.result < 0 and ev.op != "open_failed":
            return proc
        path = ev.path2 if ev.op in ("rename", "link", "symlink") and ev.path2 else ev.path
        f = self._file_node(ev.dev, ev.inode, path, ev.time)
        kind = _FILE_EDGE.get(ev.op, "wrote")
        f.attrs["last_op"] = ev.op
        if kind == "deleted":
            f.end = ev.time
        self.touch(f)
        self._link(proc.id, f.id, kind, ev.time)
        return proc

    def _on_wrote_exec(self, ev: WroteExecEvent) -> Node:
        """Download then run: join the writer's image to the process that executed the file."""
        proc = self._subject(ev)
        f = self._file_node(ev.dev, ev.inode, ev.path, ev.write_time or ev.time)
        writer = self._image_at(ev.writer_pid, ev.writer_start, ev.write_time or ev.time)
        if writer is not None:
            f.attrs["writer"] = writer.id
            self._link(writer.id, f.id, "wrote", ev.write_time or ev.time)
        proc.attrs["exec_file"] = f.id
        self.touch(f)
        self.touch(proc)
        self._link(f.id, proc.id, "executed-file", ev.time)
        return proc

    def _image_at(self, pid: int, start_ns: int, t: int) -> Node | None:
        """The image of process (pid, start) that was running at wall time `t`."""
        cut = start_ns // CLOCK_TICK_NS
        cands = [n for n in self.nodes.values() if n.kind == "process" and n.pid == pid
                 and n.attrs.get("start_ns", 0) // CLOCK_TICK_NS == cut] if pid else []
        if not cands and self.store is not None:
            cands = [n for n in self.store.processes_by_pid(pid)
                     if n.attrs.get("start_ns", 0) // CLOCK_TICK_NS == cut]
        before = [n for n in cands if n.start <= t] or cands
        return max(before, key=lambda n: n.start) if before else None

    def _on_other(self, ev: Event) -> Node:
        """Events that only annotate their process (creds, setsid, prctl, kernel, udp...)."""
        return self._subject(ev)

    def _on_alert(self, ev: AlertEvent) -> Node | None:
        """A third-party journal alert: an alert node hanging off the image that wrote it.

        The journal follower already found the image (`ev.process_id`, by pid and time: the
        writer has often exited by now); an alert it could not place stays an event only.
        """
        proc = self.get(ev.process_id) if ev.process_id else None
        if proc is None:
            return None
        alert = Node(id="alert:" + (ev.cursor or f"{ev.pid}:{ev.time}"), kind="alert",
                     start=ev.time, pid=proc.pid, uid=ev.uid,
                     attrs={"message": ev.message, "unit": ev.unit, "priority": ev.priority,
                            "identifier": ev.identifier, "process_id": proc.id,
                            "machine_id": self.machine_id,
                            "container_id": proc.attrs.get("container_id", "")})
        self._add(alert)
        self._link(proc.id, alert.id, "alerted", ev.time)
        return proc

    # -- findings and batches --------------------------------------------------------------

    def add_finding(self, f: Finding, trace: Trace | None = None) -> None:
        """Queue a finding (and its trace record, when the caller keeps one) for the store."""
        self._findings[f.id] = f
        if trace is not None:
            self._traces[trace.id] = trace
            return
        tr = self._traces.get(f.trace_id) or self._stored_trace(f.trace_id) or Trace(
            id=f.trace_id, root=f.root_id, first=f.time, tracked=False)
        if f.id not in tr.findings:
            tr.findings.append(f.id)
        tr.last = f.time
        self._traces[f.trace_id] = tr

    def _stored_trace(self, trace_id: str) -> Trace | None:
        record = self.store.trace(trace_id) if self.store is not None else None
        return Trace.from_dict(record) if record is not None else None

    def pending(self) -> int:
        return len(self._dirty) + len(self._edges) + len(self._events) + len(self._findings)

    def flush(self) -> int:
        """Commit the pending batch to LMDB; returns how many records were written."""
        n = self.pending()
        if self.store is not None and (n or self._traces):
            nodes, findings = list(self._dirty.values()), list(self._findings.values())
            extra = self.outbox.stage(nodes, self._edges, findings) if self.outbox else None
            traces = {tid: tr.to_dict() for tid, tr in self._traces.items()}
            self.store.write_batch(nodes, self._edges, self._events, findings, traces,
                                   extra=extra)
        self._dirty, self._edges, self._events = {}, [], []
        self._findings, self._traces = {}, {}
        self.last_flush = time.monotonic()
        self._evict()
        return n

    def _evict(self) -> None:
        """Drop ended nodes beyond the memory bound; live ones and their ancestry stay."""
        excess = len(self.nodes) - self.max_recent
        if excess <= 0:
            return
        keep = set()
        for node in self.live.values():
            keep.add(node.id)
            keep.update(a.id for a in self.ancestors(node))
        for nid in list(self.nodes):
            if excess <= 0:
                break
            if nid not in keep:
                del self.nodes[nid]
                self._children.pop(nid, None)
                self._spilled.discard(nid)
                for cid in self._conns.pop(nid, ()):
                    self._peer.pop(cid, None)
                excess -= 1
        if self._linked > self.max_recent:
            self._prune_indexes()

    def _prune_indexes(self) -> None:
        """Drop evicted ids from the child and connection lists of nodes still in memory.

        A long-lived process (a server, a job runner) links every child and connection it
        ever made; without this its lists, and the peer entries of its connections, grow
        for as long as it lives. Pruned lists are completed from the store when read.
        Runs once per `max_recent` new links, so its cost per link stays constant.
        """
        nodes = self.nodes
        for index in (self._children, self._conns):
            for nid, ids in index.items():
                kept = [i for i in ids if i in nodes]
                if len(kept) == len(ids):
                    continue
                if index is self._conns:
                    for cid in ids:
                        if cid not in nodes:
                            self._peer.pop(cid, None)
                index[nid] = kept
                self._spilled.add(nid)
        self._linked = 0


def exec_extras(ev: ExecEvent) -> dict:
    """The node attributes of an exec's script, environment, fds 0-2 and capabilities
    (only those the capture provided)."""
    out: dict = {}
    if ev.script:
        out["script"] = ev.script
    if ev.env:
        out["env"] = dict(ev.env)
    for name, fd in zip(("stdin", "stdout", "stderr"), ev.stdio, strict=False):
        out[name] = dict(fd)
    if ev.cap_effective >= 0:
        out["cap_effective"] = ev.cap_effective
    return out


_FILE_EDGE = {"open": "wrote", "create": "wrote", "truncate": "wrote", "rename": "wrote",
              "link": "wrote", "symlink": "wrote", "chmod": "changed", "chown": "changed",
              "setxattr": "changed", "removexattr": "changed", "unlink": "deleted",
              "open_failed": "denied", "read": "read", "utimes": "changed",
              "setflags": "changed"}

_HANDLERS = {
    FileEvent: Graph._on_file,
    WroteExecEvent: Graph._on_wrote_exec,
    ForkEvent: Graph._on_fork,
    ExecEvent: Graph._on_exec,
    ExitEvent: Graph._on_exit,
    ConnectEvent: Graph._on_conn,
    AcceptEvent: Graph._on_conn,
    ListenEvent: Graph._on_listen,
    AlertEvent: Graph._on_alert,
}

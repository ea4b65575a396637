"""The schema 2 store as spyderd 0143685 wrote it (verbatim but for this paragraph), kept
to build real version 2 stores for the migration test.

LMDB store: nodes, edges, events and findings, written in batched transactions.

Readers (spyderctl) open the same environment read-only while the daemon writes;
LMDB gives them a consistent snapshot. A commit is atomic, so a `kill -9` loses at
most the batch not yet committed and never leaves a half-written graph.

Layout (one named database each):

- `nodes`        id → the node as JSON without its id and zero/default fields, deflated
                 with a preset dictionary of spyderd's common keys and strings
- `edges_out`    src → `kind \0 dst \0 time` (dupsort); `edges_in` the same reversed, but
                 only for edges a node can't name itself: a process knows its parent
                 (spawned/exec) and a connection or listener its process, so those edges
                 are answered from the node and not stored twice
- `events`       (first time, block seq) → max time + zlib(JSON list of events): one block
                 per batch, so an event costs a few dozen bytes on disk
- `findings`     id → JSON; `traces` id → JSON
- `idx_pid`      (pid, start_ns) → process node id (dupsort)
- `idx_time`     (start, id) for every node; `idx_end` (end, id) once a node has ended
- `idx_container` container id \\0 (start, id) for processes in containers
- `idx_rule`     rule name \\0 (time, finding id); `idx_ftime` (time, finding id)
- `meta`         schema version, sequences, prune state, daemon liveness

Retention prunes ended nodes (with their edges and index entries), event blocks and
findings older than the age limit, and the oldest of them first when the store is over
its size limit; it works in small chunks so it never holds the writer for long.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb

from spyderd.errors import StoreError
from spyderd.model import Edge, Finding, Node

SCHEMA_VERSION = 2
DBS = ("meta", "nodes", "edges_out", "edges_in", "events", "findings", "traces",
       "idx_pid", "idx_time", "idx_end", "idx_container", "idx_rule", "idx_ftime")
DUPSORT = ("edges_out", "edges_in", "idx_pid")
U64 = struct.Struct(">Q")
PIDKEY = struct.Struct(">IQ")
BLOCK_SPAN_NS = 120 * 1_000_000_000  # an event block never spans more than this
_NODE_CORE = ("start", "end", "pid", "ppid", "uid", "parent", "via")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Edges a node can name itself (see module doc): not kept in `edges_in`.
SELF_DESCRIBED = frozenset({"spawned", "exec", "connect", "accept", "listen"})
# Attribute values left out when equal to these (put back on decode), per node kind.
NODE_DEFAULTS = {"process": {"container_id": "", "cgroup_id": 0},
                 "connection": {"container_id": ""}}
_ZDICT = (
    b'"direction":"out","family":4,"local_ip":"127.0.0.1","local_port":"remote_ip":'
    b'"remote_port":"result":0,"process_id":"proc:"kind":"connection","start":"pid":'
    b'"uid":0,"ppid":"parent":"proc:"via":"spawned","via":"exec","exe":"/usr/bin/'
    b'"args":["comm":"start_ns":"container_id":"listen_ports":[],"accepts":'
    b'"exit_code":0,"exit_signal":0,"replaced_by":"proc:"end":"gid":0,'
    b'"kind":"process","start":"/usr/sbin/","/bin/sh","-c","python3","kind":"file",'
)

_COMPRESSOR = zlib.compressobj(6, zlib.DEFLATED, -10, 2, zlib.Z_DEFAULT_STRATEGY, _ZDICT)


def _dumps(obj: Any) -> bytes:
    return _ENCODE(obj).encode()


def encode_node(n: Node) -> bytes:
    """JSON without the id (it is the key) or zero/default fields, deflated with _ZDICT."""
    d: dict[str, Any] = {"kind": n.kind}
    for k in _NODE_CORE:
        v = getattr(n, k)
        if v:
            d[k] = v
    defaults = NODE_DEFAULTS.get(n.kind, {})
    for k, v in n.attrs.items():
        if k not in defaults or defaults[k] != v:
            d[k] = v
    c = _COMPRESSOR.copy()  # copying a primed compressor beats loading the dictionary
    return b"Z" + c.compress(_dumps(d)) + c.flush()


def decode_node(raw: bytes, node_id: str = "") -> Node:
    """Inverse of encode_node (also reads plain JSON values of older stores)."""
    if raw[:1] == b"Z":
        d = zlib.decompressobj(-10, zdict=_ZDICT)
        raw = d.decompress(raw[1:]) + d.flush()
    data = json.loads(raw)
    data.setdefault("id", node_id)
    for k, v in NODE_DEFAULTS.get(data.get("kind"), {}).items():
        data.setdefault(k, v)
    return Node.from_dict(data)


def _edge_val(other: str, kind: str, t: int) -> bytes:
    return f"{kind}\0{other}\0{t}".encode()


def decode_edge(raw: bytes) -> tuple[str, str, int]:
    """(other end, kind, time) from an edge value."""
    kind, other, t = raw.decode().split("\0")
    return other, kind, int(t)


def implied_in_edge(n: Node) -> Edge | None:
    """The self-described edge into `n` (see SELF_DESCRIBED), rebuilt from the node."""
    if n.kind == "process" and n.parent and n.via in ("spawned", "exec"):
        return Edge(n.parent, n.id, n.via, n.start)
    owner = n.attrs.get("process_id")
    if owner and n.kind == "connection":
        kind = "connect" if n.attrs.get("direction") == "out" else "accept"
        return Edge(owner, n.id, kind, n.start)
    if owner and n.kind == "listener":
        return Edge(owner, n.id, "listen", n.start)
    return None


def time_key(t: int, ident: str) -> bytes:
    return U64.pack(max(t, 0)) + ident.encode()


class Store:
    """One LMDB environment under `<state_dir>/store`."""

    def __init__(self, state_dir: str | Path, *, readonly: bool = False,
                 map_size: int = 1 << 30) -> None:
        self.path = Path(state_dir) / "store"
        self.readonly = readonly
        if readonly and not (self.path / "data.mdb").exists():
            raise StoreError(f"no spyderd store at {self.path} (has the daemon run here?)")
        if not readonly and self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} exists and is not a directory")
        try:
            if not readonly:
                self.path.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.env = lmdb.open(str(self.path), max_dbs=len(DBS) + 1, map_size=map_size,
                                 readonly=readonly, lock=True, subdir=True, mode=0o640)
        except PermissionError as exc:
            raise StoreError(f"permission denied: {self.path}: {exc.strerror}") from None
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        try:
            self.db = {n: self.env.open_db(n.encode(), create=not readonly,
                                           dupsort=n in DUPSORT) for n in DBS}
        except lmdb.NotFoundError:
            raise StoreError(f"store {self.path} was written by an older spyderd; start the "
                             "daemon once to migrate it") from None
        except lmdb.Error as exc:
            raise StoreError(f"store {self.path} is unreadable: {exc}") from None
        if not readonly:
            migrate(self)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, fn: Callable[[Any], None]) -> None:
        """Run `fn(txn)` in one write transaction, growing the map when it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    fn(txn)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def write_batch(self, nodes: list[Node], edges: list[Edge], events: list[dict],
                    findings: list[Finding], traces: dict[str, dict]) -> None:
        """Commit one batch atomically."""
        self._write(lambda txn: self._put_all(txn, nodes, edges, events, findings, traces))

    def _put_all(self, txn, nodes, edges, events, findings, traces) -> None:
        db = self.db
        for n in nodes:
            key = n.id.encode()
            old = txn.get(key, db=db["nodes"])
            if old is None:
                txn.put(time_key(n.start, n.id), b"", db=db["idx_time"])
                if n.kind == "process":
                    txn.put(PIDKEY.pack(n.pid, n.attrs.get("start_ns", 0)), key,
                            db=db["idx_pid"])
                    ctr = n.attrs.get("container_id")
                    if ctr:
                        txn.put(ctr.encode() + b"\0" + time_key(n.start, n.id), b"",
                                db=db["idx_container"])
            if n.end:  # idempotent: re-putting the same key costs little
                txn.put(time_key(n.end, n.id), b"", db=db["idx_end"])
            txn.put(key, encode_node(n), db=db["nodes"])
        for e in edges:
            txn.put(e.src.encode(), _edge_val(e.dst, e.kind, e.time), db=db["edges_out"])
            if e.kind not in SELF_DESCRIBED:
                txn.put(e.dst.encode(), _edge_val(e.src, e.kind, e.time), db=db["edges_in"])
        if events:
            self._put_events(txn, events)
        for f in findings:
            key = f.id.encode()
            if txn.get(key, db=db["findings"]) is None:
                txn.put(time_key(f.time, f.id), b"", db=db["idx_ftime"])
                txn.put(f.rule.encode() + b"\0" + time_key(f.time, f.id), b"",
                        db=db["idx_rule"])
            txn.put(key, _dumps(f.to_dict()), db=db["findings"])
        for tid, tr in traces.items():
            txn.put(tid.encode(), _dumps(tr), db=db["traces"])

    def _put_events(self, txn, events: list[dict]) -> None:
        """One compressed block per batch, split where a batch spans too long."""
        seq = int(txn.get(b"event_seq", db=self.db["meta"]) or 0)
        chunk: list[dict] = []
        for ev in sorted(events, key=lambda e: e["time"]):
            if chunk and ev["time"] - chunk[0]["time"] > BLOCK_SPAN_NS:
                self._put_block(txn, chunk, seq)
                seq, chunk = seq + 1, []
            chunk.append(ev)
        self._put_block(txn, chunk, seq)
        txn.put(b"event_seq", str(seq + 1).encode(), db=self.db["meta"])
        n = int(txn.get(b"event_count", db=self.db["meta"]) or 0) + len(events)
        txn.put(b"event_count", str(n).encode(), db=self.db["meta"])

    def _put_block(self, txn, chunk: list[dict], seq: int) -> None:
        key = U64.pack(chunk[0]["time"]) + U64.pack(seq)
        val = U64.pack(chunk[-1]["time"]) + zlib.compress(_dumps(chunk), 6)
        txn.put(key, val, db=self.db["events"])

    def put_meta(self, key: str, value: Any) -> None:
        self._write(lambda txn: txn.put(key.encode(), _dumps(value), db=self.db["meta"]))

    # -- reading ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        with self.env.begin() as txn:
            raw = txn.get(key.encode(), db=self.db["meta"])
        return json.loads(raw) if raw else None

    def node(self, node_id: str) -> Node | None:
        if not node_id:
            return None
        with self.env.begin() as txn:
            raw = txn.get(node_id.encode(), db=self.db["nodes"])
        return decode_node(raw, node_id) if raw else None

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]:
        """Edges leaving (`out`) or entering (`in`) a node."""
        out = []
        with self.env.begin() as txn, txn.cursor(db=self.db[f"edges_{direction}"]) as cur:
            if cur.set_key(node_id.encode()):
                for raw in cur.iternext_dup():
                    other, kind, t = decode_edge(raw)
                    src, dst = (node_id, other) if direction == "out" else (other, node_id)
                    out.append(Edge(src, dst, kind, t))
            if direction == "in":
                raw = txn.get(node_id.encode(), db=self.db["nodes"])
                implied = implied_in_edge(decode_node(raw, node_id)) if raw else None
                if implied is not None:
                    out.insert(0, implied)
        return out

    def processes_by_pid(self, pid: int) -> list[Node]:
        """Every stored image of a pid, oldest process first."""
        out = []
        with self.env.begin() as txn, txn.cursor(db=self.db["idx_pid"]) as cur:
            if cur.set_range(PIDKEY.pack(pid, 0)):
                for key, val in cur:
                    if PIDKEY.unpack(key)[0] != pid:
                        break
                    raw = txn.get(val, db=self.db["nodes"])
                    if raw:
                        out.append(decode_node(raw, val.decode()))
        return out

    def nodes_between(self, since_ns: int = 0, until_ns: int | None = None,
                      kind: str | None = None) -> Iterator[Node]:
        """Nodes that started in [since, until], oldest first."""
        yield from self._scan_time_index("idx_time", b"", since_ns, until_ns, kind)

    def in_container(self, container_id: str, since_ns: int = 0,
                     until_ns: int | None = None) -> Iterator[Node]:
        """Processes that ran in a container, oldest first."""
        yield from self._scan_time_index("idx_container", container_id.encode() + b"\0",
                                         since_ns, until_ns, None)

    def _scan_time_index(self, name: str, prefix: bytes, since_ns: int,
                         until_ns: int | None, kind: str | None) -> Iterator[Node]:
        with self.env.begin() as txn, txn.cursor(db=self.db[name]) as cur:
            if not cur.set_range(prefix + U64.pack(max(since_ns, 0))):
                return
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                rest = key[len(prefix):]
                if until_ns is not None and U64.unpack_from(rest)[0] > until_ns:
                    break
                raw = txn.get(rest[8:], db=self.db["nodes"])
                if raw:
                    node = decode_node(raw, rest[8:].decode())
                    if kind is None or node.kind == kind:
                        yield node

    def finding(self, fid: str) -> Finding | None:
        with self.env.begin() as txn:
            raw = txn.get(fid.encode(), db=self.db["findings"])
        return Finding.from_dict(json.loads(raw)) if raw else None

    def findings(self, since_ns: int = 0, rule: str | None = None) -> Iterator[Finding]:
        """Findings in time order, optionally of one rule."""
        prefix = rule.encode() + b"\0" if rule is not None else b""
        name = "idx_rule" if rule is not None else "idx_ftime"
        with self.env.begin() as txn, txn.cursor(db=self.db[name]) as cur:
            if not cur.set_range(prefix + U64.pack(max(since_ns, 0))):
                return
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                raw = txn.get(key[len(prefix) + 8:], db=self.db["findings"])
                if raw:
                    yield Finding.from_dict(json.loads(raw))

    def trace(self, tid: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(tid.encode(), db=self.db["traces"])
        return json.loads(raw) if raw else None

    def traces(self) -> Iterator[dict]:
        with self.env.begin() as txn, txn.cursor(db=self.db["traces"]) as cur:
            for _, raw in cur:
                yield json.loads(raw)

    def events(self, since_ns: int = 0, until_ns: int | None = None) -> Iterator[dict]:
        """Stored events in time order (blocks are decompressed one at a time)."""
        with self.env.begin() as txn, txn.cursor(db=self.db["events"]) as cur:
            if not cur.set_range(U64.pack(max(since_ns - BLOCK_SPAN_NS, 0))):
                return
            for key, val in cur:
                first = U64.unpack_from(key)[0]
                if until_ns is not None and first > until_ns:
                    break
                if U64.unpack_from(val)[0] < since_ns:
                    continue
                for ev in json.loads(zlib.decompress(val[8:])):
                    if ev["time"] >= since_ns and (until_ns is None or ev["time"] <= until_ns):
                        yield ev

    def stats(self) -> dict[str, int]:
        out = {}
        with self.env.begin() as txn:
            for name, db in self.db.items():
                out[name] = txn.stat(db)["entries"]
            out["event_count"] = int(txn.get(b"event_count", db=self.db["meta"]) or 0)
        info = self.env.info()
        out["bytes"] = os.path.getsize(self.path / "data.mdb")
        out["used_bytes"] = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        out["map_size"] = info["map_size"]
        return out

    def close(self) -> None:
        self.env.close()


# -- schema migrations ---------------------------------------------------------------------

def _migrate_1_to_2(store: Store, txn) -> None:
    """v1 kept one JSON value per event and no end/container/rule indexes."""
    db = store.db
    blocks: list[dict] = []
    with txn.cursor(db=db["events"]) as cur:
        for key, raw in cur:
            if raw[:1] == b"{":
                blocks.append(json.loads(raw))
                cur.delete()
    if blocks:
        store._put_events(txn, blocks)
    with txn.cursor(db=db["nodes"]) as cur:
        for key, raw in cur:
            d = decode_node(raw, key.decode()).to_dict()
            if d.get("end"):
                txn.put(time_key(d["end"], d["id"]), b"", db=db["idx_end"])
            if d.get("kind") == "process" and d.get("container_id"):
                txn.put(d["container_id"].encode() + b"\0" + time_key(d.get("start", 0),
                                                                      d["id"]),
                        b"", db=db["idx_container"])
    with txn.cursor(db=db["findings"]) as cur:
        for key, raw in cur:
            f = json.loads(raw)
            txn.put(time_key(f["time"], f["id"]), b"", db=db["idx_ftime"])
            txn.put(f["rule"].encode() + b"\0" + time_key(f["time"], f["id"]), b"",
                    db=db["idx_rule"])


MIGRATIONS: dict[int, Callable[[Store, Any], None]] = {1: _migrate_1_to_2}


def migrate(store: Store) -> None:
    """Bring the store to SCHEMA_VERSION, one step per transaction; refuse newer stores."""
    meta = store.db["meta"]
    with store.env.begin() as txn:
        raw = txn.get(b"schema", db=meta)
    version = int(raw) if raw else None
    if version is None:
        store._write(lambda txn: txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=meta))
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {store.path} has schema {version}, newer than this spyderd "
                         f"({SCHEMA_VERSION}); refusing to touch it")
    while version < SCHEMA_VERSION:
        step = MIGRATIONS[version]

        def run(txn, step=step, to=version + 1) -> None:
            step(store, txn)
            txn.put(b"schema", str(to).encode(), db=meta)

        store._write(run)
        version += 1

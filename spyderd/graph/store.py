"""LMDB store: nodes, edges, events and findings, written in batched transactions.

Readers (spyderctl) open the same environment read-only while the daemon writes;
LMDB gives them a consistent snapshot. A commit is atomic, so a `kill -9` loses at
most the batch not yet committed and never leaves a half-written graph.

Schema 4 layout (one named database each; blocks are described in `spyderd.graph.codec`;
schema 3 is the same with every graph part in one JSON document):

- `blocks`   seq → one batch's nodes and edges, compressed together (a big batch is cut
             into several blocks); seqs only grow, so pages fill completely
- `evblocks` seq → that batch's raw events, compressed; they refer to the `blocks`
             record's value table, so argv, exe, ids are stored once for both, and
             retention deletes them alone (no rewrite) when raw events age out
- `btime`    (first event time, seq) for blocks holding events: time-ordered event scans
- `ntime`    (latest node time, seq) for blocks holding nodes: time-bounded node listings
- `ids`      location prefix + seq: the block holds a copy of the node (the newest seq
             holding it has the latest); the images of one process share a prefix that
             starts with the pid, so this is also the index by pid (and a block that
             wrote a process's nodes needs no `xidx` pid entry for its events)
- `live`     id of every process image not ended yet (`spyderctl ps`)
- `eidx`     node key + seq: that block holds edges of the node, or an earlier copy of it
- `xidx`     tag + value + seq: the block holds events (and nodes) of that pid (`P`), path
             (`F`), remote address (`A`), user (`U`), container (`C`)
- `pins`     node key → time of the latest finding whose trace names the node: retention
             keeps it (and what explains it) as long as that finding is kept
- `findings` id → JSON; `traces` id → JSON; `idx_rule` rule \\0 (time, id); `idx_ftime`
- `outbox`   fleet messages written in the batch's transaction (`spyderd.fleet.outbox`)
- `meta`     schema version, sequences, boot ids, prune state, daemon liveness

Retention (`spyderd.graph.retention`) strips raw events from old blocks first, then
drops nodes nobody needs, then findings; see there.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

import lmdb

from spyderd.errors import StoreError
from spyderd.graph.codec import (
    Block,
    BlockWriter,
    BootTable,
    block_times,
    digest,
    ev_columns,
    ev_get,
    ev_shape,
    ev_time,
    loc_key,
    node_key,
)
from spyderd.model import Edge, Finding, Node

SCHEMA_VERSION = 4  # 4: graph parts as JSON lines (codec); version 3 blocks still read
DUPSORT: tuple[str, ...] = ()  # no duplicate-key databases since schema 3
DBS = ("meta", "blocks", "evblocks", "btime", "ntime", "ids", "live", "eidx", "xidx", "pins",
       "findings", "traces", "idx_rule", "idx_ftime", "outbox")
U64 = struct.Struct(">Q")
U32 = struct.Struct(">I")
BLOCK_SPAN_NS = 120 * 1_000_000_000  # the events of one block never span more than this
MAX_BLOCK_EVENTS = 1024
MAX_BLOCK_NODES = 256  # one node lookup decodes its block: keep them small
BLOCK_CACHE = 64
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Edges a node can name itself: the destination knows its parent/owner, so an in-edge
# lookup rebuilds them from the node (`implied_in_edge`).
SELF_DESCRIBED = frozenset({"spawned", "exec", "connect", "accept", "listen"})
_FILE_KINDS = ("file", "wrote_exec")
_ADDR_KINDS = ("connect", "accept", "udp")


def _dict_getter(name: str) -> Callable[[dict], Any]:
    return lambda d: d.get(name)


def _dumps(obj: Any) -> bytes:
    return _ENCODE(obj).encode()


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


def event_index_keys(ev: Any, container: str) -> list[bytes]:
    """`xidx` key prefixes (without seq) an event (`Event` or dict) is found under."""
    keys = [b"P" + U32.pack(ev_get(ev, "pid", 0) & 0xFFFFFFFF),
            b"U" + U32.pack(ev_get(ev, "uid", 0) & 0xFFFFFFFF)]
    kind = ev_get(ev, "kind")
    if kind in _FILE_KINDS or kind == "exec":
        for f in ("path", "path2", "filename"):
            v = ev_get(ev, f)
            if v:
                keys.append(b"F" + digest(v))
    elif kind in _ADDR_KINDS:
        v = ev_get(ev, "remote_ip")
        if v:
            keys.append(b"A" + digest(v))
    if container:
        keys.append(b"C" + digest(container))
    return keys


def node_index_keys(n: Node) -> list[bytes]:
    """`xidx` key prefixes a process node is found under (user, container)."""
    if n.kind != "process":
        return []
    keys = [b"U" + U32.pack(n.uid & 0xFFFFFFFF)]
    ctr = n.attrs.get("container_id")
    if ctr:
        keys.append(b"C" + digest(ctr))
    return keys


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
            self.env = lmdb.open(str(self.path), max_dbs=32, map_size=map_size,
                                 readonly=readonly, lock=True, subdir=True, mode=0o640)
        except PermissionError as exc:
            raise StoreError(f"permission denied: {self.path}: {exc.strerror}") from None
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._cache: OrderedDict[int, Block] = OrderedDict()
        self._containers: OrderedDict[str, str] = OrderedDict()
        self._live: set[str] | None = None
        self._open_dbs()
        self.boots = BootTable(self.get_meta("boots") or [])
        if not readonly:
            from spyderd.graph.migrate import migrate  # migrate imports this module

            migrate(self)

    def _open_dbs(self) -> None:
        try:
            self.db = {n: self.env.open_db(n.encode(), create=not self.readonly)
                       for n in DBS}
        except lmdb.NotFoundError:
            raise StoreError(f"store {self.path} was written by an older spyderd; start the "
                             "daemon once to migrate it") from None
        except lmdb.Error as exc:
            raise StoreError(f"store {self.path} is unreadable: {exc}") from None
        if self.readonly and self.schema() not in (None, SCHEMA_VERSION):
            raise StoreError(f"store {self.path} has schema {self.schema()}; this spyderd "
                             f"reads {SCHEMA_VERSION} (start the daemon once to migrate it)")

    def schema(self) -> int | None:
        with self.env.begin() as txn:
            raw = txn.get(b"schema", db=self.db["meta"])
        return int(raw) if raw else None

    # -- writing ---------------------------------------------------------------------------

    def _write(self, fn: Callable[[Any], None]) -> None:
        """Run `fn(txn)` in one write transaction, growing the map when it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    fn(txn)
                return
            except lmdb.MapFullError:
                self._live = None  # what the aborted txn added is not there
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                self._cache.clear()
            except BaseException:
                self._live = None
                raise

    def write_batch(self, nodes: list[Node], edges: list[Edge], events: list,
                    findings: list[Finding], traces: dict[str, dict],
                    extra: Callable[[Any], None] | None = None) -> None:
        """Commit one batch atomically; `extra(txn)` adds to the same transaction (the
        fleet outbox: what is published is exactly what was stored)."""
        def put(txn) -> None:
            self._put_all(txn, nodes, edges, events, findings, traces)
            if extra is not None:
                extra(txn)

        boots = list(self.boots.names)
        try:
            self._write(put)
        except BaseException:
            self.boots = BootTable(boots)  # boot numbers handed out in the lost txn
            raise

    def _put_all(self, txn, nodes, edges, events, findings, traces) -> None:
        if nodes or edges or events:
            n_boots = len(self.boots.names)
            self.put_blocks(txn, build_blocks(nodes, edges, events))
            if len(self.boots.names) != n_boots:
                txn.put(b"boots", _dumps(self.boots.names), db=self.db["meta"])
        if events:
            n = int(txn.get(b"event_count", db=self.db["meta"]) or 0) + len(events)
            txn.put(b"event_count", str(n).encode(), db=self.db["meta"])
        for f in findings:
            self._put_finding(txn, f)
        for tid, tr in traces.items():
            txn.put(tid.encode(), _dumps(tr), db=self.db["traces"])

    def put_blocks(self, txn, blocks: list[BlockWriter]) -> list[int]:
        """Write built blocks with their index entries; returns their seqs (the block
        sequence in `meta` is read and written once per batch)."""
        first = int(txn.get(b"block_seq", db=self.db["meta"]) or 0)
        seqs = [self._put_block(txn, bw, seq) for seq, bw in enumerate(blocks, first)]
        txn.put(b"block_seq", str(first + len(blocks)).encode(), db=self.db["meta"])
        return seqs

    def _put_block(self, txn, bw: BlockWriter, seq: int) -> int:
        db = self.db
        sk = U64.pack(seq)
        main, events = bw.encode()
        txn.put(sk, main, db=db["blocks"], append=True)
        if events is not None:
            txn.put(sk, events, db=db["evblocks"], append=True)
            txn.put(U64.pack(max(bw.ev_first, 0)) + sk, b"", db=db["btime"])
        if bw.node_objs:
            latest = max(max(n.start, n.end) for n in bw.node_objs)
            txn.put(U64.pack(max(latest, 0)) + sk, b"", db=db["ntime"])
        located = self._put_nodes(txn, bw.node_objs, sk)
        ekeys: set[bytes] = set()
        written = bw.rows
        for src, dst, kind in bw.edge_ends():
            if src not in written:
                ekeys.add(src)
            if dst not in written and kind not in SELF_DESCRIBED:
                ekeys.add(dst)
        for nid in ekeys:
            txn.put(node_key(nid, self.boots, add=True) + sk, b"", db=db["eidx"])
        xkeys = self._index_keys(bw, located)
        for key in sorted(xkeys):
            txn.put(key + sk, b"", db=db["xidx"])
        return seq

    def _put_nodes(self, txn, nodes: list[Node], sk: bytes) -> set[int]:
        """`ids` and `live` entries; returns the pids whose `ids` entries name the block."""
        db = self.db
        located: set[int] = set()
        live = self._live_ids(txn)
        for loc, pid in {(loc_key(n.id, self.boots, add=True), n.pid) for n in nodes}:
            txn.put(loc + sk, b"", db=db["ids"])
            if loc[:1] in (b"p", b"c"):
                located.add(pid)
        for n in nodes:
            if n.kind != "process":
                continue
            if n.end:
                if n.id in live:
                    live.discard(n.id)
                    txn.delete(n.id.encode(), db=db["live"])
            elif n.id not in live:
                live.add(n.id)
                txn.put(n.id.encode(), b"", db=db["live"])
            self._containers[n.id] = n.attrs.get("container_id") or ""
        while len(self._containers) > 65536:
            self._containers.popitem(last=False)
        return located

    def _live_ids(self, txn) -> set[str]:
        """The `live` index as a set, read once by the writer (it changes only here)."""
        if self._live is None:
            with txn.cursor(db=self.db["live"]) as cur:
                self._live = {k.decode() for k in cur.iternext(values=False)}
        return self._live

    def _index_keys(self, bw: BlockWriter, located: set[int]) -> set[bytes]:
        """`xidx` prefixes of a block, computed per column rather than per event."""
        keys: set[bytes] = set()
        for n in bw.node_objs:
            if n.kind == "process":
                keys.update(node_index_keys(n))
        by_shape: dict[Any, list] = {}
        for ev in bw.raw_events:
            by_shape.setdefault(ev_shape(ev), []).append(ev)
        for evs in by_shape.values():
            kind = ev_get(evs[0], "kind")
            fields = (("path", "path2") if kind in _FILE_KINDS else ("filename",)
                      if kind == "exec" else ("remote_ip",) if kind in _ADDR_KINDS else ())
            pids, uids, procs, *vals = ev_columns(evs, ("pid", "uid", "process_id", *fields))
            keys.update(b"P" + U32.pack((p or 0) & 0xFFFFFFFF) for p in set(pids) - located)
            keys.update(b"U" + U32.pack((u or 0) & 0xFFFFFFFF) for u in set(uids))
            for f, col in zip(fields, vals):
                tag = b"A" if f == "remote_ip" else b"F"
                keys.update(tag + digest(v) for v in set(col) if v)
            ctrs = {self._containers.get(p, "") for p in set(procs)}
            keys.update(b"C" + digest(c) for c in ctrs if c)
        return keys

    def _put_finding(self, txn, f: Finding, reindex: bool = False) -> None:
        db = self.db
        key = f.id.encode()
        if reindex or txn.get(key, db=db["findings"]) is None:
            txn.put(time_key(f.time, f.id), b"", db=db["idx_ftime"])
            txn.put(f.rule.encode() + b"\0" + time_key(f.time, f.id), b"", db=db["idx_rule"])
        txn.put(key, _dumps(f.to_dict()), db=db["findings"])
        names = {f.process_id, f.root_id, *f.refs, *(c.get("id", "") for c in f.chain)}
        stamp = U64.pack(max(f.last_time or f.time, 0))
        for nid in names:
            k = node_key(nid, self.boots, add=True) if nid else None
            if k is None:
                continue
            old = txn.get(k, db=db["pins"])
            if old is None or old < stamp:
                txn.put(k, stamp, db=db["pins"])

    def drop_oldest_events(self, blocks: int) -> int:
        """Strip the raw events of the `blocks` oldest blocks (the graph and findings stay):
        the guard's emergency room on a full disk."""
        from spyderd.graph.retention import strip_oldest_events  # retention imports us

        done: list[int] = []
        self._write(lambda txn: done.append(strip_oldest_events(self, txn, blocks)))
        return done[-1] if done else 0

    def put_meta(self, key: str, value: Any) -> None:
        self._write(lambda txn: txn.put(key.encode(), _dumps(value), db=self.db["meta"]))

    # -- reading ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        with self.env.begin() as txn:
            raw = txn.get(key.encode(), db=self.db["meta"])
        return json.loads(raw) if raw else None

    def key(self, node_id: str) -> bytes | None:
        """The compact key of a node id (`eidx`, `pins`); None for an unknown boot."""
        self.loc(node_id)  # refreshes the boot table of a reader
        return node_key(node_id, self.boots)

    def block(self, txn, seq: int) -> Block | None:
        """A decoded block (cached: trace and query lookups revisit the same blocks)."""
        b = self._cache.get(seq)
        if b is not None:
            self._cache.move_to_end(seq)
            return b
        raw = txn.get(U64.pack(seq), db=self.db["blocks"])
        if raw is None:
            return None
        b = self._cache[seq] = Block(raw)
        if len(self._cache) > BLOCK_CACHE:
            self._cache.popitem(last=False)
        return b

    def forget(self, seq: int) -> None:
        self._cache.pop(seq, None)

    def loc(self, node_id: str) -> bytes | None:
        """The `ids` prefix of a node id (None for a boot this store never saw)."""
        k = loc_key(node_id, self.boots)
        if k is None and self.readonly:  # a reader: the daemon may have added the boot
            self.boots = BootTable(self.get_meta("boots") or [])
            k = loc_key(node_id, self.boots)
        return k

    def _copies(self, txn, prefix: bytes) -> list[int]:
        """Seqs of the blocks under an `ids` prefix, newest first."""
        out = []
        with txn.cursor(db=self.db["ids"]) as cur:
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    if len(key) == len(prefix) + 8:
                        out.append(U64.unpack_from(key, len(prefix))[0])
        out.sort(reverse=True)
        return out

    def _node_at(self, txn, node_id: str) -> tuple[Node | None, int]:
        """(latest copy, its block seq) of a node."""
        k = self.loc(node_id) if node_id else None
        for seq in self._copies(txn, k) if k else ():
            b = self.block(txn, seq)
            i = b.ids().get(node_id) if b is not None else None
            if i is not None:
                return b.node(i), seq
        return None, -1

    def _node(self, txn, node_id: str) -> Node | None:
        return self._node_at(txn, node_id)[0]

    def is_latest(self, txn, node_id: str, seq: int) -> bool:
        """True if block `seq` holds the newest copy of the node."""
        k = self.loc(node_id)
        for later in self._copies(txn, k) if k else ():
            if later <= seq:
                return True
            b = self.block(txn, later)
            if b is not None and node_id in b.ids():
                return False
        return False

    def node(self, node_id: str) -> Node | None:
        if not node_id:
            return None
        with self.env.begin() as txn:
            return self._node(txn, node_id)

    def nodes(self, ids: list[str]) -> list[Node | None]:
        """Several nodes in one read transaction."""
        with self.env.begin() as txn:
            return [self._node(txn, i) if i else None for i in ids]

    def _edge_blocks(self, txn, node_id: str) -> list[int]:
        loc = self.loc(node_id)
        k = self.key(node_id)
        if k is None or loc is None:
            return []
        seqs = self._copies(txn, loc)
        with txn.cursor(db=self.db["eidx"]) as cur:
            if cur.set_range(k):
                for key in cur.iternext(values=False):
                    if not key.startswith(k):
                        break
                    if len(key) == len(k) + 8:
                        seqs.append(U64.unpack_from(key, len(k))[0])
        return sorted(set(seqs))

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]:
        """Edges leaving (`out`) or entering (`in`) a node, oldest first."""
        out: list[Edge] = []
        seen: set[Edge] = set()
        with self.env.begin() as txn:
            for seq in self._edge_blocks(txn, node_id):
                b = self.block(txn, seq)
                if b is None:
                    continue
                for e in b.edges_of(node_id, direction):
                    if direction == "in" and e.kind in SELF_DESCRIBED:
                        continue
                    if e not in seen:
                        seen.add(e)
                        out.append(e)
            if direction == "in":
                node = self._node(txn, node_id)
                implied = implied_in_edge(node) if node is not None else None
                if implied is not None:
                    out.insert(0, implied)
        return out

    def processes_by_pid(self, pid: int) -> list[Node]:
        """Every stored image of a pid, oldest process first."""
        prefix = b"p" + U32.pack(pid & 0xFFFFFFFF)
        found: dict[str, Node] = {}
        with self.env.begin() as txn, txn.cursor(db=self.db["ids"]) as cur:
            seqs = []
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    seqs.append(U64.unpack_from(key, len(key) - 8)[0])
            for seq in sorted(set(seqs), reverse=True):  # newest copy of each node wins
                b = self.block(txn, seq)
                for nid, i in (b.ids().items() if b is not None else ()):
                    if nid not in found and nid.startswith("proc:"):
                        n = b.node(i)
                        if n.pid == pid and n.kind == "process":
                            found[nid] = n
        return sorted(found.values(), key=lambda n: (n.attrs.get("start_ns", 0), n.start))

    def live_processes(self) -> list[Node]:
        """Process images without an end, as the store knows them."""
        with self.env.begin() as txn, txn.cursor(db=self.db["live"]) as cur:
            ids = [k.decode() for k in cur.iternext(values=False)]
            out = [n for n in (self._node(txn, i) for i in ids) if n is not None and not n.end]
        return sorted(out, key=lambda n: n.start)

    def _latest_in(self, txn, seq: int, since_ns: int, until_ns: int | None,
                   kind: str | None, keep: Callable[[Node], bool] | None) -> list[Node]:
        """Nodes whose latest copy is block `seq`, started in [since, until]."""
        b = self.block(txn, seq)
        if b is None:
            return []
        out = []
        for i, start in enumerate(b.starts()):
            if start < since_ns or (until_ns is not None and start > until_ns):
                continue
            n = b.node(i)
            if kind is not None and n.kind != kind:
                continue
            if (keep is None or keep(n)) and self.is_latest(txn, n.id, seq):
                out.append(n)
        return out

    def nodes_between(self, since_ns: int = 0, until_ns: int | None = None,
                      kind: str | None = None,
                      keep: Callable[[Node], bool] | None = None) -> Iterator[Node]:
        """Nodes that started in [since, until], oldest first (blocks whose latest node
        time is before `since` are skipped through the `ntime` index)."""
        out: list[Node] = []
        with self.env.begin() as txn, txn.cursor(db=self.db["ntime"]) as cur:
            seqs = []
            if cur.set_range(U64.pack(max(since_ns, 0))):
                seqs = [U64.unpack_from(k, 8)[0] for k in cur.iternext(values=False)]
            for seq in sorted(seqs):
                out.extend(self._latest_in(txn, seq, since_ns, until_ns, kind, keep))
        out.sort(key=lambda n: n.start)
        yield from out

    def indexed_blocks(self, txn, prefix: bytes, since_ns: int = 0) -> list[int]:
        """Seqs of blocks under an `xidx` prefix, from the first block that can hold
        anything at or after `since_ns`."""
        lo = self._first_seq_since(txn, since_ns)
        out = []
        with txn.cursor(db=self.db["xidx"]) as cur:
            if cur.set_range(prefix + U64.pack(lo)):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                        break
                    out.append(U64.unpack_from(key, len(prefix))[0])
        return out

    def _pid_blocks(self, txn, pid: int, since_ns: int) -> list[int]:
        """Seqs of blocks that wrote nodes of a pid (their events are not in `xidx`)."""
        lo = self._first_seq_since(txn, since_ns)
        out = []
        for tag in (b"p", b"c"):
            prefix = tag + U32.pack(pid & 0xFFFFFFFF)
            with txn.cursor(db=self.db["ids"]) as cur:
                if cur.set_range(prefix):
                    for key in cur.iternext(values=False):
                        if not key.startswith(prefix):
                            break
                        seq = U64.unpack_from(key, len(key) - 8)[0]
                        if seq >= lo:
                            out.append(seq)
        return out

    def _first_seq_since(self, txn, since_ns: int) -> int:
        """Lowest seq of a block written with events or nodes at or after `since_ns`."""
        if since_ns <= 0:
            return 0
        lo = None
        for name, back in (("btime", BLOCK_SPAN_NS), ("ntime", 0)):
            with txn.cursor(db=self.db[name]) as cur:
                if cur.set_range(U64.pack(max(since_ns - back, 0))):
                    seqs = [U64.unpack_from(k, 8)[0] for k in cur.iternext(values=False)]
                    if seqs:
                        m = min(seqs)
                        lo = m if lo is None else min(lo, m)
        return lo if lo is not None else 1 << 63

    def in_container(self, container_id: str, since_ns: int = 0,
                     until_ns: int | None = None) -> Iterator[Node]:
        """Processes that ran in a container, oldest first."""
        out: list[Node] = []
        with self.env.begin() as txn:
            for seq in self.indexed_blocks(txn, b"C" + digest(container_id), since_ns):
                out.extend(self._latest_in(
                    txn, seq, since_ns, until_ns, "process",
                    lambda n: n.attrs.get("container_id") == container_id))
        out.sort(key=lambda n: n.start)
        yield from out

    def by_user(self, uid: int, since_ns: int = 0, until_ns: int | None = None,
                kind: str | None = "process") -> Iterator[Node]:
        """Processes that ran as a uid, oldest first."""
        out: list[Node] = []
        with self.env.begin() as txn:
            for seq in self.indexed_blocks(txn, b"U" + U32.pack(uid & 0xFFFFFFFF), since_ns):
                out.extend(self._latest_in(txn, seq, since_ns, until_ns, kind,
                                           lambda n: n.uid == uid))
        out.sort(key=lambda n: n.start)
        yield from out

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

    def events(self, since_ns: int = 0, until_ns: int | None = None, *,
               pid: int | None = None, path: str | None = None,
               remote_ip: str | None = None, uid: int | None = None,
               container_id: str | None = None) -> Iterator[dict]:
        """Stored events in time order. `pid`, `path`, `remote_ip`, `uid` and
        `container_id` narrow them through the `xidx` indexes (only blocks that hold such
        events are decompressed)."""
        prefix = _event_prefix(pid, path, remote_ip, uid, container_id)
        with self.env.begin() as txn:
            if prefix is None:
                seqs = self._time_seqs(txn, since_ns, until_ns)
            else:
                seqs = self.indexed_blocks(txn, prefix, since_ns)
                if pid is not None:
                    seqs = sorted(set(seqs) | set(self._pid_blocks(txn, pid, since_ns)))
            rows: list[dict] = []
            for seq in seqs:
                raw = txn.get(U64.pack(seq), db=self.db["evblocks"])
                if raw is None:
                    continue
                first, last = block_times(raw)
                if last < since_ns or (until_ns is not None and first > until_ns):
                    continue
                b = self.block(txn, seq)
                if b is None:
                    continue
                pick = ("pid", pid) if pid is not None else ("uid", uid) if uid is not None \
                    else (None, None)
                for ev in b.with_events(raw).events(*pick):
                    if ev["time"] < since_ns or (until_ns is not None and ev["time"] > until_ns):
                        continue
                    if prefix is None or _event_matches(ev, pid, path, remote_ip, uid,
                                                        container_id, self._container_of):
                        rows.append(ev)
                if prefix is None and len(rows) > 4 * MAX_BLOCK_EVENTS:
                    yield from _drain_sorted(rows, keep_after=first)
        rows.sort(key=lambda e: e["time"])
        yield from rows

    def oldest_event_time(self) -> int:
        """Time of the oldest stored event (0 if none): one index read and one header."""
        with self.env.begin() as txn, txn.cursor(db=self.db["btime"]) as cur:
            if not cur.first():
                return 0
            raw = txn.get(cur.key()[8:], db=self.db["evblocks"])
        return block_times(raw)[0] if raw else U64.unpack_from(cur.key())[0]

    def _container_of(self, process_id: str) -> str:
        ctr = self._containers.get(process_id)
        if ctr is None:
            n = self.node(process_id)
            ctr = n.attrs.get("container_id", "") if n else ""
            self._containers[process_id] = ctr
            if len(self._containers) > 65536:
                self._containers.popitem(last=False)
        return ctr

    def _time_seqs(self, txn, since_ns: int, until_ns: int | None) -> list[int]:
        """Seqs of event blocks that may hold events in [since, until], by first time."""
        out = []
        with txn.cursor(db=self.db["btime"]) as cur:
            if cur.set_range(U64.pack(max(since_ns - BLOCK_SPAN_NS, 0))):
                for key in cur.iternext(values=False):
                    if until_ns is not None and U64.unpack_from(key)[0] > until_ns:
                        break
                    out.append(U64.unpack_from(key, 8)[0])
        return out

    def stats(self) -> dict[str, int]:
        out = {}
        with self.env.begin() as txn:
            for name, db in self.db.items():
                out[name] = txn.stat(db)["entries"]
            out["event_count"] = int(txn.get(b"event_count", db=self.db["meta"]) or 0)
        out["nodes"] = out["ids"]
        out["events"] = out["btime"]
        info = self.env.info()
        out["bytes"] = os.path.getsize(self.path / "data.mdb")
        out["used_bytes"] = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        out["map_size"] = info["map_size"]
        return out

    def close(self) -> None:
        self._cache.clear()
        self.env.close()


def _drain_sorted(rows: list[dict], keep_after: int) -> Iterator[dict]:
    """Yield (and remove) the rows that are certainly before any later block's events."""
    rows.sort(key=lambda e: e["time"])
    i = 0
    while i < len(rows) and rows[i]["time"] < keep_after:
        i += 1
    yield from rows[:i]
    del rows[:i]


def _event_prefix(pid, path, remote_ip, uid, container_id) -> bytes | None:
    if pid is not None:
        return b"P" + U32.pack(pid & 0xFFFFFFFF)
    if path is not None:
        return b"F" + digest(path)
    if remote_ip is not None:
        return b"A" + digest(remote_ip)
    if container_id is not None:
        return b"C" + digest(container_id)
    if uid is not None:
        return b"U" + U32.pack(uid & 0xFFFFFFFF)
    return None


def _event_matches(ev: dict, pid, path, remote_ip, uid, container_id, container_of) -> bool:
    if pid is not None and ev.get("pid") != pid:
        return False
    if path is not None and path not in (ev.get("path"), ev.get("path2"), ev.get("filename")):
        return False
    if remote_ip is not None and ev.get("remote_ip") != remote_ip:
        return False
    if uid is not None and ev.get("uid") != uid:
        return False
    return container_id is None or container_of(ev.get("process_id", "")) == container_id


def _time_and_process(events: list) -> tuple[Callable[[Any], int], Callable[[Any], str]]:
    """Getters of time and process id for a batch's events, fastest for its form."""
    forms = set(map(type, events))
    if forms == {tuple}:
        return (lambda r: r[0].time), (lambda r: r[1] or r[0].process_id)
    if forms == {dict}:
        return itemgetter("time"), _dict_getter("process_id")
    return ev_time, (lambda r: ev_get(r, "process_id"))


def build_blocks(nodes: list[Node], edges: list[Edge], events: list) -> list[BlockWriter]:
    """Cut one batch into blocks: each event goes with its process's node when that was
    written in the batch (their shared strings are stored once), edges with their source
    node, the rest into the last block."""
    by_id = {n.id: n for n in nodes}
    get_t, get_p = _time_and_process(events)
    evs = sorted(events, key=get_t)
    out: list[BlockWriter] = []
    placed: set[str] = set()
    start = 0
    while start < len(evs) or not out:
        cur = BlockWriter()
        out.append(cur)
        chunk = evs[start:start + MAX_BLOCK_EVENTS]
        if chunk:  # cut where the chunk would span too long
            first = get_t(chunk[0])
            if get_t(chunk[-1]) - first > BLOCK_SPAN_NS:
                chunk = [e for e in chunk if get_t(e) - first <= BLOCK_SPAN_NS]
        start += len(chunk)
        for nid in dict.fromkeys(map(get_p, chunk)):
            n = by_id.get(nid)
            if n is not None and nid not in placed and len(cur.nodes) < MAX_BLOCK_NODES:
                placed.add(nid)
                cur.add_node(n)
        cur.add_events(chunk, get_t)
    for n in nodes:
        if n.id not in placed:
            if len(cur.nodes) >= MAX_BLOCK_NODES:
                cur = BlockWriter()
                out.append(cur)
            cur.add_node(n)
    home = {nid: bw for bw in out for nid in bw.rows}
    for e in edges:
        home.get(e.src, out[-1]).add_edge(e)
    return [bw for bw in out if bw.nodes or bw.edges or bw.events]

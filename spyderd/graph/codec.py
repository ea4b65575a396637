"""Store schema 3 codec: compact node keys and self-contained compressed blocks.

A *block* holds what one batch wrote: node records, edges and events, as rows that refer
to the block's own value table, where every distinct string, argv list or attribute-name
shape is stored once (exe paths, argv, cwd, users, container ids, process ids repeat
endlessly within a batch). Times are delta-coded against the previous row. An event whose
fields the graph already holds (a fork is its process node, an exec its image, a connect
its connection node) names that node's row and keeps only the fields that differ. The
block is `zlib(JSON)`: plain tools can read it (see `decode_block`).

Node keys (`node_key`) pack the ids spyderd makes itself (`proc:...`, `conn:...`) into
12-20 bytes ordered by pid, so the id index doubles as the pid index; other ids are kept
as their UTF-8 text.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from spyderd.model import Edge, Node

BLOCK_VERSION = 3
HEADER = struct.Struct(">BQQ")  # version, first event time, last event time
_PID = struct.Struct(">I")
_BOOT = struct.Struct(">H")
_PROC = struct.Struct(">IHQ")  # pid, boot, start tick  (+ exec ktime)
_CONN = struct.Struct(">HQIHH")  # boot, ktime, pid, local port, remote port
_U64 = struct.Struct(">Q")
MAX_KEY = 480
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_CORE = ("kind", "pid", "ppid", "uid", "parent", "via")
# Attribute values left out when equal to these (put back on decode), per node kind.
NODE_DEFAULTS = {"process": {"container_id": "", "cgroup_id": 0},
                 "connection": {"container_id": ""}}
# Event fields that repeat a field of the node the event created or ended ("not stored
# twice"): event field -> node field ("=" + core name for Node slots).
EVENT_FROM_NODE = {
    "fork": {"pid": "=pid", "ppid": "=ppid", "uid": "=uid", "comm": "comm",
             "cgroup_id": "cgroup_id", "child_start": "start_ns", "process_id": "=id",
             "time": "=start"},
    "exec": {"pid": "=pid", "ppid": "=ppid", "uid": "=uid", "comm": "comm",
             "cgroup_id": "cgroup_id", "start": "start_ns", "process_id": "=id",
             "filename": "exe", "args": "args", "gid": "gid", "loginuid": "loginuid",
             "sessionid": "sessionid", "time": "=start"},
    "exit": {"pid": "=pid", "uid": "=uid", "comm": "comm", "cgroup_id": "cgroup_id",
             "process_id": "=id", "code": "exit_code", "signal": "exit_signal",
             "time": "=end"},
    "connect": {"pid": "=pid", "uid": "=uid", "family": "family", "local_ip": "local_ip",
                "local_port": "local_port", "remote_ip": "remote_ip",
                "remote_port": "remote_port", "result": "result",
                "process_id": "process_id", "time": "=start"},
}
EVENT_FROM_NODE["accept"] = EVENT_FROM_NODE["connect"]


class BootTable:
    """Boot ids <-> small numbers (kept in the store's meta record `boots`)."""

    def __init__(self, boots: Iterable[str] = ()) -> None:
        self.names: list[str] = list(boots)
        self.index = {b: i for i, b in enumerate(self.names)}

    def number(self, boot: str, add: bool) -> int | None:
        n = self.index.get(boot)
        if n is None and add and len(self.names) < 0xFFFF:
            n = self.index[boot] = len(self.names)
            self.names.append(boot)
        return n


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() and str(int(s)) == s else None


def node_key(node_id: str, boots: BootTable, add: bool = False) -> bytes | None:
    """The id index key of a node id; None when its boot is unknown (never stored)."""
    parts = node_id.split(":")
    if parts[0] == "proc" and len(parts) in (4, 5):
        nums = [_int(p) for p in parts[2:]]
        if None not in nums and nums[0] < 1 << 40 and nums[1] < 1 << 32:
            b = boots.number(parts[1], add)
            if b is None:
                return None
            key = b"p" + _PROC.pack(nums[1], b, nums[0])
            return key + _U64.pack(nums[2]) if len(nums) == 3 else key
    elif parts[0] == "conn" and len(parts) == 6:
        nums = [_int(p) for p in parts[2:]]
        if (None not in nums and nums[1] < 1 << 32 and nums[2] < 1 << 16
                and nums[3] < 1 << 16):
            b = boots.number(parts[1], add)
            if b is None:
                return None
            return b"c" + _CONN.pack(b, nums[0], nums[1], nums[2], nums[3])
    raw = node_id.encode()
    if len(raw) > MAX_KEY:
        return b"h" + hashlib.blake2b(raw, digest_size=16).digest()
    return b"s" + raw


_LOC = struct.Struct(">IH")


def loc_key(node_id: str, boots: BootTable, add: bool = False) -> bytes | None:
    """Prefix of the `ids` entries (prefix + block seq) locating a node's copies.

    The images of one process (fork copy, exec images) share a prefix, as do one
    process's connections within about a second, so a batch that writes a process's
    fork, exec and exit adds one entry, not one per node.
    """
    parts = node_id.split(":")
    if parts[0] == "proc" and len(parts) in (4, 5):
        tick, pid = _int(parts[2]), _int(parts[3])
        if tick is not None and pid is not None and tick < 1 << 40 and pid < 1 << 32:
            b = boots.number(parts[1], add)
            return None if b is None else (b"p" + _LOC.pack(pid, b)
                                           + tick.to_bytes(5, "big"))
    elif parts[0] == "conn" and len(parts) == 6:
        kt, pid = _int(parts[2]), _int(parts[3])
        if kt is not None and pid is not None and pid < 1 << 32:
            b = boots.number(parts[1], add)
            return None if b is None else (b"c" + _LOC.pack(pid, b)
                                           + (kt >> 30).to_bytes(5, "big"))
    raw = node_id.encode()
    if len(raw) > MAX_KEY:
        return b"h" + hashlib.blake2b(raw, digest_size=16).digest() + b"\0"
    return b"s" + raw + b"\0"


def pid_prefix(pid: int) -> bytes:
    """Key prefix of every process image of `pid` (all boots)."""
    return b"p" + _PID.pack(pid)


def key_pid(key: bytes) -> int:
    return _PID.unpack_from(key, 1)[0]


def digest(value: str) -> bytes:
    """8-byte hash of a string for index keys (paths, addresses, container ids)."""
    return hashlib.blake2b(value.encode(errors="surrogateescape"), digest_size=8).digest()


# -- blocks ----------------------------------------------------------------------------------

class _Table:
    """A block's value table: every distinct non-integer value once."""

    __slots__ = ("index", "items")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.index: dict[Any, int] = {}

    def ref(self, v: Any) -> int:
        if type(v) is str:
            key: Any = v
        elif type(v) is list and all(type(x) is str for x in v):
            key = ("L", *v)
        else:
            key = ("J", _ENCODE(v))
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.items)
            self.items.append(v)
        return i

    def shape(self, keys: tuple[str, ...]) -> int:
        i = self.index.get(keys)
        if i is None:
            i = self.index[keys] = len(self.items)
            self.items.append(list(keys))
        return i


def _row(table: _Table, d: dict[str, Any], skip: frozenset | dict = frozenset()) -> list:
    """[shape, values...]: ints inline ('#' names), everything else a table reference."""
    keys: list[str] = []
    vals: list[Any] = []
    for k, v in d.items():
        if k in skip:
            continue
        if type(v) is int:
            keys.append("#" + k)
            vals.append(v)
        else:
            keys.append(k)
            vals.append(table.ref(v))
    return [table.shape(tuple(keys)), *vals]


def _unrow(items: list[Any], row: list, start: int, out: dict[str, Any]) -> None:
    keys = items[row[start]]
    for k, v in zip(keys, row[start + 1:]):
        if k[0] == "#":
            out[k[1:]] = v
        else:
            val = items[v]
            out[k] = val.copy() if type(val) in (list, dict) else val


def _node_row(table: _Table, n: Node, prev_start: int) -> list:
    d: dict[str, Any] = {"id": n.id}
    for k in _CORE:
        v = getattr(n, k)
        if v:
            d[k] = v
    if n.end:
        d["end"] = n.end - n.start
    defaults = NODE_DEFAULTS.get(n.kind, {})
    for k, v in n.attrs.items():
        if k not in defaults or defaults[k] != v:
            d[k] = v
    return [n.start - prev_start, *_row(table, d)]


def _edge_row(table: _Table, e: Edge, base: int) -> list:
    return [table.ref(e.src), table.ref(e.dst), table.ref(e.kind), e.time - base]


def _node_field(n: Node, name: str) -> Any:
    if name[0] == "=":
        return getattr(n, name[1:])
    return n.attrs.get(name, NODE_DEFAULTS.get(n.kind, {}).get(name))


def _event_row(table: _Table, ev: dict[str, Any], ref: Node | None, ref_row: int,
               prev: list[int]) -> list:
    """[ref row or -1, time delta, (time - ktime) delta, shape, values...].

    Shape names: '~' time/ktime (from the row head), '@' taken from the referenced node,
    '#' an inline integer, plain a table reference.
    """
    t = ev["time"]
    off = t - ev.get("ktime", 0)
    row: list[Any] = [ref_row, t - prev[0], off - prev[1], 0]
    prev[0], prev[1] = t, off
    same = EVENT_FROM_NODE.get(ev["kind"], {}) if ref is not None else {}
    keys: list[str] = []
    for k, v in ev.items():
        if k == "time" or k == "ktime":
            keys.append("~" + k)
        elif k in same and v == _node_field(ref, same[k]):
            keys.append("@" + k)
        elif type(v) is int:
            keys.append("#" + k)
            row.append(v)
        else:
            keys.append(k)
            row.append(table.ref(v))
    row[3] = table.shape(tuple(keys))
    return row


class BlockWriter:
    """Builds one block: nodes first (events refer to their rows), then edges and events."""

    def __init__(self) -> None:
        self.table = _Table()
        self.nodes: list[list] = []
        self.node_objs: list[Node] = []
        self.rows: dict[str, int] = {}
        self.edges: list[list] = []
        self.events: list[list] = []
        self.ev_first = self.ev_last = 0
        self._prev_start = 0
        self._prev_ev = [0, 0]
        self._base = 0
        self._conn_rows: dict[tuple, int] = {}
        self._ev_base = [0, 0]
        self.raw_events: list[dict[str, Any]] = []
        self.ends: list[tuple[str, str, str]] = []

    def add_node(self, n: Node) -> None:
        self.rows[n.id] = len(self.nodes)
        self.node_objs.append(n)
        self.nodes.append(_node_row(self.table, n, self._prev_start))
        self._prev_start = n.start
        if n.kind == "connection":
            self._conn_rows[(n.attrs.get("process_id"), n.start, n.attrs.get("local_port"),
                             n.attrs.get("remote_port"))] = self.rows[n.id]

    def add_edge(self, e: Edge) -> None:
        if not self.edges:
            self._base = e.time
        self.edges.append(_edge_row(self.table, e, self._base))
        self.ends.append((e.src, e.dst, e.kind))

    def edge_ends(self) -> list[tuple[str, str, str]]:
        """(src, dst, kind) of every edge in the block."""
        return self.ends

    def ref_row(self, ev: dict[str, Any]) -> int:
        """Row of the node this event repeats, or -1."""
        kind = ev["kind"]
        if kind in ("connect", "accept"):
            return self._conn_rows.get((ev.get("process_id"), ev["time"],
                                        ev.get("local_port"), ev.get("remote_port")), -1)
        if kind in ("fork", "exec", "exit"):
            i = self.rows.get(ev.get("process_id", ""), -1)
            if i >= 0:
                n = self.node_objs[i]
                if (kind == "exit" and n.end == ev["time"]) or (
                        kind != "exit" and n.start == ev["time"]):
                    return i
        return -1

    def add_event(self, ev: dict[str, Any]) -> None:
        if not self.events:
            self.ev_first = ev["time"]
            self._prev_ev = [ev["time"], ev["time"] - ev.get("ktime", 0)]
            self._ev_base = list(self._prev_ev)
        self.ev_first = min(self.ev_first, ev["time"])
        self.ev_last = max(self.ev_last, ev["time"])
        i = self.ref_row(ev)
        self.raw_events.append(ev)
        self.events.append(_event_row(self.table, ev, self.node_objs[i] if i >= 0 else None,
                                      i, self._prev_ev))

    def encode(self) -> bytes:
        body = {"v": BLOCK_VERSION, "t": self.table.items, "n": self.nodes,
                "e": self.edges, "eb": self._base, "x": self.events,
                "xb": self._ev_base}
        return (HEADER.pack(BLOCK_VERSION, self.ev_first, self.ev_last)
                + zlib.compress(_ENCODE(body).encode(), 6))



def block_times(raw: bytes) -> tuple[int, int]:
    """(first, last) event time of an encoded block, without decompressing it."""
    _, first, last = HEADER.unpack_from(raw)
    return first, last


def decode_block(raw: bytes) -> dict[str, Any]:
    """The block's JSON body (documented layout; see BlockWriter.encode)."""
    return json.loads(zlib.decompress(memoryview(raw)[HEADER.size:]))


class Block:
    """A decoded block: nodes, edges and events materialised on demand."""

    __slots__ = (
        "_ids",
        "_starts",
        "edge_base",
        "edge_rows",
        "ev_base",
        "event_rows",
        "items",
        "node_rows",
    )

    def __init__(self, raw: bytes) -> None:
        body = decode_block(raw)
        self.items = body["t"]
        self.node_rows = body["n"]
        self.edge_rows = body["e"]
        self.event_rows = body["x"]
        self.edge_base = body["eb"]
        self.ev_base = body["xb"]
        self._ids: dict[str, int] | None = None
        self._starts: list[int] | None = None

    def starts(self) -> list[int]:
        if self._starts is None:
            out, t = [], 0
            for row in self.node_rows:
                t += row[0]
                out.append(t)
            self._starts = out
        return self._starts

    def ids(self) -> dict[str, int]:
        """node id -> row."""
        if self._ids is None:
            self._ids = {}
            items = self.items
            for i, row in enumerate(self.node_rows):
                keys = items[row[1]]
                j = keys.index("id")
                self._ids[items[row[2 + j]]] = i
        return self._ids

    def node(self, i: int) -> Node:
        row = self.node_rows[i]
        d: dict[str, Any] = {}
        _unrow(self.items, row, 1, d)
        start = self.starts()[i]
        end = d.pop("end", None)
        n = Node(id=d.pop("id"), kind=d.pop("kind", ""), start=start,
                 end=start + end if end is not None else 0, pid=d.pop("pid", 0),
                 ppid=d.pop("ppid", 0), uid=d.pop("uid", 0), parent=d.pop("parent", ""),
                 via=d.pop("via", ""), attrs=d)
        for k, v in NODE_DEFAULTS.get(n.kind, {}).items():
            d.setdefault(k, v)
        return n

    def nodes(self) -> list[Node]:
        return [self.node(i) for i in range(len(self.node_rows))]

    def nodes_with_key(self, key: bytes, boots: BootTable) -> list[Node]:
        """The block's nodes whose id index key is `key`."""
        return [self.node(i) for nid, i in self.ids().items() if node_key(nid, boots) == key]

    def edges_of(self, node_id: str, direction: str) -> list[Edge]:
        """Edges of the block leaving (`out`) or entering (`in`) a node."""
        it = self.items
        col = 0 if direction == "out" else 1
        return [Edge(it[r[0]], it[r[1]], it[r[2]], r[3] + self.edge_base)
                for r in self.edge_rows if it[r[col]] == node_id]

    def edges(self) -> list[Edge]:
        it = self.items
        return [Edge(it[s], it[d], it[k], t + self.edge_base) for s, d, k, t in self.edge_rows]

    def events(self) -> list[dict[str, Any]]:
        """Every event of the block, in time order, as `event_to_dict` made it."""
        out = []
        t, off = self.ev_base
        items = self.items
        refs: dict[int, Node] = {}
        for row in self.event_rows:
            t += row[1]
            off += row[2]
            ev: dict[str, Any] = {}
            vals = iter(row[4:])
            for k in items[row[3]]:
                c = k[0]
                if c == "~":
                    ev[k[1:]] = t if k == "~time" else t - off
                elif c == "@":
                    ref = refs.get(row[0])
                    if ref is None:
                        ref = refs[row[0]] = self.node(row[0])
                    v = _node_field(ref, EVENT_FROM_NODE[ev["kind"]][k[1:]])
                    ev[k[1:]] = v.copy() if type(v) in (list, dict) else v
                elif c == "#":
                    ev[k[1:]] = next(vals)
                else:
                    v = items[next(vals)]
                    ev[k] = v.copy() if type(v) in (list, dict) else v
            out.append(ev)
        return out

"""Store schema 3 codec: compact node keys and self-contained compressed blocks.

A *block* holds what one batch wrote: nodes, edges and events, stored by column. Nodes
are grouped by shape (kind and attribute names), events by kind; each field is one
column. Every distinct string or argv list is stored once per block in its value table
and columns hold its index, so what events and nodes share (exe, argv, comm, cwd, users,
container ids, process ids) is stored once: an exec event and the image node it made
point at the same entries. Time columns and other large integers are delta-coded. The
block is a 17-byte header + zlib-compressed JSON: plain tools can read it (`decode_block`).

Graph parts since block version 4 are JSON *lines* (one value per line, so a node lookup
parses only what its row needs): a directory (`{"v", "g": group of each row, "k": each
group's field names, "i": how many leading table entries are the node ids}`), one line
per group's columns, the edge columns, then one line per value-table entry, the node ids
first in row order. A lookup decompresses the block, splits the lines (in C) and parses
the directory, the ids, its group and the table entries its row names, instead of the
whole block; an edge lookup parses the ids and the edges line. Version 3 graph parts
(one JSON document) are still read. Events parts keep the version 3 layout (one JSON
document, header version 3): they are read whole.

Node keys (`node_key`) pack the ids spyderd makes itself (`proc:...`, `conn:...`) into
12-20 bytes ordered by pid, so the id index doubles as the pid index; other ids are kept
as their UTF-8 text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from collections.abc import Callable, Iterable
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any

from spyderd.model import Edge, Node

BLOCK_VERSION = 4  # of graph parts; events parts keep EVENTS_VERSION's layout
EVENTS_VERSION = 3
HEADER = struct.Struct(">BQQ")  # version, first event time, last event time
_PID = struct.Struct(">I")
_BOOT = struct.Struct(">H")
_PROC = struct.Struct(">IHQ")  # pid, boot, start tick  (+ exec ktime)
_CONN = struct.Struct(">HQIHH")  # boot, ktime, pid, local port, remote port
_U64 = struct.Struct(">Q")
MAX_KEY = 480
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SLOTS = ("id", "end", "pid", "ppid", "uid", "parent", "via")  # after `start`
# Attribute values left out when equal to these (put back on decode), per node kind.
NODE_DEFAULTS = {"process": {"container_id": "", "cgroup_id": 0},
                 "connection": {"container_id": ""}}


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
    """The value of a canonical decimal (no sign, no leading zero), else None."""
    return int(s) if s.isdigit() and s.isascii() and (s[0] != "0" or s == "0") else None


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

ZLEVEL = 3  # level 6 saves ~4 B/event and costs ~3 us/event more (bench/README.md)
_BIG = 1 << 31
_SCALARS = (str, int, bool, float, type(None))
_STR, _INT, _LIST = {str}, {int}, {list}


def _refs(col: list[Any], index: dict[Any, int]) -> list[int]:
    """Table refs of a column of hashable values: new values enter the table in order of
    first use, then one C-level pass maps the column."""
    for v in dict.fromkeys(col):
        if v not in index:
            index[v] = len(index)
    return list(map(index.__getitem__, col))


def _column(col: list[Any], index: dict[Any, int], types: set[type] | None = None
            ) -> list[Any]:
    """[type, data]: 'c' one value for the whole column, 's' table refs, 'a' argv refs,
    'd' delta-coded ints, 'i' ints, 'j' anything else as JSON."""
    first = col[0]
    if types is None:
        types = set(map(type, col))
    if len(types) == 1 and type(first) in _SCALARS and col.count(first) == len(col):
        return ["c", first, len(col)]
    if types == _STR:
        return ["s", _refs(col, index)]
    if types == _INT:
        if max(col) >= _BIG or min(col) <= -_BIG:
            return ["d", [b - a for a, b in zip([0, *col], col)]]
        return ["i", col]
    if types == _LIST and set(map(type, chain.from_iterable(col))) <= _STR:
        return ["a", _refs([("L", *v) for v in col], index)]
    return ["j", col]


def _columns(raw: list[list[Any]], index: dict[Any, int]) -> list[Any]:
    """Columns of one group; a column equal to an earlier one (tid = pid) names it."""
    out: list[Any] = []
    kinds = [set(map(type, col)) for col in raw]  # False == 0: equal values, other types
    for i, col in enumerate(raw):
        same = next((j for j in range(i) if kinds[j] == kinds[i] and raw[j] == col), None)
        out.append(["=", same] if same is not None else _column(col, index, kinds[i]))
    return out


def _uncolumns(cols: list[Any], table: list[Any]) -> list[list[Any]]:
    data: list[list[Any]] = []
    for c in cols:
        data.append(data[c[1]] if c[0] == "=" else _uncolumn(c, table))
    return data


def _row_at(cols: list[Any], k: int, table: list[Any]) -> list[Any]:
    """Row `k` of a group's columns without decoding the columns."""
    out: list[Any] = []
    for c in cols:
        tp = c[0]
        if tp == "=":
            out.append(out[c[1]])
        elif tp == "c":
            out.append(c[1])
        elif tp in ("s", "a"):
            out.append(table[c[1][k]])
        elif tp == "d":
            out.append(sum(c[1][:k + 1]))
        else:
            out.append(c[1][k])
    return out


def _uncolumn(c: list[Any], table: list[Any]) -> list[Any]:
    tp, data = c[0], c[1]
    if tp == "c":
        return [data] * c[2]
    if tp == "s":
        return [table[i] for i in data]
    if tp == "a":
        return [table[i] for i in data]  # lists: copied when handed out
    if tp == "d":
        out, acc = [], 0
        for d in data:
            acc += d
            out.append(acc)
        return out
    return data


def _table(index: dict[Any, int]) -> list[Any]:
    return [list(k[1:]) if type(k) is tuple else k for k in index]


def _ev_fields(ev: Any) -> tuple[str, ...]:
    """Field names of a stored event: a dict's keys, or `kind` + the dataclass fields of an
    `Event` (alone or in a graph pair, see `ev_columns`)."""
    if type(ev) is dict:
        return tuple(ev)
    tp = type(ev[0]) if type(ev) is tuple else type(ev)
    names = _FIELDS.get(tp)
    if names is None:
        names = _FIELDS[tp] = ("kind", *(f.name for f in dataclasses.fields(tp)))
    return names


_FIELDS: dict[type, tuple[str, ...]] = {}


def ev_shape(ev: Any) -> Any:
    """What groups events into one column set: the type of an `Event` (or of a pair's
    event), the keys of a dict."""
    tp = type(ev)
    if tp is tuple:
        return (tuple, type(ev[0]))
    return tuple(ev) if tp is dict else tp


def ev_time(ev: Any) -> int:
    tp = type(ev)
    return ev["time"] if tp is dict else ev[0].time if tp is tuple else ev.time


def ev_get(ev: Any, f: str, default: Any = None) -> Any:
    """A field of a stored event in any of its forms: the dict of `event_record`, an
    `Event`, or the graph's (event, process id) pair."""
    tp = type(ev)
    if tp is dict:
        return ev.get(f, default)
    if tp is tuple:
        if f == "process_id":
            return ev[1] or ev[0].process_id
        ev = ev[0]
    return getattr(ev, f, default)


def ev_columns(evs: list[Any], keys: Iterable[str]) -> list[list[Any]]:
    """Columns `keys` of events of one shape (`ev_shape`), one C-level pass per column;
    a field the shape lacks reads as None.

    Pairs from the graph carry the image they were filed under; it wins over the
    event's own `process_id` (what `event_record` does for the dict form)."""
    first = evs[0]
    tp = type(first)
    if tp is dict:
        return [[e.get(k) for e in evs] for k in keys]
    pids: list[str] | None = None
    if tp is tuple:
        objs = list(map(itemgetter(0), evs))
        pids = [p or e.process_id for e, p in evs]
    else:
        objs = evs
    out = []
    have = _ev_fields(first)
    for k in keys:
        if k == "process_id" and pids is not None:
            out.append(pids)
        elif k == "kind":
            out.append([objs[0].kind] * len(objs))
        elif k not in have:  # a field other kinds have (`path2` of a file event)
            out.append([None] * len(objs))
        else:
            out.append(list(map(attrgetter(k), objs)))
    return out


class BlockWriter:
    """Collects one block's nodes, edges and events; `encode` lays them out by column."""

    def __init__(self) -> None:
        self.node_objs: list[Node] = []
        self.rows: dict[str, int] = {}
        self.edge_objs: list[Edge] = []
        self.raw_events: list[Any] = []
        self.ev_first = self.ev_last = 0

    @property
    def nodes(self) -> list[Node]:
        return self.node_objs

    @property
    def edges(self) -> list[Edge]:
        return self.edge_objs

    @property
    def events(self) -> list[Any]:
        return self.raw_events

    def add_node(self, n: Node) -> None:
        self.rows[n.id] = len(self.node_objs)
        self.node_objs.append(n)

    def add_edge(self, e: Edge) -> None:
        self.edge_objs.append(e)

    def edge_ends(self) -> list[tuple[str, str, str]]:
        """(src, dst, kind) of every edge in the block."""
        return [(e.src, e.dst, e.kind) for e in self.edge_objs]

    def add_event(self, ev: Any) -> None:
        """An event (an `Event` or its dict form); add them in time order."""
        t = ev_time(ev)
        if not self.raw_events:
            self.ev_first = self.ev_last = t
        self.ev_first = min(self.ev_first, t)
        self.ev_last = max(self.ev_last, t)
        self.raw_events.append(ev)

    def add_events(self, evs: list[Any], get_t: Callable[[Any], int]) -> None:
        """Events already in time order (see `add_event`)."""
        if not evs:
            return
        first, last = get_t(evs[0]), get_t(evs[-1])
        if not self.raw_events:
            self.ev_first, self.ev_last = first, last
        self.ev_first = min(self.ev_first, first)
        self.ev_last = max(self.ev_last, last)
        self.raw_events.extend(evs)

    def encode(self) -> tuple[bytes, bytes | None]:
        """(graph part, events part or None). The events part uses the graph part's
        table and adds only what the graph does not hold (paths, addresses...), so it can
        be deleted alone when raw events age out, but never outlive the graph part."""
        return self.encode_as(BLOCK_VERSION)

    def encode_as(self, version: int) -> tuple[bytes, bytes | None]:
        """`encode` in a given graph part layout (3: one JSON document; 4: JSON lines)."""
        index: dict[Any, int] = {}
        if version >= 4:  # the table starts with the node ids in row order (`_lines`)
            index.update((n.id, i) for i, n in enumerate(self.node_objs))
        lead = len(index) if len(index) == len(self.node_objs) else 0
        nodes = self._nodes(index)
        edges = self._edges(index)
        shared = len(index)
        events = self._events(index) if self.raw_events else None
        table = _table(index)
        body = {"v": version, "n": nodes, "e": edges, "t": table[:shared]}
        payload = _lines(body, lead) if version >= 4 else _ENCODE(body).encode()
        main = HEADER.pack(version, self.ev_first, self.ev_last) + zlib.compress(payload, ZLEVEL)
        if events is None:
            return main, None
        ev_body = {"v": EVENTS_VERSION, "x": events, "t": table[shared:]}
        head = HEADER.pack(EVENTS_VERSION, self.ev_first, self.ev_last)
        return main, head + zlib.compress(_ENCODE(ev_body).encode(), ZLEVEL)

    def _nodes(self, index: dict[Any, int]) -> dict[str, Any]:
        """Nodes grouped by attribute names; the slots and each attribute one column."""
        groups: dict[tuple[str, ...], list[Node]] = {}
        shapes: dict[tuple[str, ...], int] = {}
        order = []
        for n in self.node_objs:
            keys = (n.kind, *n.attrs)
            order.append(shapes.setdefault(keys, len(shapes)))
            groups.setdefault(keys, []).append(n)
        out = []
        for keys, nodes in groups.items():
            starts = [n.start for n in nodes]
            core = [list(map(attrgetter(k), nodes)) for k in _SLOTS]
            core[1] = [e - s + 1 if e else 0 for s, e in zip(starts, core[1])]  # durations
            attrs = [[n.attrs[k] for n in nodes] for k in keys[1:]]
            out.append([list(keys), _columns([starts, *core, *attrs], index)])
        return {"g": order, "s": out}

    def _edges(self, index: dict[Any, int]) -> list[Any]:
        es = self.edge_objs
        if not es:
            return []
        return [_column([e.src for e in es], index), _column([e.dst for e in es], index),
                _column([e.kind for e in es], index), _column([e.time for e in es], index)]

    def _events(self, index: dict[Any, int]) -> dict[str, Any]:
        groups: dict[Any, list[Any]] = {}
        shapes: dict[Any, int] = {}
        order = []
        for ev in self.raw_events:
            shape = ev_shape(ev)
            order.append(shapes.setdefault(shape, len(shapes)))
            groups.setdefault(shape, []).append(ev)
        out = []
        for evs in groups.values():
            keys = _ev_fields(evs[0])
            raw = ev_columns(evs, keys)
            if "ktime" in keys and "time" in keys:  # the boot offset: nearly constant
                ti, ki = keys.index("time"), keys.index("ktime")
                raw[ki] = [t - k for t, k in zip(raw[ti], raw[ki])]
            out.append([list(keys), _columns(raw, index)])
        return {"g": order, "s": out}


def block_times(raw: bytes) -> tuple[int, int]:
    """(first, last) event time of an encoded block, without decompressing it."""
    _, first, last = HEADER.unpack_from(raw)
    return first, last


def _lines(body: dict[str, Any], lead: int) -> bytes:
    """The version 4 graph part: directory, group columns, edges, table entries, one
    compact JSON value per line (compact JSON never holds a raw newline). The first
    `lead` table entries ("i" in the directory; 0 if a block ever held a node twice) are
    the node ids in row order, so finding a row parses those lines alone."""
    groups = body["n"]["s"]
    head = {"v": body["v"], "g": body["n"]["g"], "k": [keys for keys, _ in groups],
            "i": lead}
    out = [_ENCODE(head), *(_ENCODE(cols) for _, cols in groups), _ENCODE(body["e"]),
           *map(_ENCODE, body["t"])]
    return "\n".join(out).encode()


LAZY_REFS = 24  # an edge column naming more table entries than this parses the whole table


def _parse_lines(lines: list[bytes]) -> list[Any]:
    """Several JSON lines in one C-level parse."""
    return json.loads(b"[" + b",".join(lines) + b"]")


def _split(raw: bytes) -> list[bytes] | None:
    """The lines of a version 4 graph part, or None for an older one-document part."""
    payload = zlib.decompress(memoryview(raw)[HEADER.size:])
    return payload.split(b"\n") if raw[0] >= 4 else [payload]


def _assemble(lines: list[bytes]) -> dict[str, Any]:
    """The version 3 body (one document) from version 4 lines: for whole-block reads."""
    head = json.loads(lines[0])
    ng = len(head["k"])
    groups = _parse_lines(lines[1:1 + ng])
    return {"v": head["v"], "n": {"g": head["g"], "s": [list(x) for x in zip(head["k"], groups)]},
            "e": json.loads(lines[1 + ng]), "t": _parse_lines(lines[2 + ng:])}


def decode_block(raw: bytes) -> dict[str, Any]:
    """The block's JSON body as one document (layout: see BlockWriter.encode)."""
    lines = _split(raw)
    return _assemble(lines) if raw[0] >= 4 else json.loads(lines[0])


def _copy(v: Any) -> Any:
    return v.copy() if type(v) in (list, dict) else v


class _LazyTable:
    """A version 4 block's value table: entries parsed one by one as rows name them, or
    all at once (one C-level parse) when a column names many of them."""

    __slots__ = ("base", "cache", "full", "lines")

    def __init__(self, lines: list[bytes], base: int) -> None:
        self.lines, self.base, self.cache = lines, base, {}
        self.full: list[Any] | None = None

    def __getitem__(self, i: int) -> Any:
        if self.full is not None:
            return self.full[i]
        v = self.cache.get(i, self)
        if v is self:
            v = self.cache[i] = json.loads(self.lines[self.base + i])
        return v

    def whole(self) -> list[Any]:
        if self.full is None:
            self.full = _parse_lines(self.lines[self.base:])
        return self.full

    def misses(self, refs: list[int]) -> int:
        """How many distinct entries of `refs` would need a parse of their own."""
        cache = self.cache
        return sum(1 for i in set(refs) if i not in cache)


class Block:
    """A decoded block: nodes, edges and (given its events part) events, on demand.

    A version 4 graph part is parsed piecemeal: a node lookup reads the directory, the
    ids, its group's columns and the table entries of its row; `body` (the whole block
    as one document, for edges, events and scans) is assembled on first use."""

    __slots__ = ("_body", "_dir", "_edges", "_groups", "_ids", "_lines", "_pos", "_table",
                 "ev_raw")

    def __init__(self, raw: bytes, ev_raw: bytes | None = None) -> None:
        lines = _split(raw)
        self._lines: list[bytes] | None = lines if raw[0] >= 4 else None
        self._body: dict[str, Any] | None = None if raw[0] >= 4 else json.loads(lines[0])
        self._dir: dict[str, Any] | None = None
        self._groups: dict[int, list[Any]] = {}
        self._table: Any = None
        self.ev_raw = ev_raw
        self._pos: list[tuple[int, int]] | None = None
        self._ids: dict[str, int] | None = None
        self._edges: list[Edge] | None = None

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            self._body = _assemble(self._lines)
            self._table = self._body["t"]
        return self._body

    @property
    def table(self) -> Any:
        """The value table (lazy for a version 4 part until the whole body is read)."""
        if self._table is None:
            if self._lines is None or self._body is not None:
                self._table = self.body["t"]
            else:
                self._table = _LazyTable(self._lines, 2 + len(self._directory()["k"]))
        return self._table

    def _directory(self) -> dict[str, Any]:
        if self._dir is None:
            if self._lines is None:
                n = self.body["n"]
                self._dir = {"g": n["g"], "k": [keys for keys, _ in n["s"]]}
            else:
                self._dir = json.loads(self._lines[0])
        return self._dir

    def _group(self, g: int) -> list[Any]:
        """The columns of node group `g`."""
        cols = self._groups.get(g)
        if cols is None:
            if self._lines is None or self._body is not None:
                cols = self.body["n"]["s"][g][1]
            else:
                cols = json.loads(self._lines[1 + g])
            self._groups[g] = cols
        return cols

    @property
    def node_rows(self) -> list[int]:
        return self._directory()["g"]

    @property
    def edge_rows(self) -> list[Any]:
        return self.body["e"]

    def with_events(self, ev_raw: bytes | None) -> Block:
        """The same graph part with an events part (decoded parts are shared)."""
        b = Block.__new__(Block)
        for name in Block.__slots__:
            setattr(b, name, getattr(self, name))
        b.ev_raw = ev_raw
        return b

    def _where(self) -> list[tuple[int, int]]:
        """(group, position in group) of every row, from the group order column."""
        if self._pos is None:
            seen: dict[int, int] = {}
            out = []
            for g in self._directory()["g"]:
                k = seen.get(g, 0)
                out.append((g, k))
                seen[g] = k + 1
            self._pos = out
        return self._pos

    def ids(self) -> dict[str, int]:
        """node id -> row; decodes only the ids (the leading table lines of a version 4
        part, else the id columns)."""
        if self._ids is None:
            lead = self._directory().get("i", 0)
            if self._lines is not None and self._body is None and lead:
                table = self.table
                ids = _parse_lines(table.lines[table.base:table.base + lead])
                table.cache.update(enumerate(ids))
                self._ids = {nid: i for i, nid in enumerate(ids)}
            else:
                keys = self._directory()["k"]
                cols = [_uncolumns(self._group(g)[:2], self.table)[1] for g in range(len(keys))]
                self._ids = {cols[g][k]: i for i, (g, k) in enumerate(self._where())}
        return self._ids

    def starts(self) -> list[int]:
        keys = self._directory()["k"]
        cols = [_uncolumns(self._group(g)[:1], self.table)[0] for g in range(len(keys))]
        return [cols[g][k] for g, k in self._where()]

    def node(self, i: int) -> Node:
        """One row, decoded alone (a trace reads a few nodes of many blocks)."""
        g, k = self._where()[i]
        keys = self._directory()["k"][g]
        v = _row_at(self._group(g), k, self.table)
        start, end = v[0], v[2]
        return Node(id=v[1], kind=keys[0], start=start, end=start + end - 1 if end else 0,
                    pid=v[3], ppid=v[4], uid=v[5], parent=v[6], via=v[7],
                    attrs={k: _copy(x) for k, x in zip(keys[1:], v[8:])})

    def nodes(self) -> list[Node]:
        return [self.node(i) for i in range(len(self.node_rows))]

    def nodes_with_key(self, key: bytes, boots: BootTable) -> list[Node]:
        """The block's nodes whose id index key is `key`."""
        return [self.node(i) for nid, i in self.ids().items() if node_key(nid, boots) == key]

    def edges(self) -> list[Edge]:
        if self._edges is None:
            if self._lines is not None and self._body is None:
                self.ids()  # the ids lead the table: edge ends mostly name them
                cols = json.loads(self._lines[1 + len(self._directory()["k"])])
                table = self.table
                if type(table) is _LazyTable and sum(
                        table.misses(c[1]) for c in cols if c[0] == "s") > LAZY_REFS:
                    table.whole()
            else:
                cols = self.body["e"]
            if not cols:
                self._edges = []
            else:
                src, dst, kind, t = (_uncolumn(c, self.table) for c in cols)
                self._edges = [Edge(*x) for x in zip(src, dst, kind, t)]
        return self._edges

    def edges_of(self, node_id: str, direction: str) -> list[Edge]:
        """Edges of the block leaving (`out`) or entering (`in`) a node."""
        if direction == "out":
            return [e for e in self.edges() if e.src == node_id]
        return [e for e in self.edges() if e.dst == node_id]

    def events(self, field: str | None = None, value: Any = None) -> list[dict[str, Any]]:
        """Every event of the block, in the order written (time order), as dicts; with
        `field`, only those whose `field` equals `value` (rows are picked on the column,
        so a lookup by pid builds dicts for its own events only)."""
        if self.ev_raw is None:
            return []
        ev_body = decode_block(self.ev_raw)
        part, table = ev_body["x"], self.body["t"] + ev_body["t"]
        groups = []
        for keys, cols in part["s"]:
            data = _uncolumns(cols, table)
            if "ktime" in keys and "time" in keys:
                ti, ki = keys.index("time"), keys.index("ktime")
                data[ki] = [t - off for t, off in zip(data[ti], data[ki])]
            keep = None
            if field is not None:
                col = data[keys.index(field)] if field in keys else ()
                keep = {i for i, v in enumerate(col) if v == value}
            groups.append((keys, list(zip(*data)), keep))
        pos = [0] * len(groups)
        out = []
        for g in part["g"]:
            keys, rows, keep = groups[g]
            if keep is None or pos[g] in keep:
                out.append({k: _copy(v) for k, v in zip(keys, rows[pos[g]])})
            pos[g] += 1
        return out

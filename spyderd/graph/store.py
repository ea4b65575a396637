"""LMDB store: nodes, edges, events and findings, written in batched transactions.

Readers (spyderctl) open the same environment read-only while the daemon writes;
LMDB gives them a consistent snapshot. A commit is atomic, so a `kill -9` loses at
most the batch not yet committed and never leaves a half-written graph.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb

from spyderd.errors import StoreError
from spyderd.model import Edge, Finding, Node

SCHEMA_VERSION = 1
_DBS = ("meta", "nodes", "edges_out", "edges_in", "events", "findings", "traces",
        "idx_pid", "idx_time")
_U64 = struct.Struct(">Q")
_PIDKEY = struct.Struct(">IQ")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _edge_val(other: str, kind: str, t: int) -> bytes:
    return _dumps([other, kind, t])


class Store:
    """One LMDB environment under `<state_dir>/store`."""

    def __init__(self, state_dir: str | Path, *, readonly: bool = False,
                 map_size: int = 1 << 30) -> None:
        self.path = Path(state_dir) / "store"
        self.readonly = readonly
        if readonly and not (self.path / "data.mdb").exists():
            raise StoreError(f"no spyderd store at {self.path} (has the daemon run here?)")
        try:
            if not readonly:
                self.path.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.env = lmdb.open(str(self.path), max_dbs=len(_DBS) + 1, map_size=map_size,
                                 readonly=readonly, lock=True, subdir=True)
        except PermissionError as exc:
            raise StoreError(f"permission denied: {self.path}: {exc.strerror}") from None
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self.db = {n: self.env.open_db(n.encode(), create=not readonly,
                                       dupsort=n in ("edges_out", "edges_in", "idx_pid"))
                   for n in _DBS}
        if not readonly:
            self._check_schema()

    def _check_schema(self) -> None:
        with self.env.begin(write=True) as txn:
            raw = txn.get(b"schema", db=self.db["meta"])
            if raw is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self.db["meta"])
            elif int(raw) > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema {int(raw)}, newer than this "
                                 f"spyderd ({SCHEMA_VERSION}); refusing to touch it")

    # -- writing ---------------------------------------------------------------------------

    def write_batch(self, nodes: list[Node], edges: list[Edge], events: list[dict],
                    findings: list[Finding], traces: dict[str, dict]) -> None:
        """Commit one batch atomically, growing the map when it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    self._put_all(txn, nodes, edges, events, findings, traces)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def _put_all(self, txn, nodes, edges, events, findings, traces) -> None:
        db = self.db
        for n in nodes:
            key = n.id.encode()
            if txn.get(key, db=db["nodes"]) is None:
                txn.put(_U64.pack(n.start) + key, b"", db=db["idx_time"])
                if n.kind == "process":
                    txn.put(_PIDKEY.pack(n.pid, n.attrs.get("start_ns", 0)), key,
                            db=db["idx_pid"])
            txn.put(key, _dumps(n.to_dict()), db=db["nodes"])
        for e in edges:
            txn.put(e.src.encode(), _edge_val(e.dst, e.kind, e.time), db=db["edges_out"])
            txn.put(e.dst.encode(), _edge_val(e.src, e.kind, e.time), db=db["edges_in"])
        seq = self._next_seq(txn)
        for ev in events:
            txn.put(_U64.pack(ev["time"]) + _U64.pack(seq), _dumps(ev), db=db["events"])
            seq += 1
        txn.put(b"event_seq", str(seq).encode(), db=db["meta"])
        for f in findings:
            txn.put(f.id.encode(), _dumps(f.to_dict()), db=db["findings"])
        for tid, tr in traces.items():
            txn.put(tid.encode(), _dumps(tr), db=db["traces"])

    def _next_seq(self, txn) -> int:
        raw = txn.get(b"event_seq", db=self.db["meta"])
        return int(raw) if raw else 0

    def put_meta(self, key: str, value: Any) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key.encode(), _dumps(value), db=self.db["meta"])

    # -- reading ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        with self.env.begin() as txn:
            raw = txn.get(key.encode(), db=self.db["meta"])
        return json.loads(raw) if raw else None

    def node(self, node_id: str) -> Node | None:
        with self.env.begin() as txn:
            raw = txn.get(node_id.encode(), db=self.db["nodes"])
        return Node.from_dict(json.loads(raw)) if raw else None

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]:
        """Edges leaving (`out`) or entering (`in`) a node."""
        out = []
        with self.env.begin() as txn, txn.cursor(db=self.db[f"edges_{direction}"]) as cur:
            if cur.set_key(node_id.encode()):
                for raw in cur.iternext_dup():
                    other, kind, t = json.loads(raw)
                    src, dst = (node_id, other) if direction == "out" else (other, node_id)
                    out.append(Edge(src, dst, kind, t))
        return out

    def processes_by_pid(self, pid: int) -> list[Node]:
        """Every stored image of a pid, oldest process first."""
        out = []
        lo = _PIDKEY.pack(pid, 0)
        with self.env.begin() as txn, txn.cursor(db=self.db["idx_pid"]) as cur:
            if cur.set_range(lo):
                for key, val in cur:
                    if _PIDKEY.unpack(key)[0] != pid:
                        break
                    raw = txn.get(val, db=self.db["nodes"])
                    if raw:
                        out.append(Node.from_dict(json.loads(raw)))
        return out

    def finding(self, fid: str) -> Finding | None:
        with self.env.begin() as txn:
            raw = txn.get(fid.encode(), db=self.db["findings"])
        return Finding.from_dict(json.loads(raw)) if raw else None

    def findings(self) -> Iterator[Finding]:
        with self.env.begin() as txn, txn.cursor(db=self.db["findings"]) as cur:
            for _, raw in cur:
                yield Finding.from_dict(json.loads(raw))

    def trace(self, tid: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(tid.encode(), db=self.db["traces"])
        return json.loads(raw) if raw else None

    def events(self, since_ns: int = 0, until_ns: int | None = None) -> Iterator[dict]:
        """Stored events in time order."""
        with self.env.begin() as txn, txn.cursor(db=self.db["events"]) as cur:
            if not cur.set_range(_U64.pack(max(since_ns, 0))):
                return
            for key, raw in cur:
                if until_ns is not None and _U64.unpack_from(key)[0] > until_ns:
                    break
                yield json.loads(raw)

    def stats(self) -> dict[str, int]:
        out = {}
        with self.env.begin() as txn:
            for name, db in self.db.items():
                out[name] = txn.stat(db)["entries"]
        out["bytes"] = os.path.getsize(self.path / "data.mdb")
        return out

    def close(self) -> None:
        self.env.close()

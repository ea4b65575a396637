"""Schema migrations: every older store is brought to the current schema when the daemon
opens it (readers refuse an unmigrated store with a clear message).

Schemas 1 and 2 kept one LMDB value per node and per edge; schema 3 keeps blocks (see
`spyderd.graph.store`); schema 4 writes graph parts as JSON lines (block version 4) and
reads version 3 blocks as they are, so 3 -> 4 rewrites nothing (the bump only keeps an
older spyderctl from misreading the new blocks). The step reads the old databases, writes blocks and their indexes
in node start order, keeps findings and traces as they are, pins what findings name, and
drops the old databases, all in one transaction: a crash during it leaves the old store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import lmdb

from spyderd.errors import StoreError
from spyderd.graph import legacy
from spyderd.graph.codec import BlockWriter
from spyderd.graph.store import (
    BLOCK_SPAN_NS,
    MAX_BLOCK_EVENTS,
    MAX_BLOCK_NODES,
    SCHEMA_VERSION,
    Store,
)
from spyderd.model import Edge, Finding, Node

OLD_DBS = ("nodes", "edges_out", "edges_in", "events", "idx_pid", "idx_time", "idx_end",
           "idx_container")
OLD_DUPSORT = ("edges_out", "edges_in", "idx_pid")


def migrate(store: Store) -> None:
    """Bring the store to SCHEMA_VERSION; refuse newer stores."""
    version = store.schema()
    if version is None:
        store._write(lambda txn: txn.put(b"schema", str(SCHEMA_VERSION).encode(),
                                         db=store.db["meta"]))
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {store.path} has schema {version}, newer than this spyderd "
                         f"({SCHEMA_VERSION}); refusing to touch it")
    if version < 3:
        store._write(lambda txn: _to_3(store, txn))
    elif version < SCHEMA_VERSION:
        store._write(lambda txn: txn.put(b"schema", str(SCHEMA_VERSION).encode(),
                                         db=store.db["meta"]))


def _old_db(store: Store, txn, name: str):
    try:
        return store.env.open_db(name.encode(), txn=txn, create=False,
                                 dupsort=name in OLD_DUPSORT)
    except lmdb.NotFoundError:
        return None


def _to_3(store: Store, txn) -> None:
    old = {n: _old_db(store, txn, n) for n in OLD_DBS}
    edges = _old_edges(txn, old["edges_out"])
    writer = BlockWriter()
    for node in _old_nodes(txn, old["nodes"], old["idx_time"]):
        if len(writer.nodes) >= MAX_BLOCK_NODES:
            _flush_nodes(store, txn, writer, edges)
            writer = BlockWriter()
        writer.add_node(node)
    _flush_nodes(store, txn, writer, edges)
    rest = [e for es in edges.values() for e in es]  # edges whose source was never stored
    if rest:
        writer = BlockWriter()
        for e in rest:
            writer.add_edge(e)
        store.put_blocks(txn, [writer])
    count = _move_events(store, txn, old["events"])
    txn.put(b"event_count", str(count).encode(), db=store.db["meta"])
    with txn.cursor(db=store.db["findings"]) as cur:
        for _, raw in cur:
            store._put_finding(txn, Finding.from_dict(json.loads(raw)), reindex=True)
    for db in old.values():
        if db is not None:
            txn.drop(db, delete=True)
    txn.put(b"boots", json.dumps(store.boots.names).encode(), db=store.db["meta"])
    txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=store.db["meta"])


def _old_edges(txn, db) -> dict[str, list[Edge]]:
    out: dict[str, list[Edge]] = {}
    if db is None:
        return out
    with txn.cursor(db=db) as cur:
        for key, raw in cur:
            src = key.decode()
            dst, kind, t = legacy.decode_edge(raw)
            out.setdefault(src, []).append(Edge(src, dst, kind, t))
    return out


def _old_nodes(txn, nodes_db, time_db) -> Iterator[Node]:
    if nodes_db is None:
        return
    seen: set[bytes] = set()
    if time_db is not None:
        with txn.cursor(db=time_db) as cur:
            for key in cur.iternext(values=False):
                nid = key[8:]
                raw = txn.get(nid, db=nodes_db)
                if raw is not None and nid not in seen:
                    seen.add(nid)
                    yield legacy.decode_node(raw, nid.decode())
    with txn.cursor(db=nodes_db) as cur:
        for key, raw in cur:
            if key not in seen:
                yield legacy.decode_node(raw, key.decode())


def _flush_nodes(store: Store, txn, writer: BlockWriter,
                 edges: dict[str, list[Edge]]) -> None:
    for nid in list(writer.rows):
        for e in edges.pop(nid, ()):
            writer.add_edge(e)
    if writer.nodes or writer.edges:
        store.put_blocks(txn, [writer])


def _move_events(store: Store, txn, db) -> int:
    if db is None:
        return 0
    count = 0
    writer = BlockWriter()
    with txn.cursor(db=db) as cur:
        for _, raw in cur:
            for ev in sorted(legacy.decode_events(raw), key=lambda e: e["time"]):
                if writer.events and (len(writer.events) >= MAX_BLOCK_EVENTS
                                      or ev["time"] - writer.ev_first > BLOCK_SPAN_NS):
                    store.put_blocks(txn, [writer])
                    writer = BlockWriter()
                writer.add_event(ev)
                count += 1
    if writer.events:
        store.put_blocks(txn, [writer])
    return count


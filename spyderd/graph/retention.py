"""Retention: prune by age and by size, oldest first, in chunks that never stall capture.

Only ended nodes are pruned (a live process, and the ancestry of one, stays however old);
a pruned node takes its edges (both directions) and index entries with it, so the graph
invariants hold after every chunk: every edge's ends exist, no index entry is an orphan.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from spyderd.graph.store import (
    PIDKEY,
    SELF_DESCRIBED,
    U64,
    Store,
    _edge_val,
    decode_edge,
    decode_node,
    implied_in_edge,
    time_key,
)


@dataclass
class Policy:
    max_age_s: float = 90 * 86400
    max_bytes: int = 0  # 0 = no size limit
    chunk: int = 500  # deletions per transaction


@dataclass
class PruneResult:
    nodes: int = 0
    event_blocks: int = 0
    findings: int = 0
    done: bool = True


def prune(store: Store, policy: Policy, now_ns: int | None = None) -> PruneResult:
    """One bounded pruning step; call again while `done` is False."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    cutoff = now_ns - int(policy.max_age_s * 1e9)
    if policy.max_bytes and store.stats()["used_bytes"] > policy.max_bytes:
        oldest = _oldest_time(store)
        step = max((now_ns - oldest) // 10, 1)  # a tenth of the history per step
        cutoff = max(cutoff, oldest + step)
    res = PruneResult()

    def step(txn) -> None:
        res.event_blocks = _prune_events(store, txn, cutoff, policy.chunk)
        res.nodes = _prune_nodes(store, txn, cutoff, policy.chunk)
        res.findings = _prune_findings(store, txn, cutoff, policy.chunk)

    store._write(step)
    res.done = max(res.event_blocks, res.nodes, res.findings) < policy.chunk
    return res


def _oldest_time(store: Store) -> int:
    oldest = []
    with store.env.begin() as txn:
        for name in ("events", "idx_end", "idx_ftime"):
            with txn.cursor(db=store.db[name]) as cur:
                if cur.first():
                    oldest.append(U64.unpack_from(cur.key())[0])
    return min(oldest) if oldest else time.time_ns()


def _prune_events(store: Store, txn, cutoff: int, limit: int) -> int:
    n = 0
    with txn.cursor(db=store.db["events"]) as cur:
        while n < limit and cur.first():
            if U64.unpack_from(cur.value())[0] >= cutoff:
                break
            cur.delete()
            n += 1
    return n


def _prune_nodes(store: Store, txn, cutoff: int, limit: int) -> int:
    db = store.db
    n = 0
    with txn.cursor(db=db["idx_end"]) as cur:
        while n < limit and cur.first():
            key = cur.key()
            if U64.unpack_from(key)[0] >= cutoff:
                break
            cur.delete()
            delete_node(store, txn, key[8:].decode())
            n += 1
    return n


def delete_node(store: Store, txn, node_id: str) -> None:
    """Remove a node, its edges in both directions and its index entries."""
    db = store.db
    key = node_id.encode()
    raw = txn.get(key, db=db["nodes"])
    for direction, reverse in (("edges_out", "edges_in"), ("edges_in", "edges_out")):
        with txn.cursor(db=db[direction]) as cur:
            if cur.set_key(key):
                for val in list(cur.iternext_dup()):
                    other, kind, t = decode_edge(val)
                    if direction == "edges_in" or kind not in SELF_DESCRIBED:
                        txn.delete(other.encode(), _edge_val(node_id, kind, t), db=db[reverse])
                txn.delete(key, db=db[direction])
    if raw is None:
        return
    node = decode_node(raw, node_id)
    implied = implied_in_edge(node)
    if implied is not None:  # the parent's/owner's out-edge to this node goes too
        txn.delete(implied.src.encode(), _edge_val(node_id, implied.kind, implied.time),
                   db=db["edges_out"])
    txn.delete(time_key(node.start, node.id), db=db["idx_time"])
    if node.end:
        txn.delete(time_key(node.end, node.id), db=db["idx_end"])
    if node.kind == "process":
        txn.delete(PIDKEY.pack(node.pid, node.attrs.get("start_ns", 0)), key, db=db["idx_pid"])
        ctr = node.attrs.get("container_id")
        if ctr:
            txn.delete(ctr.encode() + b"\0" + time_key(node.start, node.id),
                       db=db["idx_container"])
    txn.delete(key, db=db["nodes"])


def _prune_findings(store: Store, txn, cutoff: int, limit: int) -> int:
    db = store.db
    n = 0
    with txn.cursor(db=db["idx_ftime"]) as cur:
        while n < limit and cur.first():
            key = cur.key()
            if U64.unpack_from(key)[0] >= cutoff:
                break
            cur.delete()
            fid = key[8:]
            raw = txn.get(fid, db=db["findings"])
            if raw:
                f = json.loads(raw)
                txn.delete(f["rule"].encode() + b"\0" + key, db=db["idx_rule"])
                txn.delete(fid, db=db["findings"])
            n += 1
    return n


def check_invariants(store: Store) -> list[str]:
    """Every edge's ends exist, every index entry points at a stored record."""
    problems: list[str] = []
    db = store.db
    with store.env.begin() as txn:
        def exists(name: str, key: bytes) -> bool:
            return txn.get(key, db=db[name]) is not None

        for direction in ("edges_out", "edges_in"):
            with txn.cursor(db=db[direction]) as cur:
                for key, val in cur:
                    other = decode_edge(val)[0]
                    if not exists("nodes", key) or not exists("nodes", other.encode()):
                        problems.append(f"{direction}: {key.decode()} -> {other}: missing end")
        with txn.cursor(db=db["idx_pid"]) as cur:
            for key, val in cur:
                if not exists("nodes", val):
                    problems.append(f"idx_pid: orphan {val.decode()}")
        for name in ("idx_time", "idx_end"):
            with txn.cursor(db=db[name]) as cur:
                for key in cur.iternext(values=False):
                    if not exists("nodes", key[8:]):
                        problems.append(f"{name}: orphan {key[8:].decode()}")
        with txn.cursor(db=db["idx_container"]) as cur:
            for key in cur.iternext(values=False):
                if not exists("nodes", key.split(b"\0", 1)[1][8:]):
                    problems.append(f"idx_container: orphan {key!r}")
        with txn.cursor(db=db["idx_ftime"]) as cur:
            for key in cur.iternext(values=False):
                if not exists("findings", key[8:]):
                    problems.append(f"idx_ftime: orphan {key[8:].decode()}")
    return problems

"""Retention by value: raw events age out first, then graph nodes nobody needs, then findings.

Three horizons, oldest data first within each, in chunks that never stall capture:

1. **Events** older than `events_age_s` are stripped from their blocks (the block is
   rewritten with its nodes and edges only). The audit trail is the bulk of the store and
   the graph summarises it.
2. **Nodes** in blocks whose newest node time is older than `max_age_s` are dropped,
   except what still explains something: live processes, the ancestry of live processes,
   and nodes a kept finding names (its subject, trace root, referenced nodes and chain:
   the `pins` index). Those are carried forward into a new block, with the edges between
   kept nodes, and the old block goes.
3. **Findings** (and their traces) older than `findings_age_s`; their pins then expire.

Over the size limit the same order holds: events go first (a tenth of their span per
step) while they reach further back than the newest quarter of the graph's span; then
nodes; findings only when nothing else is left to prune.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from spyderd.graph.codec import Block, BlockWriter, block_times, loc_key, node_key
from spyderd.graph.store import (
    U64,
    Store,
    event_index_keys,
    node_index_keys,
)
from spyderd.model import Node

DAY_S = 86400.0


@dataclass
class Policy:
    max_age_s: float = 90 * DAY_S  # graph nodes
    max_bytes: int = 0  # 0 = no size limit
    chunk: int = 500  # deletions per transaction (events, nodes or findings)
    events_age_s: float | None = None  # raw events; default a third of max_age_s
    findings_age_s: float | None = None  # findings and traces; default 2 x max_age_s

    def horizons(self) -> tuple[float, float, float]:
        ev = self.events_age_s if self.events_age_s is not None else self.max_age_s / 3
        fnd = self.findings_age_s if self.findings_age_s is not None else 2 * self.max_age_s
        return min(ev, self.max_age_s), self.max_age_s, max(fnd, self.max_age_s)


@dataclass
class PruneResult:
    nodes: int = 0
    event_blocks: int = 0
    findings: int = 0
    carried: int = 0
    done: bool = True
    cutoffs: dict[str, int] = field(default_factory=dict)


def prune(store: Store, policy: Policy, now_ns: int | None = None) -> PruneResult:
    """One bounded pruning step; call again while `done` is False."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    ev_age, node_age, fnd_age = policy.horizons()
    cut = {"events": now_ns - int(ev_age * 1e9), "nodes": now_ns - int(node_age * 1e9),
           "findings": now_ns - int(fnd_age * 1e9)}
    if policy.max_bytes and store.stats()["used_bytes"] > policy.max_bytes:
        _tighten(store, cut, now_ns)
    res = PruneResult(cutoffs=cut)

    def step(txn) -> None:
        res.event_blocks = _prune_events(store, txn, cut["events"], policy.chunk)
        res.nodes, res.carried = _prune_nodes(store, txn, cut["nodes"], cut["findings"],
                                              policy.chunk)
        res.findings = _prune_findings(store, txn, cut["findings"], policy.chunk)

    store._write(step)
    res.done = max(res.event_blocks, res.nodes, res.findings) < policy.chunk
    return res


def _oldest(store: Store) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    with store.env.begin() as txn:
        for tier, name in (("events", "btime"), ("nodes", "ntime"), ("findings", "idx_ftime")):
            with txn.cursor(db=store.db[name]) as cur:
                out[tier] = U64.unpack_from(cur.key())[0] if cur.first() else None
    return out


def _tighten(store: Store, cut: dict[str, int], now_ns: int) -> None:
    """Over the size limit: move the cheapest tier's cutoff forward by a tenth of its span."""
    old = _oldest(store)
    node_span = now_ns - old["nodes"] if old["nodes"] is not None else 0
    if old["events"] is not None and now_ns - old["events"] > node_span // 4:
        cut["events"] = max(cut["events"], old["events"] + max((now_ns - old["events"]) // 10,
                                                               1))
    elif old["nodes"] is not None and node_span > 0:
        cut["nodes"] = max(cut["nodes"], old["nodes"] + max(node_span // 10, 1))
        cut["events"] = max(cut["events"], cut["nodes"])
    elif old["findings"] is not None:
        cut["findings"] = max(cut["findings"],
                              old["findings"] + max((now_ns - old["findings"]) // 10, 1))


# -- events ----------------------------------------------------------------------------------

def _prune_events(store: Store, txn, cutoff: int, limit: int) -> int:
    """Delete the events parts of blocks whose last event is older than `cutoff`."""
    db = store.db
    n = 0
    with txn.cursor(db=db["btime"]) as cur:
        while n < limit and cur.first():
            key = cur.key()
            seq = U64.unpack_from(key, 8)[0]
            raw = txn.get(key[8:], db=db["evblocks"])
            if raw is not None and block_times(raw)[1] >= cutoff:
                break
            cur.delete()
            _drop_events(store, txn, seq, raw)
            n += 1
    return n


def strip_oldest_events(store: Store, txn, blocks: int) -> int:
    """Delete the events of the `blocks` oldest event blocks, whatever their age."""
    return _prune_events(store, txn, 1 << 63, blocks)


def _drop_events(store: Store, txn, seq: int, ev_raw: bytes | None) -> None:
    """An events part, its `xidx` entries, and its graph part if that holds nothing."""
    db = store.db
    sk = U64.pack(seq)
    main = txn.get(sk, db=db["blocks"])
    block = Block(main) if main is not None else None
    if ev_raw is not None and block is not None:
        keep = _index_keys(store, block, with_events=False)
        for ev in block.with_events(ev_raw).events():
            for k in event_index_keys(ev, store._container_of(ev.get("process_id", ""))):
                if k not in keep:
                    txn.delete(k + sk, db=db["xidx"])
    txn.delete(sk, db=db["evblocks"])
    if block is not None and not block.node_rows and not block.edge_rows:
        txn.delete(sk, db=db["blocks"])
    store.forget(seq)


def _index_keys(store: Store, block: Block, with_events: bool) -> set[bytes]:
    keys: set[bytes] = set()
    for node in block.nodes():
        keys.update(node_index_keys(node))
    if with_events:
        for ev in block.events():
            keys.update(event_index_keys(ev, store._container_of(ev.get("process_id", ""))))
    return keys


# -- nodes -----------------------------------------------------------------------------------

def _prune_nodes(store: Store, txn, cutoff: int, pin_cutoff: int,
                 limit: int) -> tuple[int, int]:
    """Drop old blocks' nodes nobody needs; carry the rest into one new block."""
    db = store.db
    dropped = carried = 0
    keep_ids: set[str] | None = None
    out = BlockWriter()
    out_edges: list = []
    with txn.cursor(db=db["ntime"]) as cur:
        while dropped + carried < limit and cur.first():
            key = cur.key()
            if U64.unpack_from(key)[0] >= cutoff:
                break
            if keep_ids is None:
                keep_ids = _live_ancestry(store, txn)
            cur.delete()
            seq = U64.unpack_from(key, 8)[0]
            d, c = _drop_block(store, txn, seq, keep_ids, pin_cutoff, out, out_edges)
            dropped, carried = dropped + d, carried + c
    if out.nodes:
        for e in out_edges:
            out.add_edge(e)
        store.put_blocks(txn, [out])
    return dropped, carried


def _drop_block(store: Store, txn, seq: int, keep_ids: set[str], pin_cutoff: int,
                out: BlockWriter, out_edges: list) -> tuple[int, int]:
    db = store.db
    sk = U64.pack(seq)
    raw = txn.get(sk, db=db["blocks"])
    if raw is None:
        return 0, 0
    ev_raw = txn.get(sk, db=db["evblocks"])
    block = Block(raw, ev_raw)
    if ev_raw is not None:  # events never outlive the nodes they refer to
        txn.delete(U64.pack(max(block_times(ev_raw)[0], 0)) + sk, db=db["btime"])
        txn.delete(sk, db=db["evblocks"])
    dropped = carried = 0
    kept: set[str] = set()
    locs = set()
    for node in block.nodes():
        loc = loc_key(node.id, store.boots)
        if loc is not None:
            locs.add(loc)
        if not store.is_latest(txn, node.id, seq):
            continue  # a stale copy: the node was written again later
        k = node_key(node.id, store.boots)
        if _keep(node, k, keep_ids, pin_cutoff, txn, db):
            out.add_node(node)
            kept.add(node.id)
            carried += 1
        else:
            _forget_node(store, txn, node.id, k)
            dropped += 1
    for loc in locs:
        txn.delete(loc + sk, db=db["ids"])
    for e in block.edges():
        if ((e.src in kept or e.dst in kept) and _exists(store, txn, e.src, kept)
                and _exists(store, txn, e.dst, kept)):
            out_edges.append(e)
    for k in _index_keys(store, block, with_events=True):
        txn.delete(k + sk, db=db["xidx"])
    for nid in {x for e in block.edges() for x in (e.src, e.dst)} | set(block.ids()):
        k = node_key(nid, store.boots)
        if k is not None:
            txn.delete(k + sk, db=db["eidx"])
    txn.delete(sk, db=db["blocks"])
    store.forget(seq)
    return dropped, carried


def _keep(node: Node, key: bytes, keep_ids: set[str], pin_cutoff: int, txn, db) -> bool:
    if node.id in keep_ids or (node.kind == "process" and not node.end):
        return True
    pin = txn.get(key, db=db["pins"])
    if pin is not None:
        if U64.unpack(pin)[0] >= pin_cutoff:
            return True
        txn.delete(key, db=db["pins"])
    return False


def _forget_node(store: Store, txn, node_id: str, key: bytes) -> None:
    db = store.db
    txn.delete(node_id.encode(), db=db["live"])
    store._live = None  # the writer's copy of `live` is read again
    with txn.cursor(db=db["eidx"]) as cur:
        mine = []
        if cur.set_range(key):
            for k in cur.iternext(values=False):
                if not k.startswith(key):
                    break
                if len(k) == len(key) + 8:
                    mine.append(k)
    for k in mine:
        txn.delete(k, db=db["eidx"])


def _exists(store: Store, txn, node_id: str, kept: set[str]) -> bool:
    return node_id in kept or store._node(txn, node_id) is not None


def _live_ancestry(store: Store, txn) -> set[str]:
    """Ids of every ancestor of a live process (live processes keep their ancestry)."""
    out: set[str] = set()
    with txn.cursor(db=store.db["live"]) as cur:
        ids = [k.decode() for k in cur.iternext(values=False)]
    for nid in ids:
        cur_node = store._node(txn, nid)
        for _ in range(64):
            if cur_node is None or not cur_node.parent or cur_node.parent in out:
                break
            out.add(cur_node.parent)
            cur_node = store._node(txn, cur_node.parent)
    return out


# -- findings --------------------------------------------------------------------------------

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
                tr = f.get("trace_id", "").encode()
                if tr and not _trace_has_findings(store, txn, tr, fid):
                    txn.delete(tr, db=db["traces"])
            n += 1
    return n


def _trace_has_findings(store: Store, txn, tid: bytes, gone: bytes) -> bool:
    raw = txn.get(tid, db=store.db["traces"])
    if raw is None:
        return False
    ids = json.loads(raw).get("findings", [])
    return any(i.encode() != gone and txn.get(i.encode(), db=store.db["findings"])
               for i in ids)


# -- projection ------------------------------------------------------------------------------

def projection(used_bytes: int, events_stored: int, events_per_s: float,
               max_bytes: int) -> dict[str, float]:
    """How long `max_bytes` lasts at the current event rate, from the store's own bytes per
    event so far (graph, indexes and findings included): what `spyderctl status` shows."""
    per_event = used_bytes / events_stored if events_stored else 0.0
    per_day = per_event * events_per_s * DAY_S
    out = {"bytes_per_event": round(per_event, 1), "events_per_s": round(events_per_s, 1),
           "bytes_per_day": round(per_day)}
    if max_bytes and per_day > 0:
        out["days"] = round(max_bytes / per_day, 1)
    return out


# -- checks ----------------------------------------------------------------------------------

def check_invariants(store: Store) -> list[str]:
    """Every index entry points at a stored block that holds what it claims."""
    problems: list[str] = []
    db = store.db
    with store.env.begin() as txn:
        blocks = {U64.unpack(k)[0] for k in _keys(txn, db["blocks"])}
        for key in _keys(txn, db["ids"]):
            seq = U64.unpack_from(key, len(key) - 8)[0]
            b = store.block(txn, seq) if seq in blocks else None
            if b is None:
                problems.append(f"ids: {key!r} -> missing block {seq}")
            elif not any(loc_key(i, store.boots) == key[:-8] for i in b.ids()):
                problems.append(f"ids: {key!r} not in block {seq}")
        for key in _keys(txn, db["live"]):
            if store._node(txn, key.decode()) is None:
                problems.append(f"live: orphan {key!r}")
        evblocks = {U64.unpack(k)[0] for k in _keys(txn, db["evblocks"])}
        for seq in evblocks - blocks:
            problems.append(f"evblocks: {seq} without its graph part")
        for name, have in (("btime", evblocks), ("ntime", blocks)):
            for key in _keys(txn, db[name]):
                if U64.unpack_from(key, 8)[0] not in have:
                    problems.append(f"{name}: orphan block {U64.unpack_from(key, 8)[0]}")
        for name in ("eidx", "xidx"):
            for key in _keys(txn, db[name]):
                if U64.unpack_from(key, len(key) - 8)[0] not in blocks:
                    problems.append(f"{name}: {key[:-8]!r} -> missing block")
        for key in _keys(txn, db["idx_ftime"]):
            if txn.get(key[8:], db=db["findings"]) is None:
                problems.append(f"idx_ftime: orphan {key[8:].decode()}")
    return problems


def repair_indexes(store: Store) -> int:
    """Drop index entries whose block, node or finding is gone (after a salvage)."""
    db = store.db
    n = 0
    with store.env.begin(write=True) as txn:
        blocks = {U64.unpack(k)[0] for k in _keys(txn, db["blocks"])}
        for key in _keys(txn, db["evblocks"]):
            if U64.unpack(key)[0] not in blocks:
                txn.delete(key, db=db["evblocks"])
                n += 1
        evblocks = {U64.unpack(k)[0] for k in _keys(txn, db["evblocks"])}
        for name in ("ids", "eidx", "xidx", "btime", "ntime"):
            for key in _keys(txn, db[name]):
                at = len(key) - 8 if name in ("ids", "eidx", "xidx") else 8
                if U64.unpack_from(key, at)[0] not in (evblocks if name == "btime"
                                                        else blocks):
                    txn.delete(key, db=db[name])
                    n += 1
        for key in _keys(txn, db["live"]):
            if store._node(txn, key.decode()) is None:
                txn.delete(key, db=db["live"])
                n += 1
        for name, cut in (("idx_ftime", lambda k: k[8:]),
                          ("idx_rule", lambda k: k.split(b"\0", 1)[1][8:])):
            for key in _keys(txn, db[name]):
                if txn.get(cut(key), db=db["findings"]) is None:
                    txn.delete(key, db=db[name])
                    n += 1
    store._live = None
    return n


def _keys(txn, db) -> list[bytes]:
    with txn.cursor(db=db) as cur:
        return list(cur.iternext(values=False))

"""The fleet outbox: messages for the bus, written in the same LMDB transaction as the
graph batch they describe, so a crash can never publish what the store lost or lose what
it kept. A publisher thread sends them in order and deletes what the broker acknowledged.

Layout: named database `outbox` in the store, key = big-endian sequence number, value =
`kind` byte (g graph delta, c connection ends, n NAT aliases, f finding) + subject + NUL + message id +
NUL + payload. Meta keys: `outbox_seq` (next number), `outbox_acked`, `outbox_dropped`.
The outbox is bounded: when full, the oldest graph deltas and connection ends go first;
findings are never dropped. Every drop is counted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from spyderd.fleet import messages as m
from spyderd.model import Edge, Finding, Node

U64 = struct.Struct(">Q")
NODES_PER_DELTA = 400
DROPPABLE = (b"g", b"c", b"n")


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str
    subject: str
    msg_id: str
    payload: bytes


def _meta_int(txn, db, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return int(raw) if raw else 0


class Outbox:
    """Stages graph deltas, connection ends and findings for the publisher."""

    def __init__(self, store, machine: str, boot: str, limit: int = 200_000) -> None:
        self.store = store  # looked up on each use: a corrupted store may be replaced
        self.machine = machine
        self.boot = boot
        self.limit = max(limit, 16)

    @property
    def env(self):
        return self.store.env

    @property
    def db(self):
        return self.store.db["outbox"]

    @property
    def meta(self):
        return self.store.db["meta"]

    # -- writer side (the daemon's flush) ---------------------------------------------------

    def stage(self, nodes: list[Node], edges: list[Edge],
              findings: list[Finding]) -> Callable[[Any], None] | None:
        """A function that appends this batch's messages inside the flush transaction."""
        entries = list(self._messages(nodes, edges, findings))
        if not entries:
            return None
        return lambda txn: self.append(txn, entries)

    def _messages(self, nodes: list[Node], edges: list[Edge],
                  findings: list[Finding]) -> Iterable[tuple[bytes, str, dict[str, Any]]]:
        for i in range(0, max(len(nodes), 1 if edges else 0), NODES_PER_DELTA):
            chunk = nodes[i:i + NODES_PER_DELTA]
            body = {"v": m.VERSION, "machine": self.machine, "boot": self.boot,
                    "nodes": [n.to_dict() for n in chunk],
                    "edges": [e.to_dict() for e in edges] if i == 0 else []}
            yield b"g", m.graph_subject(self.machine), body
        shards: dict[int, list[m.Endpoint]] = {}
        for n in nodes:
            ep = self._endpoint(n)
            if ep is not None:
                shards.setdefault(m.shard_of(ep.tup), []).append(ep)
        for shard, ends in sorted(shards.items()):
            yield b"c", m.conn_subject(self.machine, shard), m.ends_message(self.machine, ends)
        for f in findings:
            yield b"f", m.finding_subject(self.machine), {
                "v": m.VERSION, "machine": self.machine, "finding": f.to_dict()}

    def _endpoint(self, n: Node) -> m.Endpoint | None:
        a = n.attrs
        if n.kind != "connection" or a.get("result", 0) != 0 or a.get("remote_port", 0) == 0:
            return None
        tup = m.canonical_tuple(a.get("local_ip", ""), a.get("local_port", 0),
                                a.get("remote_ip", ""), a.get("remote_port", 0))
        return m.Endpoint(self.machine, n.id, a.get("process_id", ""),
                          a.get("direction", "out"), tup, n.start)

    def append(self, txn, entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        seq = _meta_int(txn, self.meta, b"outbox_seq")
        for kind, subject, body in entries:
            msg_id = f"{self.machine}:{self.boot}:{seq}"
            val = kind + subject.encode() + b"\0" + msg_id.encode() + b"\0" + m.encode(body)
            txn.put(U64.pack(seq), val, db=self.db)
            seq += 1
        txn.put(b"outbox_seq", str(seq).encode(), db=self.meta)
        over = txn.stat(self.db)["entries"] - self.limit
        if over > 0:
            self._drop_oldest(txn, over)

    def put(self, entries: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        """Queue messages that belong to no graph batch (NAT aliases), in their own
        transaction."""
        with self.env.begin(write=True) as txn:
            self.append(txn, entries)

    def _drop_oldest(self, txn, over: int) -> None:
        dropped = 0
        with txn.cursor(db=self.db) as cur:
            ok = cur.first()
            while ok and dropped < over:
                if cur.value()[:1] in DROPPABLE:
                    ok = cur.delete()  # moves to the next record
                    dropped += 1
                else:
                    ok = cur.next()
        n = _meta_int(txn, self.meta, b"outbox_dropped") + dropped
        txn.put(b"outbox_dropped", str(n).encode(), db=self.meta)

    # -- publisher side -------------------------------------------------------------------

    def pending(self, limit: int = 256) -> list[Entry]:
        """The oldest unacknowledged entries, in order."""
        out: list[Entry] = []
        with self.env.begin() as txn, txn.cursor(db=self.db) as cur:
            for key, val in cur:
                kind, rest = val[:1].decode(), val[1:]
                subject, msg_id, payload = rest.split(b"\0", 2)
                out.append(Entry(U64.unpack(key)[0], kind, subject.decode(), msg_id.decode(),
                                 payload))
                if len(out) >= limit:
                    break
        return out

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete acknowledged entries and advance the acked mark."""
        seqs = sorted(seqs)
        if not seqs:
            return
        with self.env.begin(write=True) as txn:
            for s in seqs:
                txn.delete(U64.pack(s), db=self.db)
            top = max(_meta_int(txn, self.meta, b"outbox_acked"), seqs[-1] + 1)
            txn.put(b"outbox_acked", str(top).encode(), db=self.meta)

    def status(self) -> dict[str, int]:
        with self.env.begin() as txn:
            return {"queued": txn.stat(self.db)["entries"],
                    "next_seq": _meta_int(txn, self.meta, b"outbox_seq"),
                    "acked": _meta_int(txn, self.meta, b"outbox_acked"),
                    "dropped": _meta_int(txn, self.meta, b"outbox_dropped"),
                    "limit": self.limit}

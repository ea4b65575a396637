"""spyderd-stitch: joins the two ends of TCP connections seen by different hosts.

Each host publishes its connection ends on `spyder.v1.<host>.conn.<shard>`, the shard a
hash of the canonical 4-tuple, so both ends of one connection land on the same shard and
one stitcher instance sees both. The match is the opposite end from another host with
the same canonical tuple, closest in time (ports are reused, clocks drift). A match
becomes a `peer` edge in the `spyder_peers` bucket (both directions), a message on the
stream, and an edge in the stitcher's central copy of the graph, which also keeps every
host's graph deltas and findings so a trace can be read while its host is down.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd.common.config import FleetConfig, load_config
from spyderd.fleet import messages as m
from spyderd.fleet.bus import BusConfig, ensure_peers, ensure_stream
from spyderd.model import Edge, Finding, Node

log = logging.getLogger("spyderd.stitch")
WINDOW_NS = 300 * 1_000_000_000  # ends further apart than this never join
MAX_OPEN = 200_000  # unmatched ends kept


@dataclass(frozen=True, slots=True)
class Peer:
    a: m.Endpoint
    b: m.Endpoint
    confidence: float


@dataclass
class Matcher:
    """Unmatched ends by canonical tuple; each end joins at most one other end. A NAT
    alias makes two tuples one: ends are kept under the alias's representative."""

    window_ns: int = WINDOW_NS
    open: OrderedDict[tuple, list[m.Endpoint]] = field(default_factory=OrderedDict)
    size: int = 0
    aliases: OrderedDict[tuple, tuple] = field(default_factory=OrderedDict)

    def alias(self, a: tuple, b: tuple) -> list[Peer]:
        """`a` and `b` are one connection on either side of a NAT; joins what it can."""
        rep = self.aliases.get(a, a)
        self.aliases[b] = rep
        self.aliases[a] = rep
        while len(self.aliases) > MAX_OPEN:
            self.aliases.popitem(last=False)
        waiting = self.open.pop(b, []) + (self.open.pop(a, []) if rep != a else [])
        self.size -= len(waiting)
        peers = []
        for e in waiting:
            p = self.add(e)
            if p is not None:
                peers.append(Peer(p.a, p.b, round(p.confidence * 0.9, 3)))
        return peers

    def add(self, e: m.Endpoint) -> Peer | None:
        rep = self.aliases.get(e.tup)
        if rep is not None and rep != e.tup:
            e = dataclasses.replace(e, tup=rep)
        cands = [x for x in self.open.get(e.tup, ())
                 if x.machine != e.machine and x.direction != e.direction
                 and abs(x.time - e.time) <= self.window_ns]
        if not cands:
            self.open.setdefault(e.tup, []).append(e)
            self.open.move_to_end(e.tup)
            self.size += 1
            self._bound()
            return None
        best = min(cands, key=lambda x: abs(x.time - e.time))
        self.open[e.tup].remove(best)
        self.size -= 1
        if not self.open[e.tup]:
            del self.open[e.tup]
        return Peer(best, e, confidence(abs(best.time - e.time), len(cands)))

    def _bound(self) -> None:
        while self.size > MAX_OPEN and self.open:
            _, ends = self.open.popitem(last=False)
            self.size -= len(ends)


def confidence(dt_ns: int, candidates: int) -> float:
    """1.0 for a lone candidate within 2 s; less for a larger gap or several candidates."""
    c = 1.0 if dt_ns <= 2_000_000_000 else max(0.5, 1.0 - dt_ns / (2 * WINDOW_NS))
    return round(c / candidates, 3)


class Stitcher:
    """One stitcher instance: shards `instance % instances`, central copy if `central`."""

    def __init__(self, bus: BusConfig, state_dir: Path | None, instance: int = 0,
                 instances: int = 1, status_path: Path | None = None) -> None:
        self.bus = bus
        self.instance, self.instances = instance, max(instances, 1)
        self.status_path = status_path
        self.matcher = Matcher()
        self.store = None
        if state_dir is not None:
            from spyderd.graph import Store

            self.store = Store(state_dir)
        self.stats: dict[str, Any] = {"ends": 0, "peers": 0, "rejected": 0, "nodes": 0,
                                      "findings": 0, "errors": 0, "nat_aliases": 0,
                                      "last_error": ""}
        self._stop = asyncio.Event()

    def shards(self) -> list[int]:
        return [s for s in range(m.CONN_SHARDS) if s % self.instances == self.instance]

    async def run(self) -> None:
        import nats  # optional dependency, see spyderd.fleet.bus

        nc = await nats.connect(**self.bus.connect_options())
        js = nc.jetstream()
        await ensure_stream(js)
        self.kv = await ensure_peers(js)
        self.js, self.nc = js, nc
        subs = []
        for s in self.shards():
            subs.append((await js.pull_subscribe(f"{m.PREFIX}.*.conn.{s}",
                                                 durable=f"stitch-conn-{s}",
                                                 stream=m.STREAM), self._on_end))
        if self.store is not None:
            subs.append((await js.pull_subscribe(f"{m.PREFIX}.*.graph", durable="stitch-graph",
                                                 stream=m.STREAM), self._on_graph))
            subs.append((await js.pull_subscribe(f"{m.PREFIX}.*.finding",
                                                 durable="stitch-finding", stream=m.STREAM),
                         self._on_finding))
            from spyderd.fleet.exporter import trace_answerer

            answer = trace_answerer(self.store, "stitch")
            await nc.subscribe(m.STITCH_RPC, cb=functools.partial(self._rpc, nc, answer=answer))
        tasks = [asyncio.create_task(self._pump(sub, fn)) for sub, fn in subs]
        tasks.append(asyncio.create_task(self._write_status()))
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(nc.close(), 5)
        except TimeoutError:
            log.warning("the broker connection did not close within 5 s")
        if self.store is not None:
            self.store.close()

    def stop(self) -> None:
        self._stop.set()

    async def _pump(self, sub, handle) -> None:
        while True:
            try:
                msgs = await sub.fetch(batch=256, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - broker restart: fetch again
                self.stats["last_error"] = repr(exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await handle(m.decode(msg.data))
                except (m.BadMessage, KeyError, TypeError, ValueError, AttributeError) as exc:
                    self.stats["rejected"] += 1  # malformed or forged: counted, never retried
                    log.warning("rejected message on %s: %s", msg.subject, exc)
                except Exception as exc:  # noqa: BLE001 - our side failed: redeliver later
                    self.stats["errors"] += 1
                    self.stats["last_error"] = repr(exc)
                    log.error("cannot handle message on %s: %r", msg.subject, exc)
                    await msg.nak(delay=1.0)
                    continue
                await msg.ack()

    async def _on_end(self, msg: dict[str, Any]) -> None:
        if "nat" in msg:
            for a, b in m.nat_from(msg):
                self.stats["nat_aliases"] += 1
                for peer in self.matcher.alias(a, b):
                    await self._record(peer)
            return
        for end in m.endpoints_from(msg):  # all validated before any is used
            self.stats["ends"] += 1
            peer = self.matcher.add(end)
            if peer is not None:
                await self._record(peer)

    async def _record(self, p: Peer) -> None:
        self.stats["peers"] += 1
        for here, there in ((p.a, p.b), (p.b, p.a)):
            val = {"peer": there.conn_id, "machine": there.machine,
                   "process_id": there.process_id, "confidence": p.confidence,
                   "time": max(p.a.time, p.b.time)}
            await self.kv.put(m.peer_key(here.conn_id), json.dumps(val).encode())
        body = {"v": m.VERSION, "machine": "_stitch", "a": p.a.to_msg(), "b": p.b.to_msg(),
                "confidence": p.confidence}
        pair = ":".join(sorted((p.a.conn_id, p.b.conn_id)))
        await self.js.publish(m.PEER_SUBJECT, m.encode(body), headers={"Nats-Msg-Id": pair})
        for end in (p.a, p.b):  # the connecting side scores the cross-host trace
            if end.direction == "out":
                req = {"v": m.VERSION, "machine": "_stitch", "op": "peered", "id": end.conn_id}
                await self.nc.publish(m.rpc_subject(end.machine), m.encode(req))
        if self.store is not None:
            t = max(p.a.time, p.b.time)
            edges = [Edge(p.a.conn_id, p.b.conn_id, "peer", t),
                     Edge(p.b.conn_id, p.a.conn_id, "peer", t)]
            await asyncio.to_thread(self.store.write_batch, [], edges, [], [], {})

    async def _on_graph(self, msg: dict[str, Any]) -> None:
        try:
            nodes = [Node.from_dict(d) for d in msg["nodes"]]
            edges = [Edge(d["src"], d["dst"], d["kind"], int(d["time"])) for d in msg["edges"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise m.BadMessage(f"malformed graph delta: {exc}") from None
        host = msg["machine"]
        for n in nodes:
            n.attrs.setdefault("host", host)
        self.stats["nodes"] += len(nodes)
        await asyncio.to_thread(self.store.write_batch, nodes, edges, [], [], {})

    async def _on_finding(self, msg: dict[str, Any]) -> None:
        try:
            f = Finding.from_dict(msg["finding"])
        except (KeyError, TypeError, ValueError) as exc:
            raise m.BadMessage(f"malformed finding: {exc}") from None
        self.stats["findings"] += 1
        await asyncio.to_thread(self.store.write_batch, [], [], [], [f], {})

    async def _rpc(self, nc, msg, *, answer) -> None:
        try:
            reply = {"v": m.VERSION, "machine": "_stitch", **(await asyncio.to_thread(
                answer, m.decode(msg.data)))}
        except m.BadMessage as exc:
            self.stats["rejected"] += 1
            reply = {"v": m.VERSION, "machine": "_stitch", "ok": False, "error": str(exc)}
        if msg.reply:
            await nc.publish(msg.reply, m.encode(reply))

    async def _write_status(self) -> None:
        while True:
            if self.status_path is not None:
                tmp = self.status_path.with_suffix(".tmp")
                tmp.write_text(json.dumps({**self.stats, "open_ends": self.matcher.size,
                                           "updated": time.time(), "pid": os.getpid()}))
                os.replace(tmp, self.status_path)
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spyderd-stitch",
                                 description="join connection ends across spyderd hosts")
    ap.add_argument("--config", help="YAML with a `fleet:` section (url, credentials, TLS)")
    ap.add_argument("--url", help="NATS url(s), comma separated (overrides the config)")
    ap.add_argument("--state-dir", default="/var/lib/spyderd-stitch",
                    help="central copy of the fleet graph ('' for none)")
    ap.add_argument("--instance", type=int, default=0)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--status", help="write counters here as JSON every 0.5 s")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="spyderd-stitch: %(message)s")
    section = load_config(args.config).fleet if args.config else FleetConfig()
    section = dataclasses.replace(section, url=args.url or section.url,
                                  name=f"stitch-{args.instance}")
    bus = BusConfig.from_section(section)
    if not bus.url:
        ap.error("no NATS url: give --url or a config with fleet.url")
    central = args.state_dir if args.state_dir and args.instance == 0 else None
    st = Stitcher(bus, Path(central) if central else None, args.instance, args.instances,
                  Path(args.status) if args.status else None)

    async def go() -> None:
        loop = asyncio.get_running_loop()

        def on_signal() -> None:  # stop cleanly; a stop that hangs must not outlive 15 s
            st.stop()
            loop.call_later(15, os._exit, 1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await st.run()

    asyncio.run(go())
    return 0
if __name__ == "__main__":
    import sys

    sys.exit(main())

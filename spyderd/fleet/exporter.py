"""The fleet exporter: a thread that drains the outbox to JetStream and answers trace
requests from other hosts' `spyderctl trace --fleet`.

Delivery is at least once: an entry leaves the outbox only after the broker acknowledged
it, and every entry carries a fixed `Nats-Msg-Id`, so a resend within the stream's
duplicate window is dropped by the broker, and consumers upsert what gets through twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from spyderd.fleet import messages as m
from spyderd.fleet.bus import BusConfig, ensure_stream
from spyderd.fleet.nat import NatWatcher, nat_messages
from spyderd.fleet.outbox import Entry, Outbox

log = logging.getLogger("spyderd.fleet")
WINDOW = 64  # publishes in flight at once


class Exporter:
    """Owns the NATS connection of one daemon; everything here runs on its own thread."""

    def __init__(self, bus: BusConfig, outbox: Outbox,
                 answer: Callable[[dict[str, Any]], dict[str, Any]],
                 alerts: FleetAlerts | None = None, nat: NatWatcher | None = None) -> None:
        self.bus = bus
        self.nat = nat
        self.outbox = outbox
        self.answer = answer  # request dict -> reply dict (trace lookups in the store)
        self.alerts = alerts
        self.stats: dict[str, Any] = {"connected": False, "published": 0, "duplicates": 0,
                                      "publish_errors": 0, "rpc_requests": 0,
                                      "rpc_rejected": 0, "fleet_traces_sent": 0,
                                      "last_error": "", "acked_at": 0.0}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spyderd-fleet", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """New entries were committed: publish without waiting for the next poll."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        try:
            box = self.outbox.status()
        except Exception as exc:  # noqa: BLE001 - status must never break the daemon's loop
            box = {"error": str(exc)}
        return {**self.stats, "outbox": box, "url": self.bus.url, "name": self.bus.name}

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import nats  # optional dependency: only hosts with fleet.url load it

        nc = None
        while not self._stop.is_set():
            try:
                nc = await nats.connect(**self.bus.connect_options(),
                                        error_cb=self._on_error,
                                        disconnected_cb=self._on_disconnect,
                                        reconnected_cb=self._on_reconnect)
                break
            except Exception as exc:  # noqa: BLE001 - broker down at start: keep trying
                self._note_error(f"connect: {exc}")
                await self._sleep(2.0)
        if nc is None:
            return
        self.stats["connected"] = True
        js = nc.jetstream()
        await nc.subscribe(m.rpc_subject(self.bus.name), cb=functools.partial(self._rpc, nc))
        checker = asyncio.create_task(self._checks(nc)) if self.alerts else None
        nat = asyncio.create_task(self._nat()) if self.nat else None
        stream_ok = False
        while not self._stop.is_set():
            if not stream_ok:
                try:
                    await ensure_stream(js)
                    stream_ok = True
                except Exception as exc:  # noqa: BLE001 - retried; entries stay queued
                    self._note_error(f"stream: {exc}")
                    await self._sleep(1.0)
                    continue
            sent = await self._drain(js)
            if not sent:
                await self._sleep(0.2)
        await self._drain(js)
        for task in (checker, nat):
            if task is not None:
                task.cancel()
        await nc.close()

    async def _drain(self, js) -> int:
        """Publish queued entries in windows; ack only what the broker confirmed."""
        total = 0
        while True:
            entries = await asyncio.to_thread(self.outbox.pending, WINDOW)
            if not entries:
                return total
            results = await asyncio.gather(*(self._publish(js, e) for e in entries))
            done = [e.seq for e, ok in zip(entries, results) if ok]
            await asyncio.to_thread(self.outbox.ack, done)
            total += len(done)
            if len(done) < len(entries):
                await self._sleep(0.5)  # broker away: back off, the rest stays queued
                return total

    async def _publish(self, js, e: Entry) -> bool:
        try:
            ack = await js.publish(e.subject, e.payload, timeout=5,
                                   headers={"Nats-Msg-Id": e.msg_id})
        except Exception as exc:  # noqa: BLE001 - any failure leaves the entry queued
            self.stats["publish_errors"] += 1
            self._note_error(f"publish: {exc!r}")
            return False
        self.stats["published"] += 1
        self.stats["duplicates"] += int(bool(ack.duplicate))
        self.stats["acked_at"] = time.time()
        return True

    async def _rpc(self, nc, msg) -> None:
        self.stats["rpc_requests"] += 1
        try:
            req = m.decode(msg.data)
        except m.BadMessage as exc:
            self.stats["rpc_rejected"] += 1
            reply = {"v": m.VERSION, "machine": self.bus.name, "ok": False, "error": str(exc)}
        else:
            if req.get("op") == "peered" and self.alerts is not None:
                self.alerts.schedule(str(req.get("id", "")))
                reply = {"v": m.VERSION, "machine": self.bus.name, "ok": True}
            else:
                reply = await asyncio.to_thread(self._answer, req)
        if msg.reply:
            await nc.publish(msg.reply, m.encode(reply))

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            body = self.answer(req)
        except Exception as exc:  # noqa: BLE001 - a bad request must not end the thread
            body = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"v": m.VERSION, "machine": self.bus.name, **body}

    async def _nat(self) -> None:
        """Translated connections from conntrack into the outbox, once a second."""
        while True:
            await asyncio.sleep(1.0)
            try:
                pairs = await asyncio.to_thread(self.nat.poll)
                if pairs:
                    msgs = nat_messages(self.bus.name, pairs)
                    await asyncio.to_thread(self.outbox.put, [(b"n", s, b) for s, b in msgs])
                    self.wake()
            except Exception as exc:  # noqa: BLE001 - conntrack unreadable: say so, go on
                self._note_error(f"conntrack: {exc!r}")
            self.stats["nat_pairs"] = self.nat.published

    def wake(self) -> None:
        self._wake.set()

    async def _checks(self, nc) -> None:
        """Cross-host traces: score them once stitched links and remote findings settle."""
        while True:
            await asyncio.sleep(1.0)
            for conn in self.alerts.due():
                try:
                    await self.alerts.check(nc, conn)
                except Exception as exc:  # noqa: BLE001 - one bad check must not stop the rest
                    self._note_error(f"fleet trace check: {exc!r}")
            self.stats["fleet_traces_sent"] = self.alerts.sent_count

    async def _sleep(self, seconds: float) -> None:
        await asyncio.to_thread(self._wake.wait, seconds)
        self._wake.clear()

    def _note_error(self, text: str) -> None:
        if text != self.stats["last_error"]:
            log.warning("fleet: %s", text)
        self.stats["last_error"] = text

    async def _on_error(self, exc: Exception) -> None:
        self._note_error(f"bus: {exc!r}")

    async def _on_disconnect(self) -> None:
        self.stats["connected"] = False

    async def _on_reconnect(self) -> None:
        self.stats["connected"] = True


def trace_answerer(store, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Answers `{"op": "trace", "id": ...}` with this host's view of a connection's process:
    the process, what it went on to do, and the findings about any of them."""

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") != "trace" or not isinstance(req.get("id"), str):
            return {"ok": False, "error": "unknown request"}
        try:
            return {"ok": True, "host": name, "trace": process_view(store, req["id"])}
        except KeyError as exc:
            return {"ok": False, "error": str(exc.args[0])}

    return answer


def process_view(store, ident: str) -> dict[str, Any]:
    """The trace view of a process (or of a connection's process) with the findings of the
    process and its descendants (KeyError if unknown)."""
    from spyderd.traces.build import build_trace

    node = store.node(ident)
    if node is not None and node.kind == "connection":
        ident = node.attrs.get("process_id") or ident
    view = build_trace(store, ident).to_dict()
    mine = {n["id"] for n in view["nodes"]
            if n.get("kind") == "process" and n.get("role") in ("subject", "")}
    have = {f["id"] for f in view["findings"]}
    view["findings"] += [f.to_dict() for f in store.findings()
                         if f.process_id in mine and f.id not in have]
    return view


def local_trace(store, conn_id: str) -> dict[str, Any] | None:
    """This host's trace around one of its connections: the trace of a finding about the
    connection's process or one of its ancestors, else the process's own view."""
    from spyderd.traces.build import ancestors, build_trace

    conn = store.node(conn_id)
    proc = store.node(conn.attrs.get("process_id", "")) if conn is not None else None
    if proc is None:
        return None
    chain = {proc.id} | {a.id for a in ancestors(store, proc)}
    tids = [f.trace_id for f in store.findings() if f.process_id in chain and f.trace_id]
    if tids:
        return build_trace(store, tids[-1]).to_dict()
    return process_view(store, proc.id)


class FleetAlerts:
    """One journald entry per cross-host trace above the threshold, from the host where it
    started: a host whose part of the trace was reached from another host passes the check
    up to that host instead of alerting itself."""

    DELAYS = (3.0, 15.0)  # findings settle on every host before the trace is scored

    def __init__(self, store, host: str, machine_id: str, threshold: int,
                 send: Callable[..., None]) -> None:
        self.store, self.host, self.machine_id = store, host, machine_id
        self.threshold = threshold
        self.send = send  # systemd.journal.send
        self.pending: dict[str, list[float]] = {}
        self.sent: dict[str, int] = {}
        self.sent_count = 0

    def schedule(self, conn_id: str) -> None:
        if conn_id:
            now = time.monotonic()
            self.pending[conn_id] = [now + d for d in self.DELAYS]

    def due(self) -> list[str]:
        now = time.monotonic()
        out = []
        for conn, times in list(self.pending.items()):
            if times and times[0] <= now:
                times.pop(0)
                out.append(conn)
            if not times:
                del self.pending[conn]
        return out

    async def check(self, nc, conn_id: str) -> None:
        from spyderd.fleet.fleettrace import grow, inbound_links

        local = await asyncio.to_thread(local_trace, self.store, conn_id)
        if local is None:
            return
        doc = await grow(nc, self.host, local)
        upstream = inbound_links(doc, self.host)
        if upstream:
            for ln in upstream:
                req = {"v": m.VERSION, "machine": self.host, "op": "peered", "id": ln["to"]}
                await nc.publish(m.rpc_subject(ln["host"]), m.encode(req))
            return
        if len(doc["hosts"]) < 2 or doc["score"] < self.threshold:
            return
        if doc["score"] <= self.sent.get(doc["id"], 0):
            return
        self.sent[doc["id"]] = doc["score"]
        self.sent_count += 1
        self.send(**fleet_trace_fields(doc, self.machine_id, self.threshold))


FLEET_TRACE_MESSAGE_ID = "5b0d6c1e2f8a4c7e9d3b1a6f4e2c8d71"


def fleet_trace_fields(doc: dict[str, Any], machine_id: str, threshold: int) -> dict[str, str]:
    rules = doc["rules"]
    return {
        "MESSAGE": (f"Fleet trace {doc['id']} scored {doc['score']} (threshold {threshold}) "
                    f"across {len(doc['hosts'])} hosts ({' > '.join(doc['hosts'])}): "
                    f"{', '.join(rules)}"),
        "PRIORITY": "3",
        "MESSAGE_ID": FLEET_TRACE_MESSAGE_ID,
        "SYSLOG_IDENTIFIER": "spyderd",
        "SPYDER_KIND": "fleet-trace",
        "SPYDER_TRACE_ID": doc["id"],
        "SPYDER_TRACE_SCORE": str(doc["score"]),
        "SPYDER_TRACE_THRESHOLD": str(threshold),
        "SPYDER_TRACE_RULES": ",".join(rules),
        "SPYDER_TRACE_FINDINGS": " ".join(f.get("id", "") for f in doc["findings"]),
        "SPYDER_FLEET_HOSTS": ",".join(doc["hosts"]),
        "SPYDER_FLEET_ORIGIN": doc["hosts"][0],
        "SPYDER_MACHINE_ID": machine_id,
    }


__all__ = ["Exporter", "FleetAlerts", "trace_answerer"]

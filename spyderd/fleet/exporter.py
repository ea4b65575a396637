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
from spyderd.fleet.outbox import Entry, Outbox

log = logging.getLogger("spyderd.fleet")
WINDOW = 64  # publishes in flight at once


class Exporter:
    """Owns the NATS connection of one daemon; everything here runs on its own thread."""

    def __init__(self, bus: BusConfig, outbox: Outbox,
                 answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.bus = bus
        self.outbox = outbox
        self.answer = answer  # request dict -> reply dict (trace lookups in the store)
        self.stats: dict[str, Any] = {"connected": False, "published": 0, "duplicates": 0,
                                      "publish_errors": 0, "rpc_requests": 0,
                                      "rpc_rejected": 0, "last_error": "", "acked_at": 0.0}
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
            reply = await asyncio.to_thread(self._answer, req)
        if msg.reply:
            await nc.publish(msg.reply, m.encode(reply))

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            body = self.answer(req)
        except Exception as exc:  # noqa: BLE001 - a bad request must not end the thread
            body = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"v": m.VERSION, "machine": self.bus.name, **body}

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
    """Answers `{"op": "trace", "id": ...}` with this host's trace view of a node."""
    from spyderd.traces.build import build_trace

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") != "trace" or not isinstance(req.get("id"), str):
            return {"ok": False, "error": "unknown request"}
        ident = req["id"]
        node = store.node(ident)
        if node is not None and node.kind == "connection":
            ident = node.attrs.get("process_id") or ident
        try:
            view = build_trace(store, ident)
        except KeyError as exc:
            return {"ok": False, "error": str(exc.args[0])}
        return {"ok": True, "host": name, "trace": view.to_dict()}

    return answer


__all__ = ["Exporter", "trace_answerer"]

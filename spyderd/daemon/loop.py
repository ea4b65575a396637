"""The daemon's loop: single-threaded, poll the ring buffer, fold events into the graph,
evaluate rules, commit batches, send what is due, serve the control socket, tick.

`Loop` is the half of `Daemon` that runs; `wiring.Daemon` builds the stages it uses.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from spyderd.common.config import Config
from spyderd.daemon import service
from spyderd.graph.retention import Policy, prune
from spyderd.model import Event, Node

log = logging.getLogger("spyderd")


class Loop:
    """Event loop over the stages `wiring.Daemon.setup` made (attributes below)."""

    cfg: Config
    capture: Any
    graph: Any
    store: Any
    enricher: Any
    ruleset: Any
    findings: Any
    exporter: Any
    scope: Any
    counters: dict[str, int]
    errors: list[str]
    stop: bool
    reload_requested: bool

    def run(self) -> None:
        last_status = 0.0
        tick = service.watchdog_interval()  # WATCHDOG=1 at least this often
        while not self.stop:
            events = self.capture.poll(100)
            for ev in events:
                self.handle(ev)
            now = time.monotonic()
            if now - self.graph.last_flush >= self.cfg.store.batch_delay:
                self.graph.flush()
                if self.exporter is not None:
                    self.exporter.notify()
                self._prune(now)
            self.send_due(now)
            self._service_live()
            if self.reload_requested:
                self.reload()
            if now - last_status >= tick:
                self._tick_service(now - last_status)
                last_status = now
                self.capture.refresh_clock()
                self.capture.refresh_self_tids()
                for ctx_node in self.enricher.updates():  # late container/VM/netns facts
                    self.graph.touch(ctx_node)
                self._report_losses()
                self._check_probes(now)
                self.store.tick()
                self.write_status(ready=True)
        self.shutdown()

    def _tick_service(self, elapsed: float) -> None:
        """Tell systemd we are alive (WATCHDOG=1 from the loop itself, so a hung loop gets
        restarted) with a STATUS= line, and record liveness for the capture-gap report."""
        events = self.counters.get("events", 0)
        rate = (events - getattr(self, "_events_at_tick", 0)) / max(elapsed, 1e-3)
        self._events_at_tick = events
        line = service.status_line(
            events_per_s=rate, lost=sum(self.capture.lost().values()),
            decode_errors=sum(self.capture.decode_errors.values()),
            findings=self.counters.get("findings", 0), rules=len(self.ruleset.rules))
        service.notify(f"WATCHDOG=1\nSTATUS={line}")
        service.mark_alive(self.store, time.time())

    def _prune(self, now: float) -> None:
        """Retention, one bounded chunk at a time (more chunks while behind)."""
        if now < getattr(self, "_next_prune", 0.0):
            return
        s = self.cfg.store
        policy = Policy(max_age_s=s.retention_days * 86400,
                        max_bytes=s.max_size_mb << 20,
                        events_age_s=s.events_retention_days * 86400 or None,
                        findings_age_s=s.findings_retention_days * 86400 or None)
        res = self.store.maintain(lambda store: prune(store, policy))
        if res is None:  # the store is degraded: no retention until it writes again
            self._next_prune = now + 30.0
            return
        self._next_prune = now + (0.5 if not res.done else 30.0)
        if res.nodes or res.event_blocks or res.findings:
            log.info("retention pruned %d nodes, %d event blocks, %d findings",
                     res.nodes, res.event_blocks, res.findings)

    def _check_probes(self, now: float) -> None:
        """Every capture.probe_check_seconds (at most the watchdog tick): are our BPF
        attachments still there, running our programs? (spyderd.capture.integrity)"""
        if now < getattr(self, "_next_probe_check", 0.0):
            return
        self._next_probe_check = now + self.cfg.capture.probe_check_seconds
        for fault in self.capture.check_probes():
            service.report_probe_fault(fault)

    def _report_losses(self) -> None:
        """Log new kernel losses and decode errors (at most once per status tick)."""
        self._note_losses()
        now = {**{f"lost {k}": v for k, v in self.capture.lost().items()},
               **{f"decode errors {k}": v for k, v in self.capture.decode_errors.items()}}
        prev = getattr(self, "_loss_seen", {})
        grew = {k: v - prev.get(k, 0) for k, v in now.items() if v > prev.get(k, 0)}
        if grew:
            log.warning("events lost since last report: %s",
                        ", ".join(f"{k}: {v}" for k, v in sorted(grew.items())),
                        extra={"MESSAGE_ID": service.MSG_EVENTS_LOST})
        self._loss_seen = now

    def _lost_since(self, start_ns: int) -> bool:
        """True if events were lost (ring buffer or decoding) at or after `start_ns`, as far
        as can be told: a loss is timed when it is first noticed, at the latest now."""
        self._note_losses()
        return getattr(self, "_loss_noticed", 0) >= start_ns

    def _note_losses(self) -> None:
        total = sum(self.capture.lost().values()) + sum(self.capture.decode_errors.values())
        if total > getattr(self, "_loss_total", 0):
            self._loss_total, self._loss_noticed = total, time.time_ns()

    def handle(self, ev: Event) -> None:
        if self.scope is not None and not self.scope.admits(ev):
            return  # another "host" on this kernel (capture.scope); counted by the scope
        self.counters["events"] = self.counters.get("events", 0) + 1
        node = self.graph.apply(ev)
        if node is None or ev.pid == os.getpid():
            return
        for m in self.ruleset.match(ev, node, self.graph):
            self.new_finding(ev, node, m)
        for name, err in list(self.ruleset.disabled.items()):
            if name not in self.counters:
                self.counters[name] = 1
                self.errors.append(f"rule '{name}' disabled: {err}")
                log.error("rule '%s' raised at run time and was disabled: %s", name, err)

    def new_finding(self, ev: Event, node: Node, m) -> None:
        """Suppress, fold, put in its trace, schedule for the sinks (see spyderd.findings)."""
        f = self.findings.new(ev, node, m)
        if node.attrs.get("incomplete") or self._lost_since(node.start):
            f.incomplete = True  # its chain may miss events: a loss since the subject began
        self.counters["findings"] = self.counters.get("findings", 0) + 1

    def send_due(self, now: float) -> None:
        """Chain and send findings whose settle window ended; then traces that are due."""
        self.findings.send_due(now)

    # implemented by wiring.Daemon
    def _service_live(self) -> None: ...
    def reload(self) -> None: ...
    def shutdown(self) -> None: ...
    def write_status(self, *, ready: bool, stopped: bool = False) -> None: ...

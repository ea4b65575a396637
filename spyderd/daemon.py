"""spyderd: the one process that wires capture → graph → rules → traces → sinks.

Only this module knows every stage; each stage only knows the model and the stage
before it. The loop is single-threaded: poll the ring buffer, fold events into the
graph, evaluate rules, commit batches, send findings whose settle time has passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from spyderd import __version__, service
from spyderd.config import Config, load_config
from spyderd.errors import ConfigError, RuleError, SpyderError
from spyderd.model import Event, Finding, Node, event_to_dict

log = logging.getLogger("spyderd")


@dataclass
class Paths:
    state_dir: Path
    runtime_dir: Path
    rules: list[str]


def resolve_paths(cfg: Config, state: str | None, runtime: str | None,
                  rules: list[str] | None) -> Paths:
    """Command line beats environment beats config file."""
    return Paths(
        state_dir=Path(state or os.environ.get("SPYDERD_STATE_DIR") or cfg.get("state_dir")),
        runtime_dir=Path(runtime or os.environ.get("SPYDERD_RUNTIME_DIR")
                         or cfg.get("runtime_dir")),
        rules=list(rules) if rules else list(cfg.get("rules")),
    )


def machine_identity() -> tuple[str, str]:
    """(machine id, short boot id); the machine id falls back to the boot id's host."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    mid = ""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            mid = Path(p).read_text().strip()
        except OSError:
            continue
        if mid:
            break
    return mid, boot[:12]


def boot_wall_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def container_of(cgroup_text: str) -> str:
    """Container id from /proc/<pid>/cgroup text (minimal; the enrich stage widens it)."""
    from spyderd.enrich.container import container_from_cgroup

    return container_from_cgroup(cgroup_text)[0]


@dataclass
class Pending:
    due: float
    finding: Finding


@dataclass
class Daemon:
    cfg: Config
    paths: Paths
    stop: bool = False
    reload_requested: bool = False
    pending: list[Pending] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def setup(self) -> None:
        from spyderd.capture.bpf import Capture
        from spyderd.capture.snapshot import listening_sockets, snapshot
        from spyderd.graph import Graph, Store
        from spyderd.rules import load_rules

        self.started = time.time()
        self.paths.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.write_status(ready=False)
        self.ruleset = load_rules(self.paths.rules)
        self.machine_id, self.boot = machine_identity()
        self.store = Store(self.paths.state_dir,
                           map_size=self.cfg.get("store.map_size_mb") << 20)
        self.graph = Graph(self.store, self.boot, boot_wall_ns=boot_wall_ns(),
                           machine_id=self.machine_id,
                           max_recent=self.cfg.get("store.max_memory_nodes"))
        self.sink = self._make_sink()
        self.capture = Capture(
            ring_pages=self.cfg.get("capture.ring_buffer_pages"),
            max_args=self.cfg.get("capture.max_args"),
            arg_bytes=self.cfg.get("capture.arg_bytes"),
            ignore_tgid=os.getpid() if self.cfg.get("capture.ignore_self") else 0)
        self.capture.start()  # capture first, then snapshot: no gap between the two
        attached = time.time()
        n = self.graph.load_snapshot(snapshot(), container_of=container_of,
                                     listening=listening_sockets())
        self.graph.flush()
        self.last_gap = service.report_gap(self.store, attached)
        service.mark_running(self.store, time.time())
        self._resend_unsent()
        log.info("spyderd %s ready: %d processes in snapshot, %d rules, probes: %s",
                 __version__, n, len(self.ruleset.rules),
                 ", ".join(f"{k}={v.state}" for k, v in self.capture.status.items()))
        self.write_status(ready=True)
        _notify("READY=1\nSTATUS=capturing")

    def _make_sink(self):
        if not self.cfg.get("findings.journald"):
            return None
        from spyderd.sinks.journald import JournaldSink

        return JournaldSink(self.machine_id)

    def _resend_unsent(self) -> None:
        """Findings stored but not yet in journald (crash, journald down) are sent now."""
        for f in self.store.findings():
            if not f.sent:
                self.pending.append(Pending(0.0, f))

    # -- loop ------------------------------------------------------------------------------

    def run(self) -> None:
        last_status = 0.0
        tick = service.watchdog_interval()  # WATCHDOG=1 at least this often
        while not self.stop:
            events = self.capture.poll(100)
            for ev in events:
                self.handle(ev)
            now = time.monotonic()
            if now - self.graph.last_flush >= self.cfg.get("store.batch_delay"):
                self.graph.flush()
            self.send_due(now)
            if self.reload_requested:
                self.reload()
            if now - last_status >= tick:
                self._tick_service(now - last_status)
                last_status = now
                self.capture.refresh_clock()
                self._report_losses()
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
        _notify(f"WATCHDOG=1\nSTATUS={line}")
        service.mark_alive(self.store, time.time())

    def _report_losses(self) -> None:
        """Log new kernel losses and decode errors (at most once per status tick)."""
        now = {**{f"lost {k}": v for k, v in self.capture.lost().items()},
               **{f"decode errors {k}": v for k, v in self.capture.decode_errors.items()}}
        prev = getattr(self, "_loss_seen", {})
        grew = {k: v - prev.get(k, 0) for k, v in now.items() if v > prev.get(k, 0)}
        if grew:
            log.warning("events lost since last report: %s",
                        ", ".join(f"{k}: {v}" for k, v in sorted(grew.items())),
                        extra={"MESSAGE_ID": service.MSG_EVENTS_LOST})
        self._loss_seen = now

    def handle(self, ev: Event) -> None:
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
        from spyderd.traces import trace_id_for

        root = m.refs[0] if m.refs else node
        f = Finding(
            id="fnd-" + uuid.uuid4().hex[:20], rule=m.rule.name, severity=m.rule.severity,
            priority=m.rule.priority, message=m.output, time=ev.time, process_id=node.id,
            trace_id=trace_id_for(root.id), root_id=root.id, event=event_to_dict(ev),
            tags=list(m.rule.tags), message_id=m.rule.message_id)
        self.graph.add_finding(f)
        self.counters["findings"] = self.counters.get("findings", 0) + 1
        self.pending.append(Pending(time.monotonic() + self.cfg.get("findings.settle"), f))

    def send_due(self, now: float) -> None:
        """Chain and send findings whose settle window ended (store flushed first)."""
        due = [p for p in self.pending if p.due <= now]
        if not due:
            return
        from spyderd.traces import chain_for

        self.graph.flush()
        for p in due:
            f = p.finding
            subject = self.store.node(f.process_id)
            if subject is not None:
                f.chain = chain_for(self.store, subject)
            if self.sink is None or self.sink.send(f):
                f.sent = True
                self.pending.remove(p)
            else:
                p.due = now + 5.0  # journald down: keep it, retry
            self.graph.add_finding(f)
        self.graph.flush()

    def reload(self) -> None:
        """Swap the rule set only if the new one loads cleanly."""
        from spyderd.rules import load_rules

        self.reload_requested = False
        try:
            new = load_rules(self.paths.rules)
        except RuleError as exc:
            msg = f"rule reload refused, keeping {len(self.ruleset.rules)} active rules:\n{exc}"
            log.error("%s", msg, extra={"MESSAGE_ID": service.MSG_RELOAD_REFUSED})
            self.errors.append(msg)
            self._write_reload_result(False, str(exc))
            return
        self.ruleset = new
        log.info("rules reloaded: %d rules", len(new.rules))
        self._write_reload_result(True, "")

    def _write_reload_result(self, ok: bool, text: str) -> None:
        _atomic_write(self.paths.runtime_dir / "reload.json",
                      {"ok": ok, "errors": text, "time": time.time(),
                       "rules": len(self.ruleset.rules)})

    def shutdown(self) -> None:
        _notify("STOPPING=1")
        now = time.monotonic() + 3600
        self.send_due(now)  # flush pending findings rather than hold them across a stop
        self.graph.flush()
        self.capture.close()
        service.mark_stopped(self.store, time.time())
        self.store.close()
        self.write_status(ready=False, stopped=True)
        log.info("spyderd stopped")

    def write_status(self, *, ready: bool, stopped: bool = False) -> None:
        cap = getattr(self, "capture", None)
        uptime = max(time.time() - getattr(self, "started", time.time()), 1e-6)
        status = {
            "pid": os.getpid(),
            "version": __version__,
            "ready": ready and not stopped,
            "stopped": stopped,
            "started": getattr(self, "started", time.time()),
            "updated": time.time(),
            "state_dir": str(self.paths.state_dir),
            "probes": {k: {"state": v.state, "reason": v.reason, "hooks": v.hooks}
                       for k, v in (cap.status.items() if cap else [])},
            "events": self.counters.get("events", 0),
            "events_per_s": round(self.counters.get("events", 0) / uptime, 1),
            "received": dict(cap.received) if cap else {},
            "lost": cap.lost() if cap and cap._bpf else {},
            "decode_errors": dict(cap.decode_errors) if cap else {},
            "findings": self.counters.get("findings", 0),
            "findings_pending": len(self.pending),
            "rules": len(self.ruleset.rules) if hasattr(self, "ruleset") else 0,
            "rules_disabled": dict(self.ruleset.disabled) if hasattr(self, "ruleset") else {},
            "sink_errors": self.sink.errors if getattr(self, "sink", None) else 0,
            "errors": self.errors[-10:],
            "capture_gap": self.last_gap.as_dict() if getattr(self, "last_gap", None) else None,
        }
        _atomic_write(self.paths.runtime_dir / "status.json", status)


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _notify(msg: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon as sd

        sd.notify(msg)
    except Exception as exc:  # noqa: BLE001 - notification is best effort, never fatal
        log.debug("sd_notify failed: %s", exc)


def check(cfg_path: str | None, rules: list[str] | None) -> int:
    """`spyderd --check`: validate config and rules, print located errors."""
    try:
        cfg = load_config(cfg_path, required=cfg_path is not None)
        paths = resolve_paths(cfg, None, None, rules)
        from spyderd.rules import load_rules

        rs = load_rules(paths.rules)
    except SpyderError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"config {cfg.source}: ok; {len(rs.rules)} rules ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spyderd", description="eBPF audit daemon")
    ap.add_argument("--config")
    ap.add_argument("--state-dir")
    ap.add_argument("--runtime-dir")
    ap.add_argument("--rules", action="append", help="rule file or directory (repeatable)")
    ap.add_argument("--check", action="store_true", help="validate config and rules, exit")
    ap.add_argument("--version", action="version", version=f"spyderd {__version__}")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.config, args.rules)
    try:
        cfg = load_config(args.config, required=args.config is not None)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    service.setup_logging(cfg.get("log_level"))
    d = Daemon(cfg, resolve_paths(cfg, args.state_dir, args.runtime_dir, args.rules))

    def on_term(*_):
        d.stop = True

    def on_hup(*_):
        d.reload_requested = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        d.setup()
        d.run()
    except SpyderError as exc:
        print(f"spyderd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

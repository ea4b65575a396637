"""spyderd: the one process that wires capture → graph → rules → traces → sinks.

Only this module knows every stage; each stage only knows the model and the stage
before it. It builds the stages (`Daemon.setup`), reloads and stops them; the loop that
runs them is `daemon.loop`, the status it reports `daemon.status`, the lookup of journal
alerts' images `daemon.alerts`, systemd's side `daemon.service`.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd import __version__
from spyderd.capture.journal import JournalFollower
from spyderd.capture.scope import Scope, parse_scope
from spyderd.capture.snapshot import listening_sockets, snapshot
from spyderd.common import access
from spyderd.common.config import Config, load_config
from spyderd.daemon import service
from spyderd.daemon.alerts import AlertImages
from spyderd.daemon.control import ControlServer
from spyderd.daemon.loop import Loop
from spyderd.daemon.status import atomic_write, status_dict
from spyderd.enrich import Enricher
from spyderd.errors import AlreadyRunningError, ConfigError, RuleError, SpyderError
from spyderd.findings.intake import Findings
from spyderd.graph import Graph, Store
from spyderd.graph.guard import GuardedStore, Limits, SpaceWatch
from spyderd.graph.salvage import fresh_store, open_store
from spyderd.model import event_to_dict
from spyderd.rules import load_rules
from spyderd.sinks.journald import JournaldSink
from spyderd.sinks.jsonl import JsonlSink
from spyderd.traces.fold import Folder
from spyderd.traces.suppress import load_suppressions
from spyderd.traces.tracker import TraceTracker

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
        state_dir=Path(state or os.environ.get("SPYDERD_STATE_DIR") or cfg.state_dir),
        runtime_dir=Path(runtime or os.environ.get("SPYDERD_RUNTIME_DIR")
                         or cfg.runtime_dir),
        rules=list(rules) if rules else list(cfg.rules),
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


@dataclass
class Daemon(Loop):
    cfg: Config
    paths: Paths
    stop: bool = False
    reload_requested: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: service.InstanceLock | None = None  # held from main() on, see service.py
    scope: Any = None  # spyderd.capture.scope.Scope when capture.scope is set
    exporter: Any = None  # spyderd.fleet.exporter.Exporter when fleet.url is set

    def setup(self) -> None:
        # lazy: the loaders pull in bcc/libbpf (~0.4 s); `spyderd --check` never needs them
        from spyderd.capture.loader import Capture

        self.started = time.time()
        self._prepare_access()
        if self.lock is not None:
            self.lock.write_pid(self.paths.runtime_dir)
        self.write_status(ready=False)
        self.ruleset = load_rules(self.paths.rules)
        self.machine_id, self.boot = machine_identity()
        self.machine_id = self.cfg.machine_id or self.machine_id
        self.scope = _make_scope(self.cfg.capture.scope)
        self.store = self._open_store()

        self.enricher = Enricher(self.boot, self.machine_id, boot_wall_ns=boot_wall_ns())
        self.graph = Graph(self.store, self.boot, boot_wall_ns=boot_wall_ns(),
                           machine_id=self.machine_id,
                           max_recent=self.cfg.store.max_memory_nodes,
                           enricher=self.enricher)
        self._setup_findings()
        self.capture = Capture(
            dataclasses.replace(self.cfg.capture, state_dir=str(self.paths.state_dir)),
            ignore_tgid=os.getpid() if self.cfg.capture.ignore_self else 0)
        service.notify("STATUS=loading and attaching probes")  # `systemctl status` while starting
        self.capture.start()  # capture first, then snapshot: no gap between the two
        if self.capture.loader_name == "bcc":
            _release_compiler_memory()
        attached = time.time()
        procs = snapshot()
        if self.scope is not None:
            procs = [p for p in procs if self.scope.admits_pid(p.pid)]
        n = self.graph.load_snapshot(procs, listening=listening_sockets())
        self.graph.flush()
        self.last_gap = service.report_gap(self.store, attached, self._previous_sender())
        service.mark_running(self.store, time.time())
        self._resend_unsent()
        self._start_live()
        log.info("spyderd %s ready: %d processes in snapshot, %d rules, probes: %s",
                 __version__, n, len(self.ruleset.rules),
                 ", ".join(f"{k}={v.state}" for k, v in self.capture.status.items()))
        self.write_status(ready=True)
        service.notify("READY=1\nSTATUS=capturing")

    def _open_store(self):
        """The store behind a guard: a corrupted one is moved aside and a fresh one made,
        a full or failing disk degrades it (spyderd.graph.guard, spyderd.graph.salvage)."""
        s = self.cfg.store
        map_size = max(s.map_size_mb, 1) << 20
        store, self.store_moved = open_store(self.paths.state_dir, map_size=map_size,
                                             check_seconds=s.check_seconds)
        if self.store_moved is not None:
            self.errors.append(f"store was corrupted: moved aside to {self.store_moved}")
        limits = Limits(max_events=max(s.degraded_max_events, 0),
                        max_findings=max(s.degraded_max_findings, 0),
                        report_every=max(s.fault_report_seconds, 1.0))
        space = SpaceWatch(s.space_left_mb, s.space_left_action,
                           s.admin_space_left_mb, s.admin_space_left_action)
        return GuardedStore(store, limits=limits, space=space,
                            on_corrupt=fresh_store(self.paths.state_dir, map_size),
                            reopen=lambda: Store(self.paths.state_dir, map_size=map_size))

    def _previous_sender(self) -> dict | None:
        """The last signal the kernel saw aimed at the previous daemon on this state dir
        (the capture keeps it in a pinned map that outlives a SIGKILL), for the gap report."""
        read = getattr(self.capture, "previous_self_signal", None)
        try:
            last = read() if read is not None else None
        except Exception as exc:  # noqa: BLE001 - naming the killer must not stop a start
            log.warning("cannot read the previous daemon's last signal: %s", exc)
            return None
        return last.to_dict() if hasattr(last, "to_dict") else last

    def _prepare_access(self) -> None:
        """umask 027; state and runtime directories 0750 root:spyder (see spyderd.common.access)."""
        self.gid = access.group_id(self.cfg.access.group)
        access.prepare_dirs([self.paths.runtime_dir, self.paths.state_dir], self.gid)

    def _setup_findings(self) -> None:
        """Sinks, suppressions, folding and traces between the rules and the outside."""
        access.secure_store(self.store.path, self.gid)
        self.sinks = self._make_sinks()
        self.sink = next((s for s in self.sinks if s.name == "journald"), None)
        f = self.cfg.findings
        tracker = TraceTracker(threshold=f.trace_threshold,
                               settle=f.trace_settle, idle=f.trace_idle,
                               sinks=tuple(s.name for s in self.sinks), lookup=self.store.trace)
        self.findings = Findings(self.graph, self.store, self.sinks, tracker,
                                 Folder(f.fold_window),
                                 self._load_suppressions(), settle=f.settle)

    def _make_sinks(self) -> list:
        sinks: list = []
        if self.cfg.findings.journald:

            sinks.append(JournaldSink(self.machine_id))
        if self.cfg.findings.jsonl:

            sinks.append(JsonlSink(self.cfg.findings.jsonl))
        return sinks

    def _load_suppressions(self):
        return load_suppressions(self.cfg.findings.suppressions)

    def _resend_unsent(self) -> None:
        """Findings stored but not yet delivered (crash, journald down) are sent now."""
        self.findings.resend_unsent()

    def _start_live(self) -> None:
        """The control socket and the journal follower, both polled from the loop."""
        self.control = ControlServer(self.paths.runtime_dir, {
            "status": lambda req: {"ok": True, "status": self.status_dict(ready=True)},
            "reload": self._control_reload}, self.gid)
        self.control.start()
        self.findings.publish = self.control.publish
        self.exporter = self._start_fleet()
        self.alerts = None
        if self.cfg.alerts.journal:
            self.alerts = JournalFollower(AlertImages(self.graph, self.store),
                                          max_priority=self.cfg.alerts.max_priority)
            self.alerts.open()

    def _service_live(self) -> None:
        """Third-party alerts into the graph and rules; control requests; never blocks."""
        if self.alerts is not None:
            for ev in self.alerts.poll():
                self.handle(ev)
                self.control.publish("alerts", event_to_dict(ev))
        self.control.service(0)

    def _start_fleet(self):
        """The outbox (in every graph batch) and its publisher thread, when fleet.url is set."""
        sec = self.cfg.fleet
        if not sec.url:
            return None
        # lazy: the fleet is optional (nats-py), loaded only when fleet.url is set
        from spyderd.fleet.bus import BusConfig, secret_problem
        from spyderd.fleet.exporter import Exporter, FleetAlerts, trace_answerer
        from spyderd.fleet.outbox import Outbox

        problem = secret_problem(self.cfg.source, sec)
        if problem:
            log.error("fleet disabled: %s", problem)
            self.errors.append(f"fleet disabled: {problem}")
            return None
        name = sec.name or os.uname().nodename
        bus = BusConfig.from_section(dataclasses.replace(sec, name=name))
        self.graph.outbox = Outbox(self.store, name, self.boot, limit=sec.outbox_max)
        from systemd import journal  # lazy: python3-systemd is optional outside systemd

        alerts = FleetAlerts(self.store, name, self.machine_id,
                             self.cfg.findings.trace_threshold, journal.send)
        nat = None
        if sec.nat:
            from spyderd.fleet.nat import NatWatcher

            scope = self.cfg.capture.scope
            nat = NatWatcher(scope[6:] if scope.startswith("netns:/") else "")
        exporter = Exporter(bus, self.graph.outbox, trace_answerer(self.store, name), alerts,
                            nat)
        exporter.start()
        return exporter

    def _stop_live(self) -> None:
        if getattr(self, "exporter", None) is not None:
            self.graph.flush()  # what the exporter sends last is what the store holds
            self.exporter.close()
        if getattr(self, "control", None) is not None:
            self.control.close()
        if getattr(self, "alerts", None) is not None:
            self.alerts.close()

    def _control_reload(self, req: dict) -> dict:
        self.reload()
        res = dict(getattr(self, "last_reload", {}))
        return {**res, "ok": bool(res.get("ok"))}

    def reload(self) -> None:
        """Swap the rule set only if the new one loads cleanly."""
        self.reload_requested = False
        try:
            new = load_rules(self.paths.rules)
            suppressions = self._load_suppressions()
        except (RuleError, ConfigError) as exc:
            msg = f"rule reload refused, keeping {len(self.ruleset.rules)} active rules:\n{exc}"
            log.error("%s", msg, extra={"MESSAGE_ID": service.MSG_RELOAD_REFUSED})
            self.errors.append(msg)
            self._write_reload_result(False, str(exc))
            return
        kept = new.adopt_state(self.ruleset)  # unfinished sequence matches carry over
        self.ruleset = new
        self.findings.suppressions = suppressions
        log.info("rules reloaded: %d rules (%d sequences kept their partial matches)",
                 len(new.rules), len(kept))
        self._write_reload_result(True, "")

    def _write_reload_result(self, ok: bool, text: str) -> None:
        self.last_reload = {"ok": ok, "errors": text, "time": time.time(),
                            "rules": len(self.ruleset.rules)}
        atomic_write(self.paths.runtime_dir / "reload.json", self.last_reload)

    def _drain_capture(self, budget: float = 1.0) -> None:
        """What the ring buffer still holds goes through the rules before the stop, for at
        most `budget` seconds: the record of the signal that is stopping us (SIGTERM,
        SIGINT) among it, so its finding is sent before spyderd goes, as far as the kernel
        allows (not for SIGKILL). What is left after the budget is counted and logged."""
        deadline = time.monotonic() + budget
        left = 0
        try:
            for ev in self.capture.poll(0):
                if time.monotonic() < deadline:
                    self.handle(ev)
                else:
                    left += 1
        except Exception as exc:  # noqa: BLE001 - a stop must complete
            log.warning("draining the capture at shutdown failed: %s", exc)
        if left:
            log.warning("%d events read at shutdown were not processed (%.0f s budget)",
                        left, budget, extra={"MESSAGE_ID": service.MSG_EVENTS_LOST})

    def shutdown(self) -> None:
        service.notify(service.STOPPING)  # and no watchdog kill while the probes are detached
        self._drain_capture()
        self.findings.flush_all()  # send pending findings rather than hold them across a stop
        self._stop_live()
        self.graph.flush()
        self.capture.close()
        service.mark_stopped(self.store, time.time())
        if not self.store.retry(force=True):
            log.error("store still %s at shutdown: %d findings and %d events held in memory "
                      "are not stored (the findings were sent to the sinks)",
                      self.store.fault, len(self.store.held.findings),
                      len(self.store.held.events))
        self.store.close()
        self.write_status(ready=False, stopped=True)
        if self.lock is not None:
            self.lock.release()
        log.info("spyderd stopped")

    def write_status(self, *, ready: bool, stopped: bool = False) -> None:
        atomic_write(self.paths.runtime_dir / "status.json",
                     self.status_dict(ready=ready, stopped=stopped))

    def status_dict(self, *, ready: bool, stopped: bool = False) -> dict:
        return status_dict(self, ready=ready, stopped=stopped)



def _make_scope(text: str):
    """capture.scope as a filter, or None when the daemon sees the whole kernel."""

    kind, target = parse_scope(text)
    return Scope(kind, target, in_kernel=True) if kind else None


def _release_compiler_memory() -> None:
    """bcc's clang/LLVM leaves ~60 MB of freed heap behind after compiling; give it back."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def check(cfg_path: str | None, rules: list[str] | None) -> int:
    """`spyderd --check`: validate config and rules, print located errors."""
    try:
        cfg = load_config(cfg_path, required=cfg_path is not None)
        paths = resolve_paths(cfg, None, None, rules)
        rs = load_rules(paths.rules)
        sup = load_suppressions(cfg.findings.suppressions)
    except SpyderError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"config {cfg.source}: ok; {len(rs.rules)} rules ok; "
          f"{len(sup.policies)} suppression policies ok")
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
    service.setup_logging(cfg.log_level)
    paths = resolve_paths(cfg, args.state_dir, args.runtime_dir, args.rules)
    try:  # first of all: a refused second start must not touch the running one's files
        lock = service.acquire_instance_lock(paths.state_dir, paths.runtime_dir)
    except AlreadyRunningError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    d = Daemon(cfg, paths, lock=lock)

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

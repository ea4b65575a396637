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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd import __version__
from spyderd.common.config import Config, load_config
from spyderd.daemon import service
from spyderd.errors import AlreadyRunningError, ConfigError, RuleError, SpyderError
from spyderd.model import Event, Node, event_to_dict

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


@dataclass
class Daemon:
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
        from spyderd.capture.loader import Capture
        from spyderd.capture.snapshot import listening_sockets, snapshot
        from spyderd.graph import Graph
        from spyderd.rules import load_rules

        self.started = time.time()
        self._prepare_access()
        if self.lock is not None:
            self.lock.write_pid(self.paths.runtime_dir)
        self.write_status(ready=False)
        self.ruleset = load_rules(self.paths.rules)
        self.machine_id, self.boot = machine_identity()
        self.machine_id = self.cfg.get("machine_id") or self.machine_id
        self.scope = _make_scope(self.cfg.get("capture.scope"))
        self.store = self._open_store()
        from spyderd.enrich import Enricher

        self.enricher = Enricher(self.boot, self.machine_id, boot_wall_ns=boot_wall_ns())
        self.graph = Graph(self.store, self.boot, boot_wall_ns=boot_wall_ns(),
                           machine_id=self.machine_id,
                           max_recent=self.cfg.get("store.max_memory_nodes"),
                           enricher=self.enricher)
        self._setup_findings()
        self.capture = Capture(
            ring_pages=self.cfg.get("capture.ring_buffer_pages"),
            max_args=self.cfg.get("capture.max_args"),
            arg_bytes=self.cfg.get("capture.arg_bytes"),
            ignore_tgid=os.getpid() if self.cfg.get("capture.ignore_self") else 0,
            options=self.cfg.get("capture"))
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
        from spyderd.graph.guard import GuardedStore, Limits, SpaceWatch
        from spyderd.graph.salvage import fresh_store, open_store

        c = self.cfg.get
        map_size = max(c("store.map_size_mb"), 1) << 20
        store, self.store_moved = open_store(self.paths.state_dir, map_size=map_size,
                                             check_seconds=c("store.check_seconds"))
        if self.store_moved is not None:
            self.errors.append(f"store was corrupted: moved aside to {self.store_moved}")
        limits = Limits(max_events=max(c("store.degraded_max_events"), 0),
                        max_findings=max(c("store.degraded_max_findings"), 0),
                        report_every=max(c("store.fault_report_seconds"), 1.0))
        space = SpaceWatch(c("store.space_left_mb"), c("store.space_left_action"),
                           c("store.admin_space_left_mb"), c("store.admin_space_left_action"))
        return GuardedStore(store, limits=limits, space=space,
                            on_corrupt=fresh_store(self.paths.state_dir, map_size))

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
        from spyderd.common import access

        self.gid = access.group_id(self.cfg.get("access.group"))
        access.prepare_dirs([self.paths.runtime_dir, self.paths.state_dir], self.gid)

    def _setup_findings(self) -> None:
        """Sinks, suppressions, folding and traces between the rules and the outside."""
        from spyderd.common import access
        from spyderd.findings.intake import Findings
        from spyderd.traces.fold import Folder
        from spyderd.traces.tracker import TraceTracker

        access.secure_store(self.store.path, self.gid)
        self.sinks = self._make_sinks()
        self.sink = next((s for s in self.sinks if s.name == "journald"), None)
        c = self.cfg.get
        tracker = TraceTracker(threshold=c("findings.trace_threshold"),
                               settle=c("findings.trace_settle"), idle=c("findings.trace_idle"),
                               sinks=tuple(s.name for s in self.sinks), lookup=self.store.trace)
        self.findings = Findings(self.graph, self.store, self.sinks, tracker,
                                 Folder(c("findings.fold_window")),
                                 self._load_suppressions(), settle=c("findings.settle"))

    def _make_sinks(self) -> list:
        sinks: list = []
        if self.cfg.get("findings.journald"):
            from spyderd.sinks.journald import JournaldSink

            sinks.append(JournaldSink(self.machine_id))
        if self.cfg.get("findings.jsonl"):
            from spyderd.sinks.jsonl import JsonlSink

            sinks.append(JsonlSink(self.cfg.get("findings.jsonl")))
        return sinks

    def _load_suppressions(self):
        from spyderd.traces.suppress import load_suppressions

        return load_suppressions(self.cfg.get("findings.suppressions"))

    def _resend_unsent(self) -> None:
        """Findings stored but not yet delivered (crash, journald down) are sent now."""
        self.findings.resend_unsent()

    def _start_live(self) -> None:
        """The control socket and the journal follower, both polled from the loop."""
        from spyderd.capture.journal import JournalFollower
        from spyderd.daemon.control import ControlServer

        self.control = ControlServer(self.paths.runtime_dir, {
            "status": lambda req: {"ok": True, "status": self.status_dict(ready=True)},
            "reload": self._control_reload}, self.gid)
        self.control.start()
        self.findings.publish = self.control.publish
        self.exporter = self._start_fleet()
        self.alerts = None
        if self.cfg.get("alerts.journal"):
            self.alerts = JournalFollower(self._alert_image,
                                          max_priority=self.cfg.get("alerts.max_priority"))
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
        sec = self.cfg.get("fleet")
        if not sec["url"]:
            return None
        from spyderd.fleet.bus import BusConfig, secret_problem
        from spyderd.fleet.exporter import Exporter, FleetAlerts, trace_answerer
        from spyderd.fleet.outbox import Outbox

        problem = secret_problem(self.cfg.source, sec)
        if problem:
            log.error("fleet disabled: %s", problem)
            self.errors.append(f"fleet disabled: {problem}")
            return None
        name = sec["name"] or os.uname().nodename
        bus = BusConfig.from_section({**sec, "name": name})
        self.graph.outbox = Outbox(self.store, name, self.boot, limit=sec["outbox_max"])
        from systemd import journal

        alerts = FleetAlerts(self.store, name, self.machine_id,
                             self.cfg.get("findings.trace_threshold"), journal.send)
        nat = None
        if sec["nat"]:
            from spyderd.fleet.nat import NatWatcher

            scope = self.cfg.get("capture.scope")
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

    def _alert_image(self, pid: int, t: int, unit: str) -> Node | None:
        """The process image that wrote a journal entry: pid alive at `t`, else the unit's.

        journald stamps entries when it receives them, a little after the write: an image
        running at `t` wins; failing that, one that ended or started within `slack` of it.
        """
        if pid:
            return self._image_of(pid, t)
        if unit:
            cands = [n for n in self.graph.live.values()
                     if unit in (n.attrs.get("unit"), n.attrs.get("systemd_unit"))
                     or str(n.attrs.get("cgroup", "")).endswith("/" + unit)]
            return max(cands, key=lambda n: n.start) if cands else None
        return None

    def _image_of(self, pid: int, t: int, slack: int = 50_000_000) -> Node | None:
        cands = []
        live = self.graph.live.get(pid)
        if live is not None:
            cands.append(live)
        for i, n in enumerate(reversed(self.graph.nodes.values())):
            if i >= 50_000:
                break
            if n.kind == "process" and n.pid == pid and n is not live:
                cands.append(n)
        for s in (0, slack):
            alive = [n for n in cands if n.start <= t + s and (not n.end or n.end + s >= t)]
            if alive:
                return max(alive, key=lambda n: n.start)
        from spyderd.graph.query import History

        return History(self.store).by_pid(pid, at_ns=t)  # evicted from memory: the store

    def _trace_status(self) -> dict:
        """Findings, traces, sinks, alerts, control socket and store, for `spyderctl status`."""
        out: dict = {}
        if getattr(self, "findings", None) is not None:
            out["findings_detail"] = self.findings.status()
            out["findings_pending"] = len(self.findings.pending)
        if getattr(self, "alerts", None) is not None:
            out["alerts"] = self.alerts.status()
        if getattr(self, "control", None) is not None:
            out["control"] = dict(self.control.stats, socket=str(self.control.path))
        if getattr(self, "store", None) is not None:
            out["store"] = self._store_status()
        if getattr(self, "exporter", None) is not None:
            out["fleet"] = self.exporter.status()
        if getattr(self, "scope", None) is not None:
            out["scope"] = self.scope.status()
        return out

    def _store_status(self) -> dict:
        """Store size and age (oldest event kept); refreshed every 10 s, it reads a block."""
        now = time.monotonic()
        cached = getattr(self, "_store_cache", None)
        if cached and now - cached[0] < 10:
            return {**cached[1], "health": self.store.status()}
        st = {"path": str(self.store.path)}
        try:
            stats = self.store.stats()
            st.update(bytes=stats["bytes"], used_bytes=stats["used_bytes"],
                      events=stats["event_count"], nodes=stats["nodes"],
                      findings=stats["findings"], traces=stats["traces"])
            first = next(iter(self.store.events(0)), None)
            st["oldest"] = first["time"] if first else 0
        except Exception as exc:  # noqa: BLE001 - status must not break the loop
            st["error"] = str(exc)
        if getattr(self, "store_moved", None) is not None:
            st["moved_aside"] = str(self.store_moved)
        self._store_cache = (now, st)
        return {**st, "health": self.store.status()}

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
                for ctx_node in self.enricher.updates():  # late container/VM/netns facts
                    self.graph.touch(ctx_node)
                self._report_losses()
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
        from spyderd.graph.retention import Policy, prune

        if now < getattr(self, "_next_prune", 0.0):
            return
        policy = Policy(max_age_s=self.cfg.get("store.retention_days") * 86400,
                        max_bytes=self.cfg.get("store.max_size_mb") << 20)
        res = self.store.maintain(lambda store: prune(store, policy))
        if res is None:  # the store is degraded: no retention until it writes again
            self._next_prune = now + 30.0
            return
        self._next_prune = now + (0.5 if not res.done else 30.0)
        if res.nodes or res.event_blocks or res.findings:
            log.info("retention pruned %d nodes, %d event blocks, %d findings",
                     res.nodes, res.event_blocks, res.findings)

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

    def reload(self) -> None:
        """Swap the rule set only if the new one loads cleanly."""
        from spyderd.rules import load_rules

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
        _atomic_write(self.paths.runtime_dir / "reload.json", self.last_reload)

    def shutdown(self) -> None:
        service.notify(service.STOPPING)  # and no watchdog kill while the probes are detached
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
        _atomic_write(self.paths.runtime_dir / "status.json",
                      self.status_dict(ready=ready, stopped=stopped))

    def status_dict(self, *, ready: bool, stopped: bool = False) -> dict:
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
            "probes": {k: v.to_dict() for k, v in (cap.status.items() if cap else [])},
            "loader": cap.loader_info() if cap else {},
            "kernel_counters": cap.counters() if cap and cap.running else {},
            "events": self.counters.get("events", 0),
            "events_per_s": round(self.counters.get("events", 0) / uptime, 1),
            "received": dict(cap.received) if cap else {},
            "lost": cap.lost() if cap and cap.running else {},
            "decode_errors": dict(cap.decode_errors) if cap else {},
            "findings": self.counters.get("findings", 0),
            "rules": len(self.ruleset.rules) if hasattr(self, "ruleset") else 0,
            "rules_disabled": dict(self.ruleset.disabled) if hasattr(self, "ruleset") else {},
            "rules_stats": self.ruleset.stats() if hasattr(self, "ruleset") else {},
            "sink_errors": self.sink.errors if getattr(self, "sink", None) else 0,
            "errors": self.errors[-10:],
            "capture_gap": self.last_gap.as_dict() if getattr(self, "last_gap", None) else None,
            "enrich": self.enricher.status() if getattr(self, "enricher", None) else {},
            **self._trace_status(),
        }
        return status


def _make_scope(text: str):
    """capture.scope as a filter, or None when the daemon sees the whole kernel."""
    from spyderd.capture.scope import Scope, parse_scope

    kind, target = parse_scope(text)
    return Scope(kind, target) if kind else None


def _release_compiler_memory() -> None:
    """bcc's clang/LLVM leaves ~60 MB of freed heap behind after compiling; give it back."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def check(cfg_path: str | None, rules: list[str] | None) -> int:
    """`spyderd --check`: validate config and rules, print located errors."""
    try:
        cfg = load_config(cfg_path, required=cfg_path is not None)
        paths = resolve_paths(cfg, None, None, rules)
        from spyderd.rules import load_rules

        rs = load_rules(paths.rules)
        from spyderd.traces.suppress import load_suppressions

        sup = load_suppressions(cfg.get("findings.suppressions"))
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
    service.setup_logging(cfg.get("log_level"))
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

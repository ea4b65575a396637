"""The daemon's status: what `spyderctl status` shows, written to status.json every second
and answered over the control socket."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spyderd import __version__
from spyderd.graph.retention import projection

if TYPE_CHECKING:  # for annotations only: wiring imports this module
    from spyderd.daemon.wiring import Daemon


def trace_status(d: Daemon) -> dict:
    """Findings, traces, sinks, alerts, control socket and store, for `spyderctl status`."""
    out: dict = {}
    if getattr(d, "findings", None) is not None:
        out["findings_detail"] = d.findings.status()
        out["findings_pending"] = len(d.findings.pending)
    if getattr(d, "alerts", None) is not None:
        out["alerts"] = d.alerts.status()
    if getattr(d, "control", None) is not None:
        out["control"] = dict(d.control.stats, socket=str(d.control.path))
    if getattr(d, "store", None) is not None:
        out["store"] = store_status(d)
    if getattr(d, "exporter", None) is not None:
        out["fleet"] = d.exporter.status()
    if getattr(d, "scope", None) is not None:
        out["scope"] = d.scope.status()
    return out

def _event_rate(d: Daemon, now: float, window: float = 600.0) -> float:
    """Events per second over about the last `window` seconds (status refreshes)."""
    samples = d.__dict__.setdefault("_rate_samples", [])
    samples.append((now, d.counters.get("events", 0)))
    while len(samples) > 2 and now - samples[1][0] >= window:
        samples.pop(0)
    t0, n0 = samples[0]
    return (samples[-1][1] - n0) / (now - t0) if now > t0 else 0.0


def store_status(d: Daemon) -> dict:
    """Store size and age (oldest event kept); refreshed every 10 s, it reads a block."""
    now = time.monotonic()
    cached = getattr(d, "_store_cache", None)
    if cached and now - cached[0] < 10:
        return {**cached[1], "health": d.store.status()}
    st = {"path": str(d.store.path)}
    try:
        stats = d.store.stats()
        st.update(bytes=stats["bytes"], used_bytes=stats["used_bytes"],
                  events=stats["event_count"], nodes=stats["nodes"],
                  findings=stats["findings"], traces=stats["traces"])
        st["oldest"] = d.store.oldest_event_time()
        st["projection"] = projection(stats["used_bytes"], stats["event_count"],
                                      _event_rate(d, now), d.cfg.store.max_size_mb << 20)
    except Exception as exc:  # noqa: BLE001 - status must not break the loop
        st["error"] = str(exc)
    if getattr(d, "store_moved", None) is not None:
        st["moved_aside"] = str(d.store_moved)
    d._store_cache = (now, st)
    return {**st, "health": d.store.status()}

def status_dict(d: Daemon, *, ready: bool, stopped: bool = False) -> dict:
    """Everything `spyderctl status` shows, as written to status.json every second."""
    cap = getattr(d, "capture", None)
    uptime = max(time.time() - getattr(d, "started", time.time()), 1e-6)
    status = {
        "pid": os.getpid(),
        "version": __version__,
        "ready": ready and not stopped,
        "stopped": stopped,
        "started": getattr(d, "started", time.time()),
        "updated": time.time(),
        "state_dir": str(d.paths.state_dir),
        "probes": {k: v.to_dict() for k, v in (cap.status.items() if cap else [])},
        "loader": cap.loader_info() if cap else {},
        "probe_integrity": cap.integrity.status() if cap and cap.integrity else {},
        "kernel_counters": cap.counters() if cap and cap.running else {},
        "events": d.counters.get("events", 0),
        "events_per_s": round(d.counters.get("events", 0) / uptime, 1),
        "received": dict(cap.received) if cap else {},
        "lost": cap.lost() if cap and cap.running else {},
        "decode_errors": dict(cap.decode_errors) if cap else {},
        "findings": d.counters.get("findings", 0),
        "rules": len(d.ruleset.rules) if hasattr(d, "ruleset") else 0,
        "rules_disabled": dict(d.ruleset.disabled) if hasattr(d, "ruleset") else {},
        "rules_stats": d.ruleset.stats() if hasattr(d, "ruleset") else {},
        "sink_errors": d.sink.errors if getattr(d, "sink", None) else 0,
        "errors": d.errors[-10:],
        "capture_gap": d.last_gap.as_dict() if getattr(d, "last_gap", None) else None,
        "enrich": d.enricher.status() if getattr(d, "enricher", None) else {},
        "memory": memory_status(d),
        **trace_status(d),
    }
    return status


def memory_status(d: Daemon) -> dict:
    """What holds the daemon's memory and its bounds: graph nodes in memory
    (store.max_memory_nodes) and records read but not yet processed (capture.backlog_mb)."""
    g = getattr(d, "graph", None)
    cap = getattr(d, "capture", None)
    out: dict = {"backlog_bytes": cap.backlog_bytes() if cap and cap.running else 0}
    if g is not None:
        out.update(graph_nodes=len(g.nodes), max_memory_nodes=g.max_recent,
                   live_processes=len(g.live))
    return out


def atomic_write(path: Path, data: dict) -> None:
    """Readers (spyderctl) never see a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)

"""The daemon's status: what `spyderctl status` shows, written to status.json every second
and answered over the control socket."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spyderd import __version__

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
        first = next(iter(d.store.events(0)), None)
        st["oldest"] = first["time"] if first else 0
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
        **trace_status(d),
    }
    return status


def atomic_write(path: Path, data: dict) -> None:
    """Readers (spyderctl) never see a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)

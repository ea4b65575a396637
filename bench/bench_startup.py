"""Startup time: from starting spyderd to READY=1, the moment `systemctl start` returns.

    python bench/bench_startup.py [--runs N] [--config PATH] [--no-phases] [--per-probe] [--json]

1. End to end, as systemd sees it: spyderd runs with NOTIFY_SOCKET pointing at a datagram
   socket of ours (what systemd does for Type=notify), on fresh state and runtime
   directories, with the shipped config and rule pack; the time from fork to READY=1 is
   measured `--runs` times (median, min, max; the first run, with colder caches, is shown
   separately), then SIGTERM and the time to a clean exit.
2. Where the time goes: `Daemon.setup()` once in this process with timers around each
   phase: imports, rules, store, BTF, clang compile (bcc's module creation), program load
   (the verifier), tracepoint attach, probe self-test, /proc snapshot, first flush.
3. `--per-probe`: the same phases with one probe enabled at a time (the others in
   capture.disable), to show which probe costs what.

bcc 0.26's Python API always compiles from C source (no ELF or bytecode cache to reuse), so
the clang step is paid at every start; see bench/README.md. Needs root and the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


# ---------------------------------------------------------------- end to end


def time_to_ready(workdir: Path, config: Path, timeout: float = 400) -> dict[str, float]:
    """One spyderd start under a notify socket: seconds to READY=1 and to a clean exit."""
    sock_path = workdir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), PYTHONPATH=str(REPO),
               SPYDERD_STATE_DIR=str(workdir / "state"),
               SPYDERD_RUNTIME_DIR=str(workdir / "run"))
    args = [sys.executable, "-m", "spyderd", "--config", str(config),
            "--rules", str(REPO / "rules")]
    with open(workdir / "spyderd.log", "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = _wait_ready(sock, proc, t0 + timeout)
        t_ready = time.monotonic() - t0
        t1 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        t_stop = time.monotonic() - t1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    if not ready:
        tail = (workdir / "spyderd.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"spyderd exited {proc.returncode} before READY=1:\n{tail}")
    return {"ready_s": t_ready, "stop_s": t_stop, "exit_code": rc}


def _wait_ready(sock: socket.socket, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        sock.settimeout(0.2)
        try:
            msg = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            if proc.poll() is not None:
                return False
            continue
        if "READY=1" in msg.split("\n"):
            return True
    return False


# ---------------------------------------------------------------- phases


class Timers:
    """Wall time per phase; nested timers of the same phase count once."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth: dict[str, int] = defaultdict(int)

    def wrap(self, label: str, fn: Callable) -> Callable:
        def timed(*a: Any, **kw: Any) -> Any:
            self._depth[label] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self._depth[label] -= 1
                if self._depth[label] == 0:
                    self.total[label] += time.perf_counter() - t0
                    self.calls[label] += 1
        return timed


@contextmanager
def patched(obj: Any, attr: str, timers: Timers, label: str):
    """Time obj.attr while inside the block; silently nothing if the attribute is gone."""
    orig = getattr(obj, attr, None)
    if orig is None:
        yield
        return
    raw = obj.__dict__.get(attr, orig) if isinstance(obj, type) else orig
    wrapped = timers.wrap(label, orig)
    setattr(obj, attr, staticmethod(wrapped) if isinstance(raw, staticmethod) else
            classmethod(timers.wrap(label, raw.__func__)) if isinstance(raw, classmethod)
            else wrapped)
    try:
        yield
    finally:
        setattr(obj, attr, raw)


def phases(workdir: Path, config: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Run Daemon.setup() in this process with timers around each phase; then shut down."""
    timers = Timers()
    t0 = time.perf_counter()
    import bcc
    from bcc import libbcc

    import spyderd.capture.btf as btf_mod
    import spyderd.capture.snapshot as snap_mod
    import spyderd.rules as rules_mod
    from spyderd.capture import loader as bpf_mod
    from spyderd.common.config import load_config
    from spyderd.daemon.wiring import Daemon, resolve_paths
    from spyderd.errors import SpyderError
    from spyderd.graph import Graph, Store
    timers.total["imports (spyderd, bcc)"] = time.perf_counter() - t0

    cfg = load_config(str(config))
    paths = resolve_paths(cfg, str(workdir / "state"), str(workdir / "run"), [str(REPO / "rules")])
    with ExitStack() as st:
        for obj, attr, label in [
            (rules_mod, "load_rules", "rules: load + compile"),
            (Store, "__init__", "store: open LMDB"),
            (btf_mod.BTF, "load", "BTF: parse /sys/kernel/btf/vmlinux"),
            (libbcc.lib, "bpf_module_create_c_from_string", "bcc: clang compile to BPF"),
            (bcc.BPF, "load_func", "bcc: program load (verifier)"),
            (bcc.BPF, "attach_tracepoint", "bcc: attach tracepoints"),
            (bcc.BPF, "attach_raw_tracepoint", "bcc: attach tracepoints"),
            (bpf_mod.Capture, "self_test", "capture: probe self-test"),
            (snap_mod, "snapshot", "snapshot: /proc walk"),
            (snap_mod, "listening_sockets", "snapshot: sock_diag listeners"),
            (Graph, "load_snapshot", "graph: load snapshot"),
            (Graph, "flush", "graph: flush to LMDB"),
            (bpf_mod.Capture, "start", "capture.start (total)"),
            (Daemon, "setup", "Daemon.setup (total)"),
        ]:
            st.enter_context(patched(obj, attr, timers, label))
        d = Daemon(cfg, paths)
        try:
            d.setup()
        except SpyderError as exc:  # e.g. the only enabled probe fails: report, go on
            timers.calls["error: " + str(exc).splitlines()[0][:150]] = 1
            return dict(timers.total), dict(timers.calls)
    d.shutdown()
    return dict(timers.total), dict(timers.calls)


def per_probe(config: Path) -> dict[str, dict[str, float]]:
    """Phases with only one probe enabled, for each registered probe."""
    import yaml

    from spyderd.capture.registry import probes

    names = [p.name for p in probes()]
    out = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
            cfg = yaml.safe_load(config.read_text())
            cfg.setdefault("capture", {})["disable"] = [n for n in names if n != name]
            one = Path(tmp) / "spyderd.yaml"
            one.write_text(yaml.safe_dump(cfg))
            total, calls = phases(Path(tmp), one)
        out[name] = {"compile_s": round(total.get("bcc: clang compile to BPF", 0.0), 3),
                     "compiles": calls.get("bcc: clang compile to BPF", 0),
                     "verify_s": round(total.get("bcc: program load (verifier)", 0.0), 3),
                     "programs": calls.get("bcc: program load (verifier)", 0),
                     "setup_s": round(total.get("Daemon.setup (total)", 0.0), 3),
                     "error": next((k[7:] for k in calls if k.startswith("error: ")), "")}
    return out


# ---------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--config", type=Path, default=REPO / "packaging/spyderd.yaml",
                    help="spyderd config (default: the shipped one); e.g. with capture.disable")
    ap.add_argument("--no-phases", action="store_true")
    ap.add_argument("--per-probe", action="store_true", help="phases with one probe at a time")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_startup: needs root (BPF)", file=sys.stderr)
        return 2
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
            runs.append(time_to_ready(Path(tmp), args.config))
    ready = [r["ready_s"] for r in runs]
    warm = ready[1:] or ready
    out: dict[str, Any] = {
        "config": str(args.config), "runs": len(runs), "ready_first_s": round(ready[0], 3),
        "ready_median_s": round(statistics.median(warm), 3),
        "ready_min_s": round(min(warm), 3), "ready_max_s": round(max(warm), 3),
        "stop_median_s": round(statistics.median(r["stop_s"] for r in runs), 3),
        "exit_codes": sorted({r["exit_code"] for r in runs}),
        "target_s": TARGET_S,
    }
    if not args.no_phases:
        with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
            total, calls = phases(Path(tmp), args.config)
        out["phases_s"] = {k: round(v, 3) for k, v in total.items()}
        out["phase_calls"] = calls
    if args.per_probe:
        out["per_probe"] = per_probe(args.config)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"start -> READY=1 over {out['runs']} runs (fresh state each, NOTIFY_SOCKET):")
    print(f"  first run      {out['ready_first_s']:7.3f} s")
    print(f"  median (warm)  {out['ready_median_s']:7.3f} s   min {out['ready_min_s']:.3f}"
          f"  max {out['ready_max_s']:.3f}   target {TARGET_S:.1f} s: "
          f"{'met' if out['ready_median_s'] <= TARGET_S else 'MISSED'}")
    print(f"  SIGTERM -> exit {out['stop_median_s']:6.3f} s median, exit codes "
          f"{out['exit_codes']}")
    if "phases_s" in out:
        print("where the time goes (one in-process Daemon.setup()):")
        for k, v in out["phases_s"].items():
            n = out["phase_calls"].get(k)
            print(f"  {k:40s} {v:7.3f} s" + (f"  ({n} calls)" if n and n > 1 else ""))
    if "per_probe" in out:
        print("one probe at a time (Daemon.setup() in this process):")
        print(f"  {'probe':10s} {'clang':>9s} {'verifier':>9s} {'programs':>9s} {'setup':>9s}")
        for name, r in out["per_probe"].items():
            print(f"  {name:10s} {r['compile_s']:8.2f}s {r['verify_s']:8.2f}s "
                  f"{r['programs']:9d} {r['setup_s']:8.2f}s"
                  + (f"  ({r['compiles']} compiles)" if r["compiles"] > 1 else "")
                  + (f"  FAILED: {r['error'][:70]}" if r["error"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Startup time and memory: from starting spyderd to READY=1 (the moment `systemctl start`
returns), and its RSS, with each probe loader side by side.

    python bench/bench_startup.py [--runs N] [--loaders libbpf,bcc] [--config PATH]
                                  [--no-storm] [--no-procs] [--no-phases] [--per-probe] [--json]

1. End to end, as systemd sees it: spyderd runs with NOTIFY_SOCKET pointing at a datagram
   socket of ours (what systemd does for Type=notify), on fresh state and runtime
   directories, with the shipped config and rule pack and `capture.loader` set to each
   loader in turn; the time from fork to READY=1 is measured `--runs` times (median, min,
   max; the first run, with colder caches, is shown separately), RSS is read 3 s after
   READY=1 (idle), then SIGTERM and the time to a clean exit.
2. The same under an exec storm (posix_spawn of /bin/true in a loop in another process,
   bench_storms.py's exec storm) unless --no-storm, and RSS with 10,000 extra live
   processes in the /proc snapshot (sleeping children of this benchmark) unless --no-procs.
3. Where the time goes: `Daemon.setup()` once in this process with timers around each
   phase: imports, rules, store, BTF, object load (libbpf: CO-RE relocation + verifier;
   bcc: clang compile, then the verifier), attach, probe self-test, /proc snapshot, flush.
4. `--per-probe`: the same phases with one probe enabled at a time.

The libbpf loader loads objects compiled at build time (`make probes`); bcc compiles the
probes from C at every start. Needs root and the kernel.
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
TARGET_STORM_S = 4.0
TARGET_RSS_MB = 100
TRUE = "/bin/true"


# ---------------------------------------------------------------- end to end


def loader_config(workdir: Path, config: Path, loader: str) -> Path:
    """`config` with capture.loader set."""
    import yaml

    cfg = yaml.safe_load(config.read_text())
    cfg.setdefault("capture", {})["loader"] = loader
    path = workdir / f"spyderd-{loader}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def time_to_ready(workdir: Path, config: Path, timeout: float = 400,
                  settle: float = 3.0) -> dict[str, float]:
    """One spyderd start under a notify socket: seconds to READY=1 and to a clean exit,
    RSS `settle` seconds after READY=1."""
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
        time.sleep(settle if ready else 0)
        rss = rss_mb(proc.pid) if proc.poll() is None else 0.0
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
    return {"ready_s": t_ready, "stop_s": t_stop, "exit_code": rc, "rss_mb": rss}


@contextmanager
def exec_storm():
    """posix_spawn(/bin/true) + waitpid in a loop, in a child process, while inside."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the storm
        try:
            while True:
                os.waitpid(os.posix_spawn(TRUE, [TRUE], {}), 0)
        finally:
            os._exit(0)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextmanager
def live_processes(n: int):
    """`n` sleeping child processes while inside (killed and reaped by pid afterwards)."""
    pids: list[int] = []
    try:
        for _ in range(n):
            pids.append(os.posix_spawn("/bin/sleep", ["sleep", "3600"], {}))
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)


def runs_of(config: Path, runs: int) -> list[dict[str, float]]:
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
            out.append(time_to_ready(Path(tmp), config))
    return out


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    ready = [r["ready_s"] for r in runs]
    warm = ready[1:] or ready
    return {"runs": len(runs), "ready_first_s": round(ready[0], 3),
            "ready_median_s": round(statistics.median(warm), 3),
            "ready_min_s": round(min(warm), 3), "ready_max_s": round(max(warm), 3),
            "stop_median_s": round(statistics.median(r["stop_s"] for r in runs), 3),
            "rss_median_mb": round(statistics.median(r["rss_mb"] for r in runs), 1),
            "exit_codes": sorted({r["exit_code"] for r in runs})}


def end_to_end(config: Path, loader: str, runs: int, storm: bool, procs: int
               ) -> dict[str, Any]:
    """Idle, under an exec storm, and with `procs` live processes, for one loader."""
    with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
        cfg = loader_config(Path(tmp), config, loader)
        out: dict[str, Any] = {"idle": summary(runs_of(cfg, runs))}
        if storm:
            with exec_storm():
                out["storm"] = summary(runs_of(cfg, runs))
        if procs:
            with live_processes(procs):
                out[f"procs_{procs}"] = summary(runs_of(cfg, 1))
    return out


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


def loader_phases(loader: str) -> list[tuple[Any, str, str]]:
    """What to time inside the loader in use."""
    if loader == "bcc":
        import bcc  # only for the bcc pass: it maps libclang/LLVM into this process
        from bcc import libbcc

        return [(libbcc.lib, "bpf_module_create_c_from_string", "bcc: clang compile to BPF"),
                (bcc.BPF, "load_func", "bcc: program load (verifier)"),
                (bcc.BPF, "attach_tracepoint", "bcc: attach tracepoints"),
                (bcc.BPF, "attach_raw_tracepoint", "bcc: attach tracepoints")]
    from spyderd.capture.libbpf import BpfObject

    return [(BpfObject, "load", "libbpf: load (CO-RE relocation + verifier)"),
            (BpfObject, "attach", "libbpf: attach")]


def phases(workdir: Path, config: Path, loader: str = "libbpf"
           ) -> tuple[dict[str, float], dict[str, int]]:
    """Run Daemon.setup() in this process with timers around each phase; then shut down."""
    timers = Timers()
    t0 = time.perf_counter()
    config = loader_config(workdir, config, loader)
    timed = loader_phases(loader)

    import spyderd.capture.btf as btf_mod
    import spyderd.capture.snapshot as snap_mod
    import spyderd.rules as rules_mod
    from spyderd.capture import loader as bpf_mod
    from spyderd.common.config import load_config
    from spyderd.daemon.wiring import Daemon, resolve_paths
    from spyderd.errors import SpyderError
    from spyderd.graph import Graph, Store
    timers.total[f"imports (spyderd, {loader})"] = time.perf_counter() - t0

    cfg = load_config(str(config))
    paths = resolve_paths(cfg, str(workdir / "state"), str(workdir / "run"), [str(REPO / "rules")])
    with ExitStack() as st:
        for obj, attr, label in [
            (rules_mod, "load_rules", "rules: load + compile"),
            (Store, "__init__", "store: open LMDB"),
            (btf_mod.BTF, "load", "BTF: parse /sys/kernel/btf/vmlinux"),
            *timed,
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
    """bcc's phases with only one probe enabled, for each registered probe."""
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
            total, calls = phases(Path(tmp), one, "bcc")
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
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loaders", default="libbpf,bcc", help="comma-separated, in this order")
    ap.add_argument("--config", type=Path, default=REPO / "packaging/spyderd.yaml",
                    help="spyderd config (default: the shipped one); e.g. with capture.disable")
    ap.add_argument("--no-storm", action="store_true", help="skip the runs under exec storm")
    ap.add_argument("--procs", type=int, default=10000,
                    help="extra live processes for the RSS run (0: skip)")
    ap.add_argument("--no-phases", action="store_true")
    ap.add_argument("--per-probe", action="store_true", help="bcc phases, one probe at a time")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_startup: needs root (BPF)", file=sys.stderr)
        return 2
    loaders = [x for x in args.loaders.split(",") if x]
    out: dict[str, Any] = {"config": str(args.config), "targets": {
        "ready_idle_s": TARGET_S, "ready_storm_s": TARGET_STORM_S, "rss_idle_mb": TARGET_RSS_MB}}
    for loader in loaders:
        out[loader] = end_to_end(args.config, loader, args.runs, not args.no_storm, args.procs)
    if not args.no_phases:
        for loader in loaders:
            with tempfile.TemporaryDirectory(prefix="spyderd-bench-") as tmp:
                total, calls = phases(Path(tmp), args.config, loader)
            out[loader]["phases_s"] = {k: round(v, 3) for k, v in total.items()}
            out[loader]["phase_calls"] = calls
    if args.per_probe:
        out["per_probe"] = per_probe(args.config)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    report(out, loaders)
    return 0


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def report(out: dict[str, Any], loaders: list[str]) -> None:
    """Loaders side by side, then where the time goes."""
    print("start -> READY=1 (fresh state each run, NOTIFY_SOCKET); RSS 3 s after READY=1")
    print(f"  {'':28s}" + "".join(f"{name:>22s}" for name in loaders))
    rows = [("idle: median (warm)", "idle", "ready_median_s", "s"),
            ("idle: first run", "idle", "ready_first_s", "s"),
            ("idle: min / max", "idle", None, "s"),
            ("exec storm: median", "storm", "ready_median_s", "s"),
            ("RSS idle", "idle", "rss_median_mb", "MB"),
            ("SIGTERM -> exit", "idle", "stop_median_s", "s")]
    procs = next((k for k in out[loaders[0]] if k.startswith("procs_")), None)
    if procs:
        rows.append((f"RSS, {procs[6:]} live processes", procs, "rss_median_mb", "MB"))
        rows.append((f"READY, {procs[6:]} live processes", procs, "ready_median_s", "s"))
    for label, part, key, unit in rows:
        cells = []
        for name in loaders:
            r = out[name].get(part)
            if r is None:
                cells.append("-")
            elif key is None:
                cells.append(f"{r['ready_min_s']:.2f} / {r['ready_max_s']:.2f} {unit}")
            else:
                cells.append(f"{r[key]:.2f} {unit}" if unit == "s" else f"{r[key]:.0f} {unit}")
        print(f"  {label:28s}" + "".join(f"{c:>22s}" for c in cells))
    first = out[loaders[0]]
    t = out["targets"]
    print(f"  targets ({loaders[0]}): idle {t['ready_idle_s']} s "
          f"{_verdict(first['idle']['ready_median_s'], t['ready_idle_s'])}"
          + (f", storm {t['ready_storm_s']} s "
             f"{_verdict(first['storm']['ready_median_s'], t['ready_storm_s'])}"
             if "storm" in first else "")
          + f", RSS {t['rss_idle_mb']} MB "
          f"{_verdict(first['idle']['rss_median_mb'], t['rss_idle_mb'])}")
    for name in loaders:
        if "phases_s" not in out[name]:
            continue
        print(f"where the time goes, {name} (one in-process Daemon.setup()):")
        for k, v in out[name]["phases_s"].items():
            n = out[name]["phase_calls"].get(k)
            print(f"  {k:44s} {v:7.3f} s" + (f"  ({n} calls)" if n and n > 1 else ""))
    if "per_probe" in out:
        print("one probe at a time (Daemon.setup() in this process):")
        print(f"  {'probe':10s} {'clang':>9s} {'verifier':>9s} {'programs':>9s} {'setup':>9s}")
        for name, r in out["per_probe"].items():
            print(f"  {name:10s} {r['compile_s']:8.2f}s {r['verify_s']:8.2f}s "
                  f"{r['programs']:9d} {r['setup_s']:8.2f}s"
                  + (f"  ({r['compiles']} compiles)" if r["compiles"] > 1 else "")
                  + (f"  FAILED: {r['error'][:70]}" if r["error"] else ""))


if __name__ == "__main__":
    sys.exit(main())

"""Storm benchmark: the cost of tracing for exec, loopback connect and open storms, with
spyderd and with auditd, side by side in one run.

    PYTHONPATH=. python bench/bench_storms.py [--scale 1.0] [--rounds 3] [--repeat 2]
        [--no-auditd] [--bcc] [--capture-only] [--json FILE]

Each storm runs in a worker process of its own (timed inside the worker, start-up
excluded) in these modes, in this order: no tracing, spyderd (started here on temporary
directories with the shipped config and rule pack), optionally spyderd on the bcc loader
and spyderd's probes alone, auditd (started here with `-b 8192`, its own config directory
and log, and rules equivalent to what spyderd records: execve, connect, writes under /etc;
nothing for the unwatched reads). `--rounds N` repeats that pass N times (a fresh daemon
each round), then runs the storms without tracing once more, so the modes alternate and a
change of load on a shared machine hits all of them. Each figure is the fastest of all its
runs (the run least disturbed by anything else on the machine); the load average is
printed per round. For spyderd it reports events lost (ring
buffer losses and decode errors, from `spyderctl status -o json`) and spyderd's CPU seconds
per 10,000 events (utime+stime from /proc/PID/stat, measured until the daemon has drained
the storm). For auditd it reports the kernel's `lost` counter (`auditctl -s`).

Storms (sizes scale with --scale):
- exec: N x posix_spawn(/bin/true) + waitpid (clone(CLONE_VM|CLONE_VFORK) + execve);
- connect: N loopback TCP connects to a listener whose accept loop runs in another process;
- open /etc (watched): N x open(O_WRONLY|O_CREAT|O_TRUNC)+close over 64 files in a
  directory under /etc (removed afterwards);
- open unwatched: N x open(O_RDONLY)+close over 64 files in a temporary directory.

auditd and every process this starts are stopped by pid at the end (`auditctl -D` clears
the rules, the audit enable flag is put back). Needs root and the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRUE = shutil.which("true") or "/bin/true"
ETC_DIR = Path("/etc/spyderd-bench")
SIZES = {"exec": 3000, "connect": 10000, "open_etc": 50000, "open_unwatched": 50000}
LABELS = {"exec": "exec storm (fork+exec)", "connect": "loopback connect storm",
          "open_etc": "open-for-write under /etc", "open_unwatched": "unwatched reads"}


# ---------------------------------------------------------------- storms (worker side)


def storm_exec(n: int, _arg: str) -> float:
    t = time.perf_counter()
    for _ in range(n):
        os.waitpid(os.posix_spawn(TRUE, [TRUE], {}), 0)
    return time.perf_counter() - t


def storm_connect(n: int, _arg: str) -> float:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    addr = srv.getsockname()
    acceptor = os.fork()
    if acceptor == 0:  # pragma: no cover - the accept loop
        try:
            while True:
                try:
                    c, _ = srv.accept()
                    c.close()
                except OSError:  # a connection reset before accept: keep accepting
                    continue
        finally:
            os._exit(0)
    srv.close()
    try:
        t = time.perf_counter()
        for _ in range(n):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST
            c.connect(addr)
            c.close()
        return time.perf_counter() - t
    finally:
        os.kill(acceptor, signal.SIGKILL)
        os.waitpid(acceptor, 0)


def storm_open(n: int, arg: str) -> float:
    directory, mode = arg.rsplit(":", 1)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC if mode == "w" else os.O_RDONLY
    paths = [f"{directory}/f{i}" for i in range(64)]
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(paths[i & 63], flags, 0o644))
    return time.perf_counter() - t


WORKERS = {"exec": storm_exec, "connect": storm_connect, "open": storm_open}


def run_storm(kind: str, n: int, arg: str = "") -> float:
    """Seconds the storm loop took, measured inside a fresh worker process."""
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(n), arg],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return float(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- tracers


@dataclass
class Spyderd:
    base: Path
    proc: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)
    loader: str = ""  # capture.loader ("" = the shipped config's)

    def start(self) -> None:
        import yaml

        cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
        if self.loader:
            cfg["capture"]["loader"] = self.loader
        cfg_path = self.base / "spyderd.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        self.env = dict(os.environ, PYTHONPATH=str(REPO),
                        SPYDERD_STATE_DIR=str(self.base / "state"),
                        SPYDERD_RUNTIME_DIR=str(self.base / "run"))
        log = open(self.base / "spyderd.log", "w")  # noqa: SIM115 - lives as long as spyderd
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spyderd", "--config", str(cfg_path), "--rules",
             str(REPO / "rules")], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        r = self.ctl("status", "--wait", "300", timeout=330)
        if r.returncode != 0:
            raise SystemExit("spyderd did not start:\n" + (self.base / "spyderd.log").read_text())

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spyderd.ctl", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def status(self) -> dict:
        return json.loads(self.ctl("status", "-o", "json").stdout)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counts(self) -> tuple[int, dict[str, int]]:
        """(events handled, losses per kind: ring, backlog, skipped runs, decode errors)."""
        st = self.status()
        lost = dict(st.get("lost") or {})
        for k, v in (st.get("decode_errors") or {}).items():
            lost[f"decode {k}"] = v
        return int(st.get("events", 0)), lost

    def drained(self, quiet_s: float = 2.0, background: int = 300,
                timeout: float = 120) -> tuple[int, dict[str, int]]:
        """Wait until the daemon caught up: its event count grows by at most `background`
        events per half second (other activity on a shared machine) for `quiet_s`."""
        deadline = time.monotonic() + timeout
        last, since = self.counts(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.counts()
            if now[0] - last[0] > background:
                since = time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return now
            last = now
        return last

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class CaptureOnly:
    """spyderd's probes and decoders alone (no graph, store or rules): what the kernel side
    and the decoding cost, apart from the daemon's processing of each event."""

    base: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        ready = self.base / "capture.ready"
        self.proc = subprocess.Popen([sys.executable, __file__, "--capture-worker", str(ready)],
                                     env=dict(os.environ, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + 300
        while not ready.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("capture-only worker did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def capture_worker(ready: str) -> int:
    """Run the probes with the shipped capture settings; decode and drop every event."""
    from spyderd.capture.loader import Capture
    from spyderd.common.config import load_config

    shipped = load_config(str(REPO / "packaging/spyderd.yaml")).capture
    cap = Capture(shipped, ignore_tgid=os.getpid())
    cap.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Path(ready).write_text("1")
    n = 0
    cpu0 = time.process_time()
    while not stop:
        n += len(cap.poll(100))
    cpu = time.process_time() - cpu0
    lost = {**cap.lost(), **{f"decode {k}": v for k, v in cap.decode_errors.items()}}
    print(f"    probes and decoders only: {n} events decoded, lost {lost or 0}, "
          f"{cpu:.2f} s CPU after start-up ({cpu / max(n, 1) * 1e4:.3f} s per 10k events)",
          flush=True)
    cap.close()
    return 0


AUDIT_RULES = [
    ["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", "exec"],
    ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-k", "connect"],
    ["-w", "/etc", "-p", "wa", "-k", "etc"],
]


def auditctl(*args: str) -> str:
    return subprocess.run(["auditctl", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout


def audit_status() -> dict[str, str]:
    return dict(line.split(" ", 1) for line in auditctl("-s").splitlines() if " " in line)


@dataclass
class Auditd:
    base: Path
    proc: subprocess.Popen | None = None
    enabled_before: str = "0"

    def start(self) -> None:
        st = audit_status()
        if st.get("pid", "0") != "0":
            raise RuntimeError(f"an audit daemon already runs (pid {st['pid']})")
        self.enabled_before = st.get("enabled", "0")
        conf = self.base / "audit"
        conf.mkdir(mode=0o750)
        text = Path("/etc/audit/auditd.conf").read_text().splitlines()
        text = [ln for ln in text if not ln.startswith(("log_file", "plugin_dir"))]
        text += [f"log_file = {self.base / 'audit.log'}", f"plugin_dir = {conf / 'plugins'}"]
        (conf / "plugins").mkdir()
        (conf / "auditd.conf").write_text("\n".join(text) + "\n")
        os.chmod(conf / "auditd.conf", 0o640)
        self.proc = subprocess.Popen(["auditd", "-n", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while audit_status().get("pid", "0") != str(self.proc.pid):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("auditd did not register with the kernel")
            time.sleep(0.1)
        auditctl("-D")
        auditctl("-b", "8192")
        for rule in AUDIT_RULES:
            auditctl(*rule)
        auditctl("-e", "1")

    def lost(self) -> int:
        return int(audit_status().get("lost", "0"))

    def stop(self) -> None:
        try:
            auditctl("-D")
            auditctl("-e", self.enabled_before)
        finally:
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


# ---------------------------------------------------------------- driver


def storm_args(unwatched: Path) -> dict[str, tuple[str, str]]:
    return {"exec": ("exec", ""), "connect": ("connect", ""),
            "open_etc": ("open", f"{ETC_DIR}:w"), "open_unwatched": ("open", f"{unwatched}:r")}


def measure(sizes: dict[str, int], repeat: int, unwatched: Path,
            on_storm=None) -> dict[str, float]:
    """Fastest run per storm (the least disturbed by other work on a shared machine);
    `on_storm(name)` brackets each storm's repeats."""
    out = {}
    for name, (kind, arg) in storm_args(unwatched).items():
        ctx = on_storm(name) if on_storm else None
        if ctx:
            ctx.__enter__()
        times = [run_storm(kind, sizes[name], arg) for _ in range(repeat)]
        if ctx:
            ctx.__exit__(None, None, None)
        out[name] = min(times)
        print(f"    {name:15} {out[name]:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times)})",
              flush=True)
    return out


class SpyderdWindow:
    """Counts spyderd's events, losses and CPU over one storm's repeats."""

    def __init__(self, d: Spyderd, results: dict, name: str) -> None:
        self.d, self.results, self.name = d, results, name

    def __enter__(self):
        self.ev0, self.lost0 = self.d.drained()
        self.cpu0 = self.d.cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        ev1, lost1 = self.d.drained()
        cpu = self.d.cpu_s() - self.cpu0
        events = ev1 - self.ev0
        lost = {k: v - self.lost0.get(k, 0) for k, v in lost1.items()
                if v > self.lost0.get(k, 0)}
        self.results[self.name] = {"events": events, "lost": sum(lost.values()),
                                   "lost_kinds": lost,
                                   "cpu_s": round(cpu, 3),
                                   "cpu_per_10k": round(cpu / events * 1e4, 3) if events else None}


class AuditWindow:
    def __init__(self, a: Auditd, results: dict, name: str) -> None:
        self.a, self.results, self.name = a, results, name

    def __enter__(self):
        self.lost0 = self.a.lost()
        return self

    def __exit__(self, *exc) -> None:
        self.results[self.name] = {"lost": self.a.lost() - self.lost0}


def prepare(unwatched: Path) -> None:
    ETC_DIR.mkdir(exist_ok=True)
    for i in range(64):
        (unwatched / f"f{i}").write_text("x")
        (ETC_DIR / f"f{i}").write_text("x")


def report(sizes, base, spy, spy_extra, aud, aud_extra) -> dict:
    rows = {}
    print("\n| storm | size | no tracing | spyderd | ratio | lost | spyderd CPU per 10k events "
          "| auditd | ratio | auditd lost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in sizes:
        b = base[name]
        s = spy.get(name)
        a = aud.get(name)
        se = spy_extra.get(name, {})
        row = {"size": sizes[name], "baseline_s": round(b, 4),
               "spyderd_s": round(s, 4) if s else None,
               "spyderd_ratio": round(s / b, 3) if s else None,
               "spyderd_lost": se.get("lost"), "spyderd_lost_kinds": se.get("lost_kinds"),
               "spyderd_events": se.get("events"),
               "spyderd_cpu_per_10k": se.get("cpu_per_10k"),
               "auditd_s": round(a, 4) if a else None,
               "auditd_ratio": round(a / b, 3) if a else None,
               "auditd_lost": aud_extra.get(name, {}).get("lost")}
        rows[name] = row

        def fmt(v, unit=""):
            return "-" if v is None else f"{v}{unit}"

        print(f"| {LABELS[name]} | {sizes[name]} | {b:.3f} s | {fmt(row['spyderd_s'], ' s')} "
              f"| {fmt(row['spyderd_ratio'], 'x')} | {fmt(row['spyderd_lost'])} | "
              f"{fmt(row['spyderd_cpu_per_10k'], ' s')} ({fmt(se.get('events'))} events) | "
              f"{fmt(row['auditd_s'], ' s')} | {fmt(row['auditd_ratio'], 'x')} | "
              f"{fmt(row['auditd_lost'])} |")
    for name in sizes:
        kinds = spy_extra.get(name, {}).get("lost_kinds")
        if kinds:
            print(f"spyderd losses during {LABELS[name]}: {kinds}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every storm size")
    ap.add_argument("--repeat", type=int, default=5, help="runs per storm and mode per round")
    ap.add_argument("--rounds", type=int, default=1,
                    help="passes over all modes, alternating (no tracing, spyderd, ..., "
                         "auditd; no tracing again at the end)")
    ap.add_argument("--no-auditd", action="store_true")
    ap.add_argument("--no-spyderd", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--bcc", action="store_true",
                    help="also run the storms with spyderd on the bcc loader (side by side)")
    ap.add_argument("--capture-only", action="store_true",
                    help="also run the storms with spyderd's probes and decoders alone")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--capture-worker", metavar="READY_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.capture_worker:
        return capture_worker(args.capture_worker)
    if args.worker:
        kind, n, arg = args.worker[0], int(args.worker[1]), (args.worker[2:] or [""])[0]
        print(WORKERS[kind](n, arg))
        return 0
    if os.geteuid() != 0:
        raise SystemExit("bench_storms needs root")
    sizes = {k: max(1, int(v * args.scale)) for k, v in SIZES.items()}
    with tempfile.TemporaryDirectory(prefix="spyder-storms-") as tmp:
        base_dir = Path(tmp)
        unwatched = base_dir / "unwatched"
        unwatched.mkdir()
        prepare(unwatched)
        try:
            return run(args, sizes, base_dir, unwatched)
        finally:
            shutil.rmtree(ETC_DIR, ignore_errors=True)


def other_tracers() -> list[str]:
    """Other spyderd daemons (their probes slow every storm, the baseline too)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"spyderd" in argv and b"-m" in argv:
            found.append(f"spyderd[{proc.name}]")
    return found


def run_spyderd(args, sizes, base: Path, unwatched: Path, loader: str
                ) -> tuple[dict[str, float], dict]:
    """The storms with one spyderd (probes loaded by `loader`) running."""
    extra: dict = {}
    d = Spyderd(base, loader=loader)
    d.base.mkdir()
    t = time.monotonic()
    d.start()
    st = d.status()
    print(f"  spyderd (pid {d.proc.pid}, {st.get('loader', {}).get('name', '?')} loader, "
          f"ready in {time.monotonic() - t:.1f} s):", flush=True)
    try:
        out = measure(sizes, args.repeat, unwatched, lambda name: SpyderdWindow(d, extra, name))
        probes = {k: v.get("text", v.get("state")) for k, v in d.status()["probes"].items()}
    finally:
        d.stop()
    print(f"    probes: {probes}", flush=True)
    return out, extra


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def one_round(args, sizes, base: Path, unwatched: Path,
              runs: dict[str, list[tuple[dict[str, float], dict]]]) -> None:
    """One pass over every mode (no tracing, spyderd, bcc, probes only, auditd): rounds
    alternate the modes, so a change of load hits each of them alike."""
    base.mkdir()
    print("  no tracing:", flush=True)
    runs.setdefault("base", []).append((measure(sizes, args.repeat, unwatched), {}))
    if not args.no_spyderd:
        runs.setdefault("spyderd", []).append(
            run_spyderd(args, sizes, base / "spyderd", unwatched, ""))
    if args.bcc:
        runs.setdefault("bcc", []).append(
            run_spyderd(args, sizes, base / "spyderd-bcc", unwatched, "bcc"))
    if args.capture_only:
        c = CaptureOnly(base)
        c.start()
        print("  probes and decoders only (no graph, store, rules):", flush=True)
        try:
            runs.setdefault("capture", []).append((measure(sizes, args.repeat, unwatched), {}))
        finally:
            c.stop()
    if not args.no_auditd:
        a, extra = Auditd(base), {}
        try:
            a.start()
            print(f"  auditd (pid {a.proc.pid}, -b 8192, rules: "
                  f"{'; '.join(' '.join(r) for r in AUDIT_RULES)}):", flush=True)
            runs.setdefault("auditd", []).append((measure(
                sizes, args.repeat, unwatched, lambda name: AuditWindow(a, extra, name)),
                extra))
        except (RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as exc:
            print(f"  auditd skipped: {exc}", flush=True)
        finally:
            a.stop()


def fastest(mode_runs: list[tuple[dict[str, float], dict]]) -> tuple[dict[str, float], dict]:
    """Per storm, the fastest time over the rounds; events, losses and CPU added up."""
    if not mode_runs:
        return {}, {}
    times = {k: min(r[0][k] for r in mode_runs) for k in mode_runs[0][0]}
    extra: dict = {}
    for _, ex in mode_runs:
        for name, w in ex.items():
            tot = extra.setdefault(name, {"events": 0, "lost": 0, "lost_kinds": {},
                                          "cpu_s": 0.0})
            for k in ("events", "lost", "cpu_s"):
                tot[k] += w.get(k) or 0
            for k, v in (w.get("lost_kinds") or {}).items():
                tot["lost_kinds"][k] = tot["lost_kinds"].get(k, 0) + v
    for tot in extra.values():
        tot["cpu_s"] = round(tot["cpu_s"], 3)
        tot["cpu_per_10k"] = (round(tot["cpu_s"] / tot["events"] * 1e4, 3)
                              if tot["events"] else None)
    return times, extra


def run(args, sizes, base_dir: Path, unwatched: Path) -> int:
    print(f"storm sizes: {sizes}, {args.rounds} rounds of {args.repeat} runs each "
          "(fastest counts)", flush=True)
    others = other_tracers()
    if others:
        print(f"WARNING: other tracers run during this benchmark ({', '.join(others)}): "
              "every mode, the baseline included, pays for their probes", flush=True)
    runs: dict[str, list[tuple[dict[str, float], dict]]] = {}
    loads = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}/{args.rounds} (load average {_load()}):", flush=True)
        one_round(args, sizes, base_dir / f"round{rnd}", unwatched, runs)
        loads.append(os.getloadavg()[0])
    print(f"  no tracing again (load average {_load()}):", flush=True)
    runs.setdefault("base", []).append((measure(sizes, args.repeat, unwatched), {}))
    loads.append(os.getloadavg()[0])
    print(f"load average (1 min) over the run: min {min(loads):.1f}, max {max(loads):.1f}",
          flush=True)
    base = fastest(runs["base"])[0]
    spy, spy_extra = fastest(runs.get("spyderd", []))
    bcc, bcc_extra = fastest(runs.get("bcc", []))
    cap = fastest(runs.get("capture", []))[0]
    aud, aud_extra = fastest(runs.get("auditd", []))
    rows = report(sizes, base, spy, spy_extra, aud, aud_extra)
    if bcc:
        print("\n| storm | spyderd, bcc loader | ratio | lost | CPU per 10k events |\n"
              "|---|---|---|---|---|")
        for name in sizes:
            x = bcc_extra.get(name, {})
            rows[name]["bcc_ratio"] = round(bcc[name] / base[name], 3)
            print(f"| {LABELS[name]} | {bcc[name]:.3f} s | {bcc[name] / base[name]:.2f}x | "
                  f"{x.get('lost', '-')} | {x.get('cpu_per_10k') or '-'} |")
    if cap:
        print("\n| storm | probes and decoders only | ratio |\n|---|---|---|")
        for name in sizes:
            rows[name]["capture_only_ratio"] = round(cap[name] / base[name], 3)
            print(f"| {LABELS[name]} | {cap[name]:.3f} s | {cap[name] / base[name]:.3f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

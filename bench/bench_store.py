"""Store benchmark (issue 17): bytes per event and daemon CPU per event on a real workload,
and the synthetic node-heavy stream, for this tree and an older one side by side.

    PYTHONPATH=. python bench/bench_store.py [--old /tmp/old] [--scale 1.0] [--skip-real]

`--old DIR` is a checkout of an earlier spyderd (e.g. `git worktree add /tmp/old 0143685`);
every measurement then runs for both trees in one run. The real workload starts spyderd
(shipped config and rule pack, temporary state directory) and runs, in one worker:
6,000 execs (posix_spawn of /bin/true), 4,000 loopback TCP connections (accepted by a
forked acceptor), 300 write-opens of files under /etc/spyderd-bench-store, and `git status`
in a small repository 200 times. It waits until the daemon has drained, stops it (a final
commit) and prints data.mdb bytes / events received, the pages LMDB uses / events, and the
daemon's CPU seconds per 10,000 events (utime+stime, start-up excluded). The synthetic part
feeds `spyderd.graph.synthetic.stream` through Graph + Store in a child process per tree,
then times 300 cold node lookups (no decoded block cached) with and without the node's
out-edges. `--profile` runs the real workload once more per tree with the daemon under
cProfile (main thread) and prints microseconds per event per stage.
Needs root and the kernel for the real part.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRUE = shutil.which("true") or "/bin/true"
ETC_DIR = Path("/etc/spyderd-bench-store")
SIZES = {"exec": 6000, "connect": 4000, "etc": 300, "git": 200}


# ---------------------------------------------------------------- workload (worker side)


def workload(scale: float, repo_dir: str) -> None:
    """The mixed workload, in this (worker) process."""
    n = {k: max(1, int(v * scale)) for k, v in SIZES.items()}
    for _ in range(n["exec"]):
        os.waitpid(os.posix_spawn(TRUE, [TRUE], {}), 0)
    _connects(n["connect"])
    ETC_DIR.mkdir(exist_ok=True)
    try:
        for i in range(n["etc"]):
            with open(ETC_DIR / f"f{i % 16}.conf", "w") as f:
                f.write(f"value = {i}\n")
            time.sleep(0.002)  # distinct seconds apart enough not to fold every repeat
    finally:
        shutil.rmtree(ETC_DIR, ignore_errors=True)
    for _ in range(n["git"]):
        subprocess.run(["git", "-C", repo_dir, "status", "--short"], check=True,
                       stdout=subprocess.DEVNULL)


def _connects(n: int) -> None:
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
                except OSError:
                    continue
        finally:
            os._exit(0)
    srv.close()
    try:
        for _ in range(n):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            c.connect(addr)
            c.close()
    finally:
        os.kill(acceptor, signal.SIGKILL)
        os.waitpid(acceptor, 0)


def make_git_repo(path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for i in range(50):
        (path / f"file{i}.txt").write_text(f"{i}\n" * 20)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=b", "-c", "user.email=b@b",
                    "commit", "-qm", "init"], check=True)


# ---------------------------------------------------------------- daemon side


class Daemon:
    """spyderd from one source tree on temporary directories."""

    def __init__(self, tree: Path, base: Path, profile: Path | None = None) -> None:
        self.tree, self.base, self.profile = tree, base, profile
        self.env = dict(os.environ, PYTHONPATH=str(tree),
                        SPYDERD_STATE_DIR=str(base / "state"),
                        SPYDERD_RUNTIME_DIR=str(base / "run"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import yaml

        cfg = yaml.safe_load((self.tree / "packaging/spyderd.yaml").read_text())
        watch = cfg.setdefault("capture", {}).setdefault("watch_paths", None)
        if isinstance(watch, list) and "/etc" not in watch:
            watch.append("/etc")
        cfg_path = self.base / "spyderd.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        log = open(self.base / "spyderd.log", "w")  # noqa: SIM115 - lives as long as spyderd
        prof = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prof, "-m", "spyderd", "--config", str(cfg_path), "--rules",
             str(self.tree / "rules")], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=str(self.tree))
        r = self.ctl("status", "--wait", "400", timeout=430)
        if r.returncode != 0:
            raise SystemExit("spyderd did not start:\n" + (self.base / "spyderd.log").read_text())

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spyderd.ctl", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=str(self.tree))

    def events(self) -> int:
        out = self.ctl("status", "-o", "json").stdout
        return int(json.loads(out).get("events", 0)) if out.strip() else 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def drain(self, quiet_s: float = 3.0, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        last, since = self.events(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.events()
            if now - last > 200:
                since = time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return now
            last = now
        return last

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def used_bytes(tree: Path, state: Path) -> int:
    """Pages the store uses (LMDB's last page), read with that tree's own Store."""
    code = ("import sys,json; from spyderd.graph import Store; "
            "s = Store(sys.argv[1], readonly=True); print(json.dumps(s.stats()))")
    out = subprocess.run([sys.executable, "-c", code, str(state)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(tree)), check=True,
                         cwd=str(tree))
    return int(json.loads(out.stdout)["used_bytes"])


def real(tree: Path, scale: float, git_repo: Path, profile: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as d:
        base = Path(d)
        dmn = Daemon(tree, base, profile)
        dmn.start()
        try:
            time.sleep(2)
            ev0, cpu0 = dmn.drain(quiet_s=2), dmn.cpu_s()
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--worker", str(scale), str(git_repo)],
                           check=True, timeout=1200)
            wall = time.perf_counter() - t0
            ev1 = dmn.drain()
            cpu1 = dmn.cpu_s()
        finally:
            dmn.stop()
        data = base / "state" / "store" / "data.mdb"
        size = data.stat().st_size
        used = used_bytes(tree, base / "state")
    events = ev1
    return {"events": events, "workload_events": ev1 - ev0, "workload_s": round(wall, 1),
            "data_mdb_bytes": size, "bytes_per_event": round(size / max(events, 1), 1),
            "used_bytes_per_event": round(used / max(events, 1), 1),
            "cpu_s_per_10k": round((cpu1 - cpu0) / max(ev1 - ev0, 1) * 1e4, 3)}


# ---------------------------------------------------------------- daemon profile

# (label, function, file suffix): where each stage of the daemon's path starts
STAGES = (
    ("capture.poll (ring read + decode)", "poll", "capture/loader.py"),
    ("  decode", "_decode", "capture/loader.py"),
    ("loop.handle (graph + rules + findings)", "handle", "daemon/loop.py"),
    ("  graph.apply", "apply", "graph/index.py"),
    ("    enrich (process_attrs)", "process_attrs", "enrich/enricher.py"),
    ("  rules.match", "match", "rules/ruleset.py"),
    ("graph.flush (store commit)", "flush", "graph/index.py"),
    ("  store.write_batch", "write_batch", "graph/store.py"),
    ("    block encode", "encode", "graph/codec.py"),
    ("findings.send_due", "send_due", "daemon/loop.py"),
)


def profile_summary(path: Path, events: int, tree: Path, top: int = 20) -> dict:
    """Microseconds per event under each stage (cumulative) and the functions with the
    most own time, from the daemon's cProfile dump (main thread only)."""
    import pstats

    st = pstats.Stats(str(path))
    cum: dict[str, float] = {}
    for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        for label, name, suffix in STAGES:
            if func == name and fname.endswith(suffix) and fname.startswith(str(tree)):
                cum[label] = cum.get(label, 0.0) + ct
    own = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    short = str(tree) + "/spyderd/"
    return {"events": events,
            "stages_us_per_event": {k: round(cum[k] / events * 1e6, 1)
                                    for k, *_ in STAGES if k in cum},
            "top_own_us_per_event": [[f"{f.replace(short, '')}:{ln}:{fn}",
                                      round(v[2] / events * 1e6, 2)]
                                     for (f, ln, fn), v in own]}


# ---------------------------------------------------------------- synthetic


SYNTH = r"""
import json, random, sys, tempfile, time
from spyderd.graph import Graph, Store
from spyderd.graph.synthetic import roots, stream
n = int(sys.argv[1])
events = list(stream(n, seed=3))
with tempfile.TemporaryDirectory() as d:
    store = Store(d, map_size=1 << 30)
    g = Graph(store, "bench", boot_wall_ns=0)
    g.load_snapshot(roots())
    g.flush()
    c0 = time.process_time()
    for i, ev in enumerate(events):
        g.apply(ev)
        if i % 5000 == 4999:
            g.flush()
    g.flush()
    cpu = time.process_time() - c0
    st = store.stats()
    out = {"events": n, "graph_store_events_per_cpu_s": int(n / cpu),
           "used_bytes_per_event": round(st["used_bytes"] / n, 1),
           "data_mdb_bytes_per_event": round(st["bytes"] / n, 1)}
    ids = random.Random(2).sample([i for i in g.nodes if i.startswith("proc:")], 300)
    for label, edges in (("node", False), ("node+out_edges", True)):
        lat = []
        for nid in ids:  # cold: no decoded block cached (a fresh spyderctl's case)
            store._cache.clear()
            t0 = time.perf_counter()
            assert store.node(nid) is not None
            if edges:
                store.edges(nid, "out")
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        out[f"{label}_cold_ms_p50"] = round(lat[150], 3)
        out[f"{label}_cold_ms_p99"] = round(lat[296], 3)
    print(json.dumps(out))
"""


def synthetic(tree: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", SYNTH, str(n)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tree)), check=True, cwd=str(tree))
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, help="an older spyderd checkout to compare with")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--synthetic", type=int, default=200_000)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="also run the real workload once more per tree with spyderd under "
                         "cProfile and print where its time goes per event")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        workload(float(a.worker[0]), a.worker[1])
        return
    trees = [("this tree", REPO)] + ([("old tree", a.old.resolve())] if a.old else [])
    for label, tree in trees if not a.skip_synthetic else ():
        print(f"synthetic {label:10}:", json.dumps(synthetic(tree, a.synthetic)), flush=True)
    if a.skip_real:
        return
    with tempfile.TemporaryDirectory(prefix="bench-git-") as g:
        make_git_repo(Path(g))
        for label, tree in trees:
            print(f"real      {label:10}:", json.dumps(real(tree, a.scale, Path(g))), flush=True)
        for label, tree in trees if a.profile else ():
            prof = Path(g) / f"profile-{label.replace(' ', '-')}.out"
            r = real(tree, a.scale, Path(g), prof)
            print(f"profile   {label:10}:", json.dumps(profile_summary(
                prof, r["workload_events"], tree)), flush=True)


if __name__ == "__main__":
    main()

"""Open storms against the files probe: write-opens under a watched and an unwatched
directory, and read-only opens, without tracing and with spyderd attached.

    PYTHONPATH=. /opt/spyderd/venv/bin/python bench/storm_open.py [-n 100000] [--repeat 3]

`open_storm(path, n)` is the storm itself (for bench_storms): n x
open(O_WRONLY|O_CREAT|O_TRUNC) + close, rotating over 64 files when `path` is a directory
(repeats: folded in the kernel after the first open of each file per second), or over n
new files with `distinct=True` (every open is a first: path walk, watch lookup, an event
per file when watched).
The CLI starts its own spyderd (temporary state and runtime directories, the shipped
config with the watched directory added to capture.watch_paths, network/creds/kernel
probes disabled so only the file path is measured), times each storm in a fresh worker
process (fastest of --repeat), and prints the slowdown ratio, the file events spyderd
received and the events lost. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def open_storm(path: str, n: int, flags: int = WRITE, distinct: bool = False) -> float:
    """Seconds for n x open(flags)+close of `path` (a file) or of 64 files in it (a dir);
    with `distinct`, of n new files in a new directory under it (removed after)."""
    if distinct:  # a fresh directory each run: ext4 slows down in one that held many files
        fresh = tempfile.mkdtemp(prefix="new-", dir=path)
        paths = [os.path.join(fresh, f"f{i}") for i in range(n)]
    elif os.path.isdir(path):
        paths = [os.path.join(path, f"f{i}") for i in range(64)]
    else:
        paths = [path] * 64
    if not distinct:
        for p in paths:
            if not os.path.exists(p):
                os.close(os.open(p, WRITE, 0o644))
    mask = len(paths) - 1 if not distinct else -1
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(paths[i & mask] if mask >= 0 else paths[i], flags, 0o644))
    took = time.perf_counter() - t
    if distinct:
        for p in paths:
            os.unlink(p)
        os.rmdir(fresh)
    return took


def _worker(path: str, n: int, flags: int, distinct: bool = False) -> float:
    out = subprocess.run([sys.executable, __file__, "--worker", path, str(n), str(flags),
                          str(int(distinct))],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return float(out.split()[-1])


class Daemon:
    """A spyderd on temporary directories whose watch list includes `watched`."""

    def __init__(self, base: Path, watched: Path) -> None:
        import yaml

        cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
        cfg["capture"]["watch_paths"].append(f"{watched}/")
        cfg["capture"]["disable"] = ["network", "creds", "kernel"]
        (base / "spyderd.yaml").write_text(yaml.safe_dump(cfg))
        self.env = dict(os.environ, PYTHONPATH=str(REPO),
                        SPYDERD_STATE_DIR=str(base / "state"),
                        SPYDERD_RUNTIME_DIR=str(base / "run"))
        self.log = open(base / "spyderd.log", "w")  # noqa: SIM115 - lives with the daemon
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spyderd", "--config", str(base / "spyderd.yaml"),
             "--rules", str(REPO / "rules")], env=self.env, stdout=self.log,
            stderr=subprocess.STDOUT)
        if self.ctl("status", "--wait", "300").returncode != 0:
            self.stop()
            raise SystemExit("spyderd did not start:\n" + (base / "spyderd.log").read_text())

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spyderd.ctl", *args], env=self.env,
                              capture_output=True, text=True, timeout=360, check=False)

    def counts(self) -> tuple[int, int]:
        """(file events received, file events lost or undecodable)."""
        st = json.loads(self.ctl("status", "-o", "json").stdout)
        received = st.get("received", {}).get("file", 0)
        lost = st.get("lost", {}).get("file", 0) + st.get("decode_errors", {}).get("file", 0)
        return received, lost

    def drained(self, quiet_s: float = 2.0, timeout: float = 300) -> tuple[int, int]:
        """Counts once the daemon has stopped receiving (it caught up with a storm)."""
        last, since = self.counts(), time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.counts()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return last

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="opens per storm over 64 files")
    ap.add_argument("--new", type=int, default=20_000, help="new files per create storm")
    ap.add_argument("--dir", help="where the storm directories go (default /dev/shm)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(open_storm(args.worker[0], int(args.worker[1]), int(args.worker[2]),
                         bool(int(args.worker[3]))))
        return 0
    base = Path(tempfile.mkdtemp(prefix="spy-storm-open-"))
    # The storm directories live on tmpfs when there is one: on this VM's ext4, creating
    # 20,000 files takes anywhere from 0.5 s to 9 s from one run to the next with nothing
    # traced, which drowns the tracing cost.
    files = Path(tempfile.mkdtemp(prefix="spy-storm-open-",
                                  dir=args.dir or ("/dev/shm" if os.path.isdir("/dev/shm")
                                                   else None)))
    watched, unwatched = files / "watched", files / "unwatched"
    watched.mkdir()
    unwatched.mkdir()
    storms = {"write-open, watched (64 files)": (watched, WRITE, False),
              "write-open, unwatched (64 files)": (unwatched, WRITE, False),
              "read-only open, unwatched": (unwatched, os.O_RDONLY, False),
              "create new files, unwatched": (unwatched, WRITE, True),
              "create new files, watched": (watched, WRITE, True)}
    sizes = {k: args.new if d else args.n for k, (_p, _f, d) in storms.items()}

    def run() -> dict[str, float]:
        return {k: min(_worker(str(p), sizes[k], f, d) for _ in range(args.repeat))
                for k, (p, f, d) in storms.items()}

    try:
        base_t = run()
        d = Daemon(base, watched)
        try:
            spy_t, extra = {}, {}
            for k, (p, f, dd) in storms.items():
                before, cpu0 = d.drained(), d.cpu_s()
                spy_t[k] = min(_worker(str(p), sizes[k], f, dd) for _ in range(args.repeat))
                after = d.drained()
                extra[k] = (after[0] - before[0], after[1] - before[1], d.cpu_s() - cpu0)
        finally:
            d.stop()
        base2 = run()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(files, ignore_errors=True)
    print(f"\nfastest of {args.repeat} runs per storm; baseline = faster of the runs before "
          "and after spyderd; file events and lost over all runs; spyderd CPU over all runs "
          "until it caught up\n")
    print("| storm | opens | no tracing | spyderd | ratio | opens/s with spyderd "
          "| file events | lost | spyderd CPU per 10k events |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in storms:
        b = min(base_t[k], base2[k])
        s = spy_t[k]
        ev, lost, cpu = extra[k]
        per10k = f"{cpu / ev * 1e4:.2f} s" if ev > 100 else "-"
        print(f"| {k} | {sizes[k]:,} | {b:.3f} s | {s:.3f} s | {s / b:.2f}x | "
              f"{sizes[k] / s:,.0f} | {ev} | {lost} | {per10k} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

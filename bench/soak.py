"""Soak: mixed storms for N minutes against one spyderd; RSS and fds must plateau.

    PYTHONPATH=. python bench/soak.py --minutes 30 [--duty 0.5]

Starts spyderd from this source tree on temporary directories (shipped config and rule
pack, plus a watched temporary directory), then runs four storm workers side by side:
exec (posix_spawn of /bin/true), loopback TCP connects to a local listener, writes and
unlinks in the watched directory, and fork+exit. Each worker storms for `duty` of every
second and sleeps the rest (the machine is shared). Once a minute it prints the daemon's
RSS, open fds, store size on disk, events/s over that minute, and losses (ring buffer,
backlog, decode errors). At the end: RSS and fds of the first and last minutes, and whether
they plateaued (anonymous RSS grew less than 10 % and fds less than 5 over the last half). Needs root.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRUE = shutil.which("true") or "/bin/true"


# -- storms (worker processes) ---------------------------------------------------------------

def _duty_loop(duty: float, stop: float, op) -> None:
    while time.time() < stop:
        t_end = time.monotonic() + duty
        while time.monotonic() < t_end:
            op()
        time.sleep(max(0.0, 1.0 - duty))


def storm_exec(duty: float, stop: float, _arg: str) -> None:
    _duty_loop(duty, stop, lambda: os.waitpid(os.posix_spawn(TRUE, [TRUE], {}), 0))


def storm_connect(duty: float, stop: float, port: str) -> None:
    def op() -> None:
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.close()
    _duty_loop(duty, stop, op)


def storm_files(duty: float, stop: float, directory: str) -> None:
    n = [0]

    def op() -> None:
        p = f"{directory}/f{n[0] % 64}"
        n[0] += 1
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        if n[0] % 8 == 0:
            os.unlink(p)
    _duty_loop(duty, stop, op)


def storm_fork(duty: float, stop: float, _arg: str) -> None:
    def op() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    _duty_loop(duty, stop, op)


def _accept_loop(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.close()


# -- the daemon ------------------------------------------------------------------------------

def start_daemon(base: Path, watched: Path) -> tuple[subprocess.Popen, dict]:
    cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
    cfg["capture"]["watch_paths"] = [*cfg["capture"]["watch_paths"], f"{watched}/"]
    cfg["findings"]["suppressions"] = []
    (base / "spyderd.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, SPYDERD_STATE_DIR=str(base / "state"),
               SPYDERD_RUNTIME_DIR=str(base / "run"), PYTHONPATH=str(REPO))
    log = open(base / "spyderd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
    proc = subprocess.Popen([sys.executable, "-m", "spyderd", "--config",
                             str(base / "spyderd.yaml"), "--rules", str(REPO / "rules")],
                            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    r = subprocess.run([sys.executable, "-m", "spyderd.ctl", "status", "--wait", "240"],
                       env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        proc.kill()
        raise SystemExit(f"spyderd did not start:\n{(base / 'spyderd.log').read_text()}")
    return proc, env


def status(env: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "spyderd.ctl", "status", "-o", "json"], env=env,
                       cwd=REPO, capture_output=True, text=True, check=False)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def sample(pid: int, state: Path, env: dict) -> dict:
    """RSS split: anonymous (heap: must plateau) and file-backed (LMDB's map of the store,
    page cache the kernel reclaims; it follows the store's size)."""
    mem = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            mem[key] = int(value.split()[0]) >> 10
    st = status(env)
    lost = sum((st.get("lost") or {}).values()) + sum((st.get("decode_errors") or {}).values())
    data = state / "store" / "data.mdb"
    return {"rss_mb": mem.get("VmRSS", 0), "anon_mb": mem.get("RssAnon", 0),
            "file_mb": mem.get("RssFile", 0), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "age": round(time.time() - st.get("updated", time.time()), 1),
            "store_mb": round(data.stat().st_size / 2**20, 1) if data.exists() else 0,
            "events": st.get("events", 0), "lost": lost, "findings": st.get("findings", 0),
            "nodes": (st.get("memory") or {}).get("graph_nodes", -1),
            "backlog_mb": round((st.get("memory") or {}).get("backlog_bytes", 0) / 2**20, 1)}


def plateau(rows: list[dict]) -> tuple[bool, bool]:
    """Anonymous RSS and fds grew little over the last half of the run."""
    half = rows[len(rows) // 2:]
    rss_ok = half[-1]["anon_mb"] <= half[0]["anon_mb"] * 1.10 + 2
    fds_ok = half[-1]["fds"] <= half[0]["fds"] + 5
    return rss_ok, fds_ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--duty", type=float, default=0.5, help="storm share of every second")
    ap.add_argument("--interval", type=float, default=60, help="seconds between samples")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="spyderd-soak-"))
    watched = base / "watched"
    watched.mkdir()
    proc, env = start_daemon(base, watched)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    acceptor = mp.Process(target=_accept_loop, args=(listener,), daemon=True)
    acceptor.start()
    stop = time.time() + args.minutes * 60
    workers = [mp.Process(target=fn, args=(args.duty, stop, arg), daemon=True)
               for fn, arg in ((storm_exec, ""), (storm_connect, str(port)),
                               (storm_files, str(watched)), (storm_fork, ""))]
    for w in workers:
        w.start()
    rows: list[dict] = []
    print(f"spyderd pid {proc.pid}, state {base / 'state'}, {args.minutes:g} min, "
          f"duty {args.duty:g}", flush=True)
    print(f"{'min':>5} {'RSS MB':>7} {'anon':>5} {'file':>5} {'fds':>4} {'store MB':>9} "
          f"{'events/s':>9} {'lost':>7} {'findings':>8} {'status age s':>12} {'load':>5} "
          f"{'graph nodes':>11} {'backlog MB':>10}",
          flush=True)
    t0 = time.monotonic()
    prev = sample(proc.pid, base / "state", env)
    try:
        while time.time() < stop and proc.poll() is None:
            time.sleep(min(args.interval, max(stop - time.time(), 0.1)))
            cur = sample(proc.pid, base / "state", env)
            cur["eps"] = (cur["events"] - prev["events"]) / args.interval
            rows.append(cur)
            print(f"{(time.monotonic() - t0) / 60:5.1f} {cur['rss_mb']:7d} {cur['anon_mb']:5d} "
                  f"{cur['file_mb']:5d} {cur['fds']:4d} {cur['store_mb']:9.1f} "
                  f"{cur['eps']:9.0f} {cur['lost']:7d} {cur['findings']:8d} "
                  f"{cur['age']:12.1f} {os.getloadavg()[0]:5.1f} {cur['nodes']:11d} "
                  f"{cur['backlog_mb']:10.1f}", flush=True)
            prev = cur
    finally:
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
        acceptor.kill()
        listener.close()
        alive = proc.poll() is None
        if alive:
            proc.terminate()
            proc.wait(60)
        shutil.rmtree(base, ignore_errors=True)
    if not alive:
        print(f"spyderd exited early (rc {proc.returncode})")
        return 1
    if len(rows) >= 2:
        rss_ok, fds_ok = plateau(rows)
        print(f"RSS {rows[0]['rss_mb']} -> {rows[-1]['rss_mb']} MB (max "
              f"{max(r['rss_mb'] for r in rows)}; anonymous {rows[0]['anon_mb']} -> "
              f"{rows[-1]['anon_mb']}, file-backed {rows[0]['file_mb']} -> "
              f"{rows[-1]['file_mb']}), fds {rows[0]['fds']} -> {rows[-1]['fds']}, "
              f"store {rows[-1]['store_mb']} MB, {rows[-1]['events']} events, "
              f"{rows[-1]['lost']} lost; plateau: RSS {'yes' if rss_ok else 'NO'}, "
              f"fds {'yes' if fds_ok else 'NO'}")
        return 0 if rss_ok and fds_ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

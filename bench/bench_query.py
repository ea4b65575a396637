"""History queries on a large store (issue 17): `spyderctl events`/`query` p99 by pid and path.

    PYTHONPATH=. python bench/bench_query.py --build DIR --events 10000000 [--hours 24]
    PYTHONPATH=. python bench/bench_query.py --measure DIR [--lookups 100] [--cli 10]

`--build` writes `spyderd.graph.synthetic.stream` through the real writer (Graph + Store,
a commit every 5,000 events, as the daemon's batches) into DIR/store, with event times
spread so the stream ends now and spans `--hours` (the stream's own spacing is ~20 us per
event; process start times and pids are as generated, pids reused every ~3 s of the
original stream, so a pid names a few dozen processes over the store's life). It prints
progress and the store size.

`--measure` runs, for `--lookups` random pids (`--path-lookups` paths), what `spyderctl events --pid N
--since -1h` and `spyderctl query 'process.name = curl' --pid N --since -1h` do, in this
process, each on a freshly opened read-only store (as a new spyderctl opens it; the page
cache stays warm as it would on a host): the indexed store read, the JSON lines
`events -o json` prints, and for `query` the store-backed rule evaluation with a
predicate compiled once (rule-pack compilation is a fixed cost, printed apart). "-1h" is
counted back from the store's newest event. `--cli N` also times N real `spyderctl`
processes per command (interpreter start and imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spyderd.ctl.query import compile_query, run_query
from spyderd.graph import Graph, Store
from spyderd.graph.store import U64
from spyderd.graph.synthetic import roots, stream

S = 1_000_000_000
US_PER_EVENT = 20_000  # the synthetic stream's mean spacing, ns
QUERY = "process.name = curl"


def build(d: Path, n: int, hours: float) -> None:
    end = time.time_ns()
    scale = hours * 3600 * S / (n * US_PER_EVENT)
    base = 10 * S
    start = end - int(n * US_PER_EVENT * scale)
    store = Store(d, map_size=1 << 34)
    g = Graph(store, "bench", boot_wall_ns=0)
    g.load_snapshot(roots())
    g.flush()
    c0, w0 = time.process_time(), time.perf_counter()
    for i, ev in enumerate(stream(n, seed=3, t0=base)):
        ev.time = ev.ktime = start + int((ev.time - base) * scale)  # made here, before use
        g.apply(ev)
        if i % 5000 == 4999:
            g.flush()
        if i % 500_000 == 499_999:
            print(f"{i + 1:,} events, {time.perf_counter() - w0:.0f} s", flush=True)
    g.flush()
    cpu = time.process_time() - c0
    st = store.stats()
    print(json.dumps({"events": n, "cpu_s": round(cpu, 1),
                      "events_per_cpu_s": int(n / cpu),
                      "data_mdb_bytes": st["bytes"], "used_bytes_per_event":
                      round(st["used_bytes"] / n, 1), "blocks": st["blocks"]}))


def newest_time(store: Store) -> int:
    with store.env.begin() as txn, txn.cursor(db=store.db["btime"]) as cur:
        cur.last()
        return U64.unpack_from(cur.key())[0]


def pct(lat: list[float]) -> dict:
    lat = sorted(lat)
    return {"p50_ms": round(statistics.median(lat), 1),
            "p99_ms": round(lat[max(0, int(len(lat) * 0.99) - 1)], 1),
            "max_ms": round(lat[-1], 1)}


def timed(d: Path, fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    store = Store(d, readonly=True)
    try:
        rows = fn(store)
    finally:
        store.close()
    return (time.perf_counter() - t0) * 1000, rows


def events_json(store: Store, since: int, **filters) -> int:
    return sum(len(json.dumps(ev)) > 0 for ev in store.events(since, None, **filters))


def measure(d: Path, lookups: int, cli: int, path_lookups: int) -> None:
    probe = Store(d, readonly=True)
    end = newest_time(probe)
    st = probe.stats()
    probe.close()
    since = end - 3600 * S
    print(f"store: {st['event_count']:,} events, {st['bytes'] / 2**30:.2f} GiB data.mdb, "
          f"{st['blocks']:,} blocks; window: the last hour before the newest event")
    rng = random.Random(4)
    pids = [rng.randrange(1000, 30000) for _ in range(lookups)]
    paths = [f"/etc/app/conf{rng.randrange(50)}.yaml" for _ in range(lookups)]
    c0 = time.perf_counter()
    pred = compile_query(QUERY, [str(REPO / "rules")])
    compile_ms = (time.perf_counter() - c0) * 1000
    out: dict[str, dict] = {}
    for label, fn in (
        ("events --pid N --since -1h",
         lambda p, _: (lambda s: events_json(s, since, pid=p))),
        (f"query '{QUERY}' --pid N --since -1h",
         lambda p, _: (lambda s: len(list(run_query(s, pred, since, None, None, None,
                                                    {"pid": p}))))),
        ("events --path P --since -1h",
         lambda _, f: (lambda s: events_json(s, since, path=f))),
    ):
        lat, rows = [], []
        n = path_lookups if "--path" in label else lookups
        for p, f in zip(pids[:n], paths[:n]):
            ms, n = timed(d, fn(p, f))
            lat.append(ms)
            rows.append(n)
        out[label] = {**pct(lat), "rows_mean": round(statistics.mean(rows), 1)}
        print(f"{label:55}", json.dumps(out[label]), flush=True)
    print(f"query predicate compiled with the default rule pack once: {compile_ms:.0f} ms")
    if cli:
        run_cli(d, end, pids[:cli], paths[:cli])


def run_cli(d: Path, end: int, pids: list[int], paths: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), SPYDERD_STATE_DIR=str(d))
    since = f"@{(end - 3600 * S) // S}"
    for label, argv in (("events --pid", lambda p, f: ["events", "--pid", str(p), "--since",
                                                       since, "-o", "json"]),
                        ("query --pid", lambda p, f: ["query", QUERY, "--pid", str(p),
                                                      "--since", since, "-o", "json"]),
                        ("events --path", lambda p, f: ["events", "--path", f, "--since",
                                                        since, "-o", "json"])):
        lat = []
        for p, f in zip(pids, paths):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "spyderd.ctl", *argv(p, f)], env=env,
                           stdout=subprocess.DEVNULL, check=True, cwd=str(REPO))
            lat.append((time.perf_counter() - t0) * 1000)
        print(f"spyderctl {label} (whole process, {len(lat)} runs):", json.dumps(pct(lat)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", type=Path)
    ap.add_argument("--measure", type=Path)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--lookups", type=int, default=100)
    ap.add_argument("--cli", type=int, default=10)
    ap.add_argument("--path-lookups", type=int, default=20,
                    help="path lookups (each reads every block of the hour that wrote the path)")
    a = ap.parse_args()
    if a.build:
        build(a.build, a.events, a.hours)
    if a.measure:
        measure(a.measure, a.lookups, a.cli, a.path_lookups)


if __name__ == "__main__":
    main()

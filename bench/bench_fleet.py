"""Fleet benchmark (issue 14): events/s through the exporter, broker bytes per event, and
stitch latency, against a real nats-server on 127.0.0.1 started here.

usage: PYTHONPATH=. python3 bench/bench_fleet.py [--events N] [--pairs N]

1. Graph + store ingest of the synthetic stream without and with the fleet outbox staged in
   each batch (same run, side by side: the cost the exporter adds to the daemon's loop).
2. Publish: the outbox drained to JetStream by the exporter thread (events/s), and the
   stream's bytes per event.
3. Stitch latency: a spyderd-stitch process; two hosts' ends of N connections published
   as a daemon would, timed from the second end's publish to the peer edge in the
   `spyder_peers` bucket (p50/p99). A daemon adds its store.batch_delay (0.5 s by default)
   before its end leaves the host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spyderd.fleet import messages as m
from spyderd.fleet.bus import BusConfig
from spyderd.fleet.exporter import Exporter
from spyderd.fleet.outbox import Outbox
from spyderd.graph import Graph, Store
from spyderd.graph.synthetic import roots, stream


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    proc = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                             str(base / "js")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"nats://127.0.0.1:{port}"


def ingest(n: int, base: Path, with_outbox: bool) -> tuple[dict, Store, Outbox | None]:
    events = list(stream(n, seed=3))
    store = Store(base / ("with" if with_outbox else "without"), map_size=2 << 30)
    g = Graph(store, "bench", boot_wall_ns=0)
    box = Outbox(store, "bench-host", "bench", limit=10_000_000) if with_outbox else None
    g.outbox = box
    g.load_snapshot(roots())
    g.flush()
    c0 = time.process_time()
    for i, ev in enumerate(events):
        g.apply(ev)
        if i % 5000 == 4999:
            g.flush()
    g.flush()
    cpu = time.process_time() - c0
    return {"events_per_cpu_s": int(n / cpu), "cpu_s": round(cpu, 2)}, store, box


def publish(store: Store, box: Outbox, url: str, n: int) -> dict:
    queued = box.status()["queued"]
    ex = Exporter(BusConfig(url=url, name="bench-host"), box, lambda req: {"ok": False})
    t0 = time.perf_counter()
    ex.start()
    while box.status()["queued"]:
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    ex.close()
    stream_bytes = asyncio.run(_stream_bytes(url))
    return {"messages": queued, "events_per_s": int(n / wall), "messages_per_s":
            int(queued / wall), "broker_bytes_per_event": round(stream_bytes / n, 1),
            "publish_errors": ex.stats["publish_errors"]}


async def _stream_bytes(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(m.STREAM)
    await nc.close()
    return info.state.bytes


async def _latency(url: str, pairs: int) -> list[float]:
    import nats

    from spyderd.fleet.bus import ensure_peers

    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await ensure_peers(js)
    out = []
    base = time.time_ns()
    for i in range(pairs):
        tup = m.canonical_tuple("10.9.0.1", 20000 + i, "10.9.0.2", 443)
        a = m.Endpoint("bench-a", f"conn:a:{base}:{i}", "proc:a", "out", tup, base + i)
        b = m.Endpoint("bench-b", f"conn:b:{base}:{i}", "proc:b", "in", tup, base + i)
        shard = m.shard_of(tup)
        await js.publish(m.conn_subject("bench-a", shard), m.encode(a.to_msg()))
        t0 = time.perf_counter()
        await js.publish(m.conn_subject("bench-b", shard), m.encode(b.to_msg()))
        while True:
            try:
                await kv.get(m.peer_key(a.conn_id))
                break
            except Exception:  # noqa: BLE001 - not stitched yet
                await asyncio.sleep(0.001)
        out.append((time.perf_counter() - t0) * 1000)
    await nc.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        broker, url = start_broker(base)
        try:
            plain, s0, _ = ingest(args.events, base, False)
            s0.close()
            staged, store, box = ingest(args.events, base, True)
            print(f"ingest graph+store, no fleet : {plain['events_per_cpu_s']:>9,} events/cpu-s")
            print(f"ingest graph+store+outbox    : {staged['events_per_cpu_s']:>9,} events/cpu-s"
                  f"  (ratio {plain['events_per_cpu_s'] / staged['events_per_cpu_s']:.2f}x"
                  " the CPU)")
            pub = publish(store, box, url, args.events)
            print(f"exporter publish             : {pub['events_per_s']:>9,} events/s "
                  f"({pub['messages']} messages, {pub['messages_per_s']:,} msg/s, "
                  f"errors {pub['publish_errors']})")
            print(f"broker bytes per event       : {pub['broker_bytes_per_event']:>9}")
            store.close()
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
            st = subprocess.Popen([sys.executable, "-m", "spyderd.fleet.stitch", "--url", url,
                                   "--state-dir", ""], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            try:
                time.sleep(2.0)
                lat = asyncio.run(_latency(url, args.pairs))
            finally:
                st.terminate()
                try:
                    st.wait(10)
                except subprocess.TimeoutExpired:
                    st.kill()
                    st.wait()
            lat.sort()
            print(f"stitch latency (2nd end -> peer edge), {len(lat)} pairs: "
                  f"p50 {statistics.median(lat):.1f} ms, "
                  f"p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms")
        finally:
            broker.terminate()
            broker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

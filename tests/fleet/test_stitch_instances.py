"""Two spyderd-stitch instances share the connection shards on durable consumers: every
connection is joined exactly once, each instance joins its own shards, and an instance
that restarts resumes from its consumers without joining anything twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

from conftest import REPO, wait_for
from fleet_support import Broker

from spyderd.fleet import messages as m

PAIRS = 40


def stitcher(base, url: str, i: int) -> tuple[subprocess.Popen, object]:
    status = base / f"stitch-{i}.json"
    proc = subprocess.Popen([sys.executable, "-m", "spyderd.fleet.stitch", "--url", url,
                             "--state-dir", str(base / "central") if i == 0 else "",
                             "--instance", str(i), "--instances", "2", "--status",
                             str(status)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return proc, status


def shard(i: int) -> int:
    return m.shard_of(m.canonical_tuple("10.252.0.1", 30000 + i, "10.252.0.2", 443))


def stats(status) -> dict:
    try:
        return json.loads(status.read_text())
    except (OSError, ValueError):
        return {}


async def publish_pairs(url: str, first: int, count: int) -> set[int]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    shards = set()
    for i in range(first, first + count):
        tup = m.canonical_tuple("10.252.0.1", 30000 + i, "10.252.0.2", 443)
        shards.add(shard(i))
        for host, d in (("host-x", "out"), ("host-y", "in")):
            e = m.Endpoint(host, f"conn:{host}:{i}", f"proc:{host}:{i}", d, tup, 1000 + i)
            await js.publish(m.conn_subject(host, m.shard_of(tup)),
                             m.encode(m.ends_message(host, [e])),
                             headers={"Nats-Msg-Id": f"{host}:b:{i}"})
    await nc.close()
    return shards


def test_two_instances_split_the_shards(tmp_path):
    broker = Broker(tmp_path)
    broker.start()
    procs = []
    try:
        for i in range(2):
            procs.append(stitcher(tmp_path, broker.url, i))
        assert wait_for(lambda: all(s.exists() for _, s in procs), 30)
        shards = asyncio.run(publish_pairs(broker.url, 0, PAIRS))
        assert len({s % 2 for s in shards}) == 2  # both instances have work

        def joined() -> int:
            return sum(stats(s).get("peers", 0) for _, s in procs)

        assert wait_for(lambda: joined() == PAIRS, 30), [stats(s) for _, s in procs]
        assert all(stats(s)["peers"] > 0 for _, s in procs)
        before0 = stats(procs[0][1])["peers"]
        proc1, status1 = procs[1]  # restart instance 1: its durable consumers keep their place
        proc1.send_signal(signal.SIGTERM)
        assert proc1.wait(20) == 0
        status1.unlink()
        procs[1] = stitcher(tmp_path, broker.url, 1)
        assert wait_for(lambda: procs[1][1].exists(), 30)
        asyncio.run(publish_pairs(broker.url, PAIRS, 10))
        odd = sum(1 for i in range(PAIRS, PAIRS + 10) if shard(i) % 2)
        assert wait_for(lambda: stats(procs[1][1]).get("peers") == odd
                        and stats(procs[0][1])["peers"] == before0 + 10 - odd, 30), (
            odd, [stats(s) for _, s in procs])
        assert stats(procs[1][1])["ends"] == 2 * odd  # the old ends were not delivered again
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        broker.stop()

"""Crash safety: writers killed with SIGKILL mid-batch, mid-retention, mid-migration.

Content, not counts: after each kill, every batch the writer reported committed must be in
the store with the same contents as a reference store that the same deterministic stream
produced without a kill; nothing of a batch not committed may be there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lmdb

from spyderd.graph import Store
from spyderd.graph.retention import Policy, check_invariants, prune
from spyderd.graph.store import SCHEMA_VERSION
from tests.graph.crash_writer import BATCH, run_t0, write

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _run_and_kill(state: Path, seed: int, rng: random.Random, *extra: str) -> int:
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_writer.py"), str(state),
                             str(seed), *extra], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    batches = 0
    target = rng.randrange(2, 12)
    while batches < target:
        line = proc.stdout.readline()
        assert line, f"writer died early (rc={proc.poll()})"
        batches += 1
    time.sleep(rng.random() * 0.03)  # land somewhere inside the next batch
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return batches


def test_sigkill_mid_batch_20_times(tmp_path):
    rng = random.Random(7)
    last_events = 0
    for run in range(20):
        committed = _run_and_kill(tmp_path, run, rng)
        store = Store(tmp_path)  # opens (and would migrate) after every crash
        problems = check_invariants(store)
        assert problems == [], f"run {run}: {problems[:5]}"
        stats = store.stats()
        # every batch the writer reported as committed is there (pruning aside)
        assert stats["event_count"] >= last_events + committed * 300, (run, stats)
        last_events = stats["event_count"]
        assert store.node(next(iter(store.nodes_between())).id) is not None
        store.close()


def _run_events(store: Store, seed: int) -> list[dict]:
    return list(store.events(run_t0(seed), run_t0(seed + 1) - 1))


def _same_records(killed: Store, ref: Store, seed: int) -> None:
    """The killed store holds exactly the reference's nodes, edges, findings and traces."""
    for node in ref.nodes_between():
        got = killed.node(node.id)
        assert got is not None, f"run {seed}: node {node.id} missing"
        assert got.to_dict() == node.to_dict(), f"run {seed}: node {node.id} differs"
        for direction in ("out", "in"):
            want = set(ref.edges(node.id, direction))
            have = set(killed.edges(node.id, direction))
            assert want == have, f"run {seed}: {node.id} {direction}: {want ^ have}"
    assert sum(1 for _ in killed.nodes_between()) == sum(1 for _ in ref.nodes_between())
    for f in ref.findings():
        got = killed.finding(f.id)
        assert got is not None and got.to_dict() == f.to_dict(), f"run {seed}: {f.id}"
    assert [f.id for f in killed.findings()] == [f.id for f in ref.findings()]
    assert list(killed.traces()) == list(ref.traces())


def test_sigkill_keeps_every_committed_batch_with_identical_contents(tmp_path):
    rng = random.Random(11)
    for seed in range(8):
        killed_dir = tmp_path / f"killed{seed}"
        committed = _run_and_kill(killed_dir, seed, rng, "--no-prune")
        killed = Store(killed_dir)
        assert check_invariants(killed) == []
        events = _run_events(killed, seed)
        # whole batches only, at least the ones reported (one more may have committed
        # between the commit and its line on stdout)
        assert len(events) % BATCH == 0 and len(events) >= committed * BATCH, \
            (seed, len(events), committed)
        batches = len(events) // BATCH
        ref = Store(tmp_path / f"ref{seed}")
        write(ref, seed, batches, pruning=False)
        assert events == _run_events(ref, seed), f"run {seed}: events differ"
        _same_records(killed, ref, seed)
        assert killed.finding(f"fnd-crash-{seed}-{batches}") is None  # the cut batch
        ref.close()
        killed.close()


def _prune_until_killed(state: Path, seed: int) -> subprocess.Popen:
    code = ("import sys\nfrom spyderd.graph import Store\n"
            "from spyderd.graph.retention import Policy, prune\n"
            "s = Store(sys.argv[1])\nprint('open', flush=True)\n"
            "while not prune(s, Policy(max_age_s=0, chunk=20), now_ns=int(sys.argv[2])).done:\n"
            "    pass\nprint('done', flush=True)\n")
    return subprocess.Popen([sys.executable, "-c", code, str(state), str(run_t0(seed) + 3 *
                                                                          10**9)],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_sigkill_during_retention_keeps_invariants_and_prunes_oldest_first(tmp_path):
    """Retention deletes in chunks of one transaction each: a kill leaves a consistent
    store in which what remains is exactly the newest part of what was there."""
    store = Store(tmp_path, map_size=1 << 24)
    write(store, 3, 40, pruning=False)
    before = _run_events(store, 3)
    store.close()
    rng = random.Random(5)
    for _ in range(6):
        proc = _prune_until_killed(tmp_path, 3)
        assert proc.stdout.readline().strip() == "open"
        time.sleep(rng.random() * 0.05)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        s = Store(tmp_path)
        assert check_invariants(s) == []
        after = _run_events(s, 3)
        assert after == before[len(before) - len(after):], "pruned other than oldest first"
        assert all(ev["time"] >= 0 for ev in after)
        s.close()
    s = Store(tmp_path)
    while not prune(s, Policy(max_age_s=0, chunk=500), now_ns=run_t0(3) + 3 * 10**9).done:
        pass
    assert check_invariants(s) == []
    assert all(ev["time"] >= run_t0(3) + 3 * 10**9 for ev in _run_events(s, 3))
    s.close()


def _make_v1_store(state: Path, events: list[dict]) -> None:
    """A schema-1 store: one JSON value per event, no end/container/rule indexes."""
    path = state / "store"
    path.mkdir(parents=True)
    env = lmdb.open(str(path), max_dbs=20, map_size=1 << 28)
    meta = env.open_db(b"meta")
    evdb = env.open_db(b"events")
    for name in (b"nodes", b"findings", b"traces"):
        env.open_db(name)
    for name in (b"edges_out", b"edges_in", b"idx_pid"):
        env.open_db(name, dupsort=True)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"1", db=meta)
        for i, ev in enumerate(events):
            txn.put(ev["time"].to_bytes(8, "big") + i.to_bytes(8, "big"),
                    json.dumps(ev).encode(), db=evdb)
    env.close()


def test_sigkill_during_schema_migration_then_migration_completes(tmp_path):
    """Each migration step is one transaction: a kill leaves the old schema whole, and the
    next open migrates from scratch."""
    ref = Store(tmp_path / "ref")
    write(ref, 4, 40, pruning=False)
    events = _run_events(ref, 4)
    ref.close()
    state = tmp_path / "old"
    _make_v1_store(state, events)
    rng = random.Random(3)
    code = ("import sys\nfrom spyderd.graph import Store\nprint('go', flush=True)\n"
            "Store(sys.argv[1]).close()\nprint('migrated', flush=True)\n")
    killed_mid, longest = 0, 0.08
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE,
                                text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert proc.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0.0, longest))
        proc.kill()
        proc.wait()
        rest = proc.stdout.read()
        proc.stdout.close()
        if "migrated" in rest:
            if killed_mid:
                break
            shutil.rmtree(state)  # too fast for the knife: again, from schema 1, sooner
            _make_v1_store(state, events)
            longest /= 2
            continue
        killed_mid += 1
        env = lmdb.open(str(state / "store"), max_dbs=20, readonly=True)
        with env.begin(db=env.open_db(b"meta", create=False)) as txn:
            schema = int(txn.get(b"schema"))
        if schema == 1:  # untouched: still one JSON value per event, all of them
            with env.begin(db=env.open_db(b"events", create=False)) as txn:
                values = [v for _, v in txn.cursor()]
            assert sorted(json.loads(v)["time"] for v in values) == [e["time"] for e in events]
        env.close()
    s = Store(state)
    assert int(s.get_meta("schema")) == SCHEMA_VERSION
    assert list(s.events()) == events
    assert check_invariants(s) == []
    s.close()
    assert killed_mid >= 1, "no kill landed inside the migration"

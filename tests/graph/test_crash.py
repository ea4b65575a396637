"""Crash safety: a writer killed with SIGKILL mid-batch, 20 times in a row on one store."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from spyderd.graph import Store
from spyderd.graph.retention import check_invariants

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _run_and_kill(state: Path, seed: int, rng: random.Random) -> int:
    proc = subprocess.Popen([sys.executable, str(HERE / "crash_writer.py"), str(state),
                             str(seed)], stdout=subprocess.PIPE, text=True,
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

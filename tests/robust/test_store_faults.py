"""Store faults on a real filesystem: a full tmpfs, a read-only remount. The guard holds,
retries, prunes, reports, and recovers; it never raises into the daemon."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
from pathlib import Path

import lmdb
import pytest

from spyderd.graph import Graph, Store
from spyderd.graph.guard import (
    MSG_STORE_FAULT,
    MSG_STORE_RECOVERED,
    MSG_STORE_SPACE_LOW,
    GuardedStore,
    Limits,
    SpaceWatch,
    describe,
)
from spyderd.graph.retention import check_invariants
from spyderd.graph.synthetic import roots, stream
from spyderd.model import Finding

pytestmark = pytest.mark.root


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _finding(i: int, t: int) -> Finding:
    return Finding(id=f"fnd-test{i:06d}", rule="Test rule", severity="high", priority=3,
                   message=f"finding {i}", time=t, process_id="proc:x:1:1", trace_id=f"trc-{i % 7}",
                   root_id="", event={"kind": "exec", "time": t})


def _fill(path: Path, leave: int) -> Path:
    """A file that takes all but `leave` bytes of the filesystem."""
    st = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
        except OSError:
            pass
    return filler


def _feed(g: Graph, guard: GuardedStore, n_batches: int, seed: int, t0: int) -> int:
    """Batches of 300 synthetic events, one finding each; returns the last event time."""
    t = t0
    for i, ev in enumerate(stream(n_batches * 300, seed=seed, t0=t0)):
        g.apply(ev)
        t = ev.time
        if i % 300 == 299:
            g.add_finding(_finding(seed * 100_000 + i // 300, t), None)
            g.flush()
    return t


def test_full_disk_degrades_holds_prunes_and_recovers(small_fs, caplog):
    caplog.set_level(logging.INFO, logger="spyderd.store")
    now = [0.0]
    guard = GuardedStore(Store(small_fs, map_size=64 << 20),
                         limits=Limits(max_events=5000, max_findings=50, report_every=5,
                                       prune_blocks=20), clock=lambda: now[0])
    g = Graph(guard, "fault", boot_wall_ns=0)
    g.load_snapshot(roots())
    g.flush()
    t = _feed(g, guard, 30, 1, 10**11)  # history the emergency prune may take
    assert guard.fault == ""
    filler = _fill(small_fs, 64 << 10)
    t = _feed(g, guard, 40, 2, t + 1)
    assert guard.fault == "disk full", guard.status()
    st = guard.status()
    assert st["state"] == "degraded" and st["held_findings"] > 0
    faults = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == MSG_STORE_FAULT]
    assert faults and "disk full" in faults[0].getMessage()
    # the bound: more findings than max_findings while degraded are dropped and counted
    for k in range(100):
        now[0] += 0.01
        g.add_finding(_finding(900_000 + k, t + k), None)
        g.flush()
    assert len(guard.held.findings) <= 50
    assert guard.counters["findings_not_stored"] > 0
    now[0] += 10
    guard.tick()  # a lasting fault is reported again
    assert len([r for r in caplog.records
                if getattr(r, "MESSAGE_ID", "") == MSG_STORE_FAULT]) >= 2
    # space comes back: the next retry writes everything held, in one batch
    filler.unlink()
    now[0] += 120
    assert guard.retry(), guard.last_error
    assert guard.fault == "" and guard.held.empty()
    assert any(getattr(r, "MESSAGE_ID", "") == MSG_STORE_RECOVERED for r in caplog.records)
    store = guard.store
    held_ids = [f"fnd-test{900_000 + k:06d}" for k in range(100)][-50:]
    assert all(store.finding(fid) is not None for fid in held_ids)
    assert check_invariants(store) == []
    guard.close()


def test_emergency_prune_makes_room_without_freeing_disk(small_fs):
    guard = GuardedStore(Store(small_fs, map_size=64 << 20),
                         limits=Limits(prune_blocks=50, retry_min=0.0, retry_max=0.0))
    g = Graph(guard, "prune", boot_wall_ns=0)
    g.load_snapshot(roots())
    g.flush()
    t = _feed(g, guard, 60, 3, 10**11)
    _fill(small_fs, 16 << 10)
    guard.limits.retry_min = guard.limits.retry_max = 3600.0  # no retry while feeding
    t = _feed(g, guard, 4, 4, t + 1)
    assert guard.fault == "disk full"
    for _ in range(10):  # each retry deletes the oldest blocks, then writes what is held
        if guard.retry(force=True):
            break
    assert guard.fault == "", guard.status()
    assert guard.counters["pruned_blocks"] > 0
    assert guard.store.finding(f"fnd-test{4 * 100_000 + 3:06d}") is not None
    guard.close()


@pytest.mark.parametrize(("exc", "words"), [
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "disk quota exceeded"),
    (OSError(errno.EROFS, os.strerror(errno.EROFS)), "read-only filesystem"),
    (lmdb.Error("mdb_txn_commit: Read-only file system"), "read-only filesystem"),
    (lmdb.Error("mdb_txn_commit: Disk quota exceeded"), "disk quota exceeded"),
    (lmdb.MapFullError("mdb_put: MDB_MAP_FULL"), "map full"),
    (lmdb.ReadonlyError("mdb_put: Permission denied"), "read-only filesystem"),
])
def test_faults_are_named_in_words(tmp_path, exc, words):
    """(A runtime read-only remount or quota cannot be staged here: tmpfs refuses to go
    read-only under an open writer, and root bypasses quotas; ENOSPC is staged for real.)"""
    assert describe(exc, tmp_path) == words


def test_eio_with_free_space_is_an_io_error(tmp_path, small_fs):
    assert describe(lmdb.Error("mdb_txn_commit: Input/output error"), tmp_path) == "I/O error"
    _fill(small_fs, 0)
    assert describe(lmdb.Error("mdb_txn_commit: Input/output error"), small_fs) == "disk full"


def test_space_thresholds_warn_then_prune(small_fs, caplog):
    caplog.set_level(logging.INFO, logger="spyderd.store")
    guard = GuardedStore(Store(small_fs, map_size=64 << 20),
                         space=SpaceWatch(space_left_mb=5, space_left_action="warn",
                                          admin_space_left_mb=2,
                                          admin_space_left_action="prune"))
    g = Graph(guard, "space", boot_wall_ns=0)
    g.load_snapshot(roots())
    g.flush()
    _feed(g, guard, 20, 6, 10**11)
    assert guard.check_space() == ""
    filler = _fill(small_fs, 4 << 20)
    assert guard.check_space() == "space_left"
    assert guard.counters["pruned_blocks"] == 0  # warn only
    filler.unlink()
    _fill(small_fs, 1 << 20)
    assert guard.check_space() == "admin_space_left"
    assert guard.counters["pruned_blocks"] > 0
    low = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == MSG_STORE_SPACE_LOW]
    assert [r.SPYDER_STORE_LEVEL for r in low] == ["space_left", "admin_space_left"]
    guard.close()


def test_panicked_environment_is_reopened(small_fs):
    """MDB_PANIC (a meta-page write failed) poisons the environment until it is reopened."""
    reopened = []

    def reopen() -> Store:
        reopened.append(1)
        return Store(small_fs, map_size=64 << 20)

    guard = GuardedStore(Store(small_fs, map_size=64 << 20), reopen=reopen,
                         limits=Limits(retry_min=0.0, retry_max=0.0))
    guard._enter(lmdb.PanicError("mdb_txn_begin: MDB_PANIC: Update of meta page failed"))
    guard.held.meta["x"] = 1
    real = guard.store.put_meta

    def panics(key, value):
        raise lmdb.PanicError("mdb_txn_begin: MDB_PANIC")
    guard.store.put_meta = panics
    assert not guard.retry(force=True)
    assert reopened and guard.store.put_meta is not panics
    assert guard.retry(force=True) and guard.store.get_meta("x") == 1
    assert real
    guard.close()

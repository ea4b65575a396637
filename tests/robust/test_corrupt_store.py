"""Corrupted stores: detected at open and at run time, moved aside, salvaged; the daemon
starts on a store with random pages overwritten, captures, fires rules, keeps the old one."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import lmdb
import pytest

from spyderd.graph import Store
from spyderd.graph.guard import MSG_STORE_CORRUPT, GuardedStore
from spyderd.graph.retention import check_invariants
from spyderd.graph.salvage import check_store, fresh_store, open_store, salvage, verify
from tests.conftest import REPO, Spyderd, ctl, journal_entries, wait_for
from tests.graph.crash_writer import write
from tests.robust.test_disk_full_daemon import RULE, canary, write_config


def make_store(state: Path, batches: int = 20, seed: int = 1) -> None:
    store = Store(state, map_size=1 << 26)
    write(store, seed, batches, pruning=False)
    store.close()


def corrupt(state: Path, rng: random.Random, pages: int = 6) -> None:
    """Overwrite random pages with garbage until a full read notices (a page that held
    nothing live would not be a corruption anyone could see)."""
    data = state / "store" / "data.mdb"
    for _ in range(20):
        total = data.stat().st_size // 4096
        with open(data, "r+b") as f:
            for _ in range(pages):
                f.seek(rng.randrange(0, total) * 4096)
                f.write(rng.randbytes(4096))
        if not verify(state / "store").ok:
            return
    raise AssertionError("could not corrupt the store")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pristine")
    make_store(base, batches=100)  # schema 3 is ~5x denser: as many pages as before
    return base


def _copy(pristine: Path, dest: Path) -> Path:
    shutil.copytree(pristine, dest)
    return dest


def test_verify_reads_every_record_of_a_clean_store(pristine):
    v = verify(pristine / "store")
    assert v.ok and v.complete, v.problems
    assert v.walks["findings"].records == 100
    assert check_store(pristine).ok


@pytest.mark.parametrize("seed", range(6))
def test_random_pages_detected_moved_aside_and_salvaged(pristine, tmp_path, seed):
    state = _copy(pristine, tmp_path / "state")
    corrupt(state, random.Random(seed))
    assert not check_store(state).ok
    store, moved = open_store(state, map_size=1 << 26, check_seconds=30)
    assert moved is not None and moved.name.startswith("store.corrupt-")
    assert (moved / "data.mdb").exists()
    assert store.stats()["findings"] == 0  # fresh
    store.close()
    out = tmp_path / "salvaged"
    report = salvage(moved, out)
    assert check_store(out).ok, check_store(out).problems
    copied = sum(r.get("copied", 0) for r in report.values())
    assert copied > 0
    s = Store(out, readonly=True)
    assert check_invariants(s) == []
    for f in s.findings():  # whatever was readable reads back whole
        assert f.id.startswith("fnd-crash-1-") and f.rule == "crash test"
    s.close()


def test_bad_schema_header_is_corruption(pristine, tmp_path):
    state = _copy(pristine, tmp_path / "state")
    env = lmdb.open(str(state / "store"), max_dbs=20)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema", b"\xff garbage")
    env.close()
    store, moved = open_store(state, map_size=1 << 26, check_seconds=0)
    assert moved is not None
    store.close()


def test_newer_schema_is_refused_not_moved(pristine, tmp_path):
    """A store from a newer spyderd is not corrupt: it must be left alone."""
    state = _copy(pristine, tmp_path / "state")
    env = lmdb.open(str(state / "store"), max_dbs=20)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema", b"999")
    env.close()
    with pytest.raises(Exception, match="newer"):
        open_store(state, map_size=1 << 26, check_seconds=0)
    assert not list(state.glob("store.corrupt-*"))


def test_corruption_at_run_time_swaps_in_a_fresh_store(pristine, tmp_path):
    state = _copy(pristine, tmp_path / "state")
    guard = GuardedStore(Store(state, map_size=1 << 26),
                         on_corrupt=fresh_store(state, 1 << 26))
    guard._enter(lmdb.CorruptedError("mdb_get: MDB_CORRUPTED: Located page was wrong type"))
    assert guard.fault == "" and guard.counters["corrupt"] == 1
    assert len(list(state.glob("store.corrupt-*"))) == 1
    assert guard.store.stats()["findings"] == 0
    guard.close()


@pytest.mark.root
def test_daemon_starts_on_a_corrupted_store_captures_and_keeps_it_aside(pristine, tmp_path,
                                                                       journald):
    base = tmp_path / "d"
    base.mkdir()
    state = _copy(pristine, base / "state")
    corrupt(state, random.Random(42))
    cfg = base / "spyderd.yaml"
    write_config(cfg)
    d = Spyderd(base, [str(REPO / "rules"), str(REPO / "tests/robust/rules")], cfg)
    try:
        d.start()
        pid = d.proc.pid
        aside = list(state.glob("store.corrupt-*"))
        assert len(aside) == 1 and (aside[0] / "data.mdb").exists()
        entries = journal_entries(SYSLOG_IDENTIFIER="spyderd", MESSAGE_ID=MSG_STORE_CORRUPT,
                                  _PID=str(pid))
        assert entries and entries[0]["PRIORITY"] == "2"
        assert entries[0]["SPYDER_STORE_MOVED_TO"] == str(aside[0])
        canary(tmp_path)
        assert wait_for(lambda: journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=RULE,
                                                _PID=str(pid)), 60)
        st = json.loads(d.ctl("status", "-o", "json").stdout)
        assert st["store"].get("moved_aside") == str(aside[0])
        assert "moved aside to" in d.ctl("status").stdout
        assert wait_for(lambda: RULE in d.ctl("findings", "-o", "json", "--no-pager").stdout,
                        30)
    finally:
        d.stop()
    assert os.path.isdir(aside[0])
    # spyderctl: the fresh store checks clean, the old one does not, salvage copies it out
    assert d.ctl("store", "check").returncode == 0
    bad = d.ctl("store", "check", str(aside[0]))
    assert bad.returncode == 1 and "problem:" in bad.stdout
    out = base / "salvaged"
    r = d.ctl("store", "salvage", str(aside[0]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert d.ctl("store", "check", str(out)).returncode == 0
    env = dict(d.env, SPYDERD_STATE_DIR=str(out))
    got = ctl(env, "findings", "-o", "json", "--no-pager", "--all")
    ids = [json.loads(line)["id"] for line in got.stdout.splitlines() if line.strip()]
    assert all(i.startswith("fnd-crash-1-") for i in ids), got.stdout[:300]
    assert " copied" in r.stdout  # random pages may take every finding; not every record

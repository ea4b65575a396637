"""One daemon per state directory: a second start is refused at once and touches nothing."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from spyderd.daemon.service import acquire_instance_lock, lock_holder
from spyderd.errors import AlreadyRunningError
from tests.conftest import REPO, journal_entries


def _second_start(env: dict, config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spyderd", "--config", str(config)],
                          check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def _listing(d) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(d)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != "lock.mdb"}


def test_lock_refuses_a_second_holder_and_names_it(tmp_path):
    state, run = tmp_path / "state", tmp_path / "run"
    run.mkdir()
    first = acquire_instance_lock(state, run)
    first.write_pid(run)
    with pytest.raises(AlreadyRunningError, match=rf"already running \(pid {os.getpid()}\)"):
        acquire_instance_lock(state, run)
    assert lock_holder(first.fd) == os.getpid()
    first.release()
    assert not (run / "spyderd.pid").exists()
    again = acquire_instance_lock(state, run)  # released: the next start proceeds
    again.release()


def test_lock_holder_reads_proc_locks_format(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks = tmp_path / "locks"
    locks.write_text(f"1: POSIX  ADVISORY  WRITE 99 {dev} 0 EOF\n"
                     f"2: -> FLOCK  ADVISORY  WRITE 77 {dev} 0 EOF\n"
                     f"3: FLOCK  ADVISORY  WRITE 4242 {dev} 0 EOF\n")
    assert lock_holder(fd, str(locks)) == 4242
    os.close(fd)


def test_lock_is_dropped_by_the_kernel_when_the_holder_dies(tmp_path):
    """kill -9 leaves no stale lock: nothing to clean up before the restart."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(AlreadyRunningError, match=rf"\(pid {child.pid}\)"):
        acquire_instance_lock(tmp_path, tmp_path)
    child.kill()
    child.wait()
    child.stdout.close()
    lock = acquire_instance_lock(tmp_path, tmp_path)
    assert fcntl.flock(lock.fd, fcntl.LOCK_EX | fcntl.LOCK_NB) is None
    lock.release()


@pytest.mark.root
def test_second_daemon_is_refused_and_touches_nothing(spyderd_factory):
    d = spyderd_factory()
    d.start()
    pid = d.proc.pid
    assert (d.run / "spyderd.pid").read_text().strip() == str(pid)
    before = _listing(d.state)
    gap_entries = len(journal_entries(SYSLOG_IDENTIFIER="spyderd",
                                      MESSAGE_ID="ffaa85f3fb1a44a1b33b3ba1a11e4fa0"))
    t0 = time.monotonic()
    r = _second_start(d.env, d.config)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 30  # at once: before any probe is compiled
    assert f"spyderd is already running (pid {pid})" in r.stderr
    # another runtime dir, same state dir: still refused, the holder found via /proc/locks
    other = dict(d.env, SPYDERD_RUNTIME_DIR=str(d.run.parent / "run2"))
    r2 = _second_start(other, d.config)
    assert r2.returncode != 0 and f"(pid {pid})" in r2.stderr
    assert not (d.run.parent / "run2").exists()
    # the running daemon's pid file, store and capture-gap record are untouched
    assert (d.run / "spyderd.pid").read_text().strip() == str(pid)
    after = _listing(d.state)
    assert set(after) == set(before)
    assert len(journal_entries(SYSLOG_IDENTIFIER="spyderd",
                               MESSAGE_ID="ffaa85f3fb1a44a1b33b3ba1a11e4fa0")) == gap_entries
    assert d.proc.poll() is None
    assert d.ctl("status").returncode == 0
    d.stop()
    assert not (d.run / "spyderd.pid").exists()

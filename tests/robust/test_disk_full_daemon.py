"""Acceptance: the state dir on a small tmpfs fills up during an exec storm. The daemon
lives, a rule still fires into journald, status reports the full disk, and after space is
freed the store recovers and holds the finding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from spyderd.graph.guard import MSG_STORE_FAULT, MSG_STORE_RECOVERED
from tests.conftest import REPO, Spyderd, journal_entries, wait_for

pytestmark = pytest.mark.root
RULE = "Test: robust canary"


def write_config(path, **store) -> None:
    cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
    cfg["store"].update(store)
    cfg["findings"]["suppressions"] = []
    path.write_text(yaml.safe_dump(cfg))


@pytest.fixture
def tmpfs_state(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(state)], check=True)
    yield state
    subprocess.run(["umount", "-l", str(state)], check=False)


def canary(tmp_path) -> subprocess.CompletedProcess:
    exe = tmp_path / "robust-canary"
    if not exe.exists():
        shutil.copy("/bin/true", exe)
    return subprocess.run([str(exe), "storm"], check=True)


def fill(path, leave: int):
    st = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
        except OSError:
            pass
    return filler


def health(d: Spyderd) -> dict:
    r = d.ctl("status", "-o", "json")
    st = json.loads(r.stdout or "{}")
    return (st.get("store") or {}).get("health") or {}


def test_full_disk_keeps_detection_and_recovers(tmp_path, tmpfs_state, journald):
    cfg = tmp_path / "spyderd.yaml"
    write_config(cfg, space_left_mb=0, admin_space_left_mb=0, fault_report_seconds=2.0,
                 batch_delay=0.2)
    d = Spyderd(tmp_path, [str(REPO / "rules"), str(REPO / "tests/robust/rules")], cfg)
    try:
        d.start()
        pid = d.proc.pid
        filler = fill(tmpfs_state, 128 << 10)
        subprocess.run(["sh", "-c", "for i in $(seq 3000); do /bin/true; done"], check=True)
        assert wait_for(lambda: health(d).get("state") == "degraded", 60), health(d)
        canary(tmp_path)
        found = wait_for(lambda: journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=RULE,
                                                 _PID=str(pid)), 60)
        assert found, "the rule did not fire into journald while the store was full"
        assert d.proc.poll() is None, "spyderd died on a full disk"
        text = d.ctl("status").stdout
        assert "store: disk full since" in text and "events not stored" in text, text
        faults = journal_entries(SYSLOG_IDENTIFIER="spyderd", MESSAGE_ID=MSG_STORE_FAULT,
                                 _PID=str(pid))
        assert faults and faults[0].get("SPYDER_STORE_FAULT") == "disk full", faults[:1]
        assert wait_for(lambda: len(journal_entries(  # a lasting fault is reported again
            SYSLOG_IDENTIFIER="spyderd", MESSAGE_ID=MSG_STORE_FAULT, _PID=str(pid))) >
            len(faults), 60)
        filler.unlink()
        assert wait_for(lambda: health(d).get("state") == "ok", 180), health(d)
        assert wait_for(lambda: journal_entries(SYSLOG_IDENTIFIER="spyderd",
                                                MESSAGE_ID=MSG_STORE_RECOVERED,
                                                _PID=str(pid)), 30)
        stored = d.ctl("findings", "--rule", RULE, "-o", "json", "--no-pager").stdout
        assert RULE in stored, "the finding made while the disk was full was not stored"
        assert "store: writing (recovered from" in d.ctl("status").stdout
    finally:
        d.stop()

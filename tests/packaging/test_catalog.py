"""The journald catalog: one entry per default rule and one for traces, in sync, valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spyderd.rules import load_rules
from spyderd.sinks.journald import TRACE_MESSAGE_ID

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "packaging/spyderd.catalog"


def test_catalog_is_in_sync_with_the_rule_pack():
    r = subprocess.run([sys.executable, str(REPO / "packaging/gen-catalog.py"), "--check"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr + "\n(run packaging/gen-catalog.py and commit the catalog)"
    text = CATALOG.read_text()
    ids = {line[3:].strip() for line in text.splitlines() if line.startswith("-- ")}
    assert TRACE_MESSAGE_ID in ids
    assert {r.message_id for r in load_rules([REPO / "rules"]).rules} <= ids


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl")
def test_journalctl_accepts_the_catalog(tmp_path):
    cat = tmp_path / "usr/lib/systemd/catalog"
    cat.mkdir(parents=True)
    shutil.copy2(CATALOG, cat / "spyderd.catalog")
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                            capture_output=True, text=True, check=True).stdout
    rules = load_rules([REPO / "rules"]).rules
    for r in rules:
        assert f"{r.message_id} spyderd: spyderd finding: {r.name}" in listed
    assert f"{TRACE_MESSAGE_ID} spyderd: spyderd trace" in listed

"""Loss accounting end to end: ring-buffer losses counted per kind in `spyderctl status`, a
`spyderd` warning in journald, and findings whose subject lived through a loss marked
incomplete (in the store and as SPYDER_INCOMPLETE=1 in journald).

Losses are made for real: the daemon is stopped (SIGSTOP) with a small ring buffer while
execs keep coming, so the kernel cannot reserve space for them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from capture_support import find_event, start_daemon, status
from conftest import journal_entries, wait_for

pytestmark = pytest.mark.root

RULE = textwrap.dedent("""
    - rule: Loss test memfd
      description: a memfd with a test name
      event: kernel
      condition: kernel.call = memfd_create and kernel.name in (spyder_loss_a, spyder_loss_b)
      severity: low
      output: memfd {kernel.name}
""")

SUBJECT = textwrap.dedent("""
    import os, sys
    print(os.getpid(), flush=True)
    name = sys.stdin.readline().strip()
    os.memfd_create(name)
""")


def _subject(tag: str) -> tuple[subprocess.Popen, int]:
    # distinct argv per subject: findings of one rule on identical images would be folded
    p = subprocess.Popen([sys.executable, "-c", SUBJECT, tag], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def _trigger(p: subprocess.Popen, name: str) -> None:
    p.stdin.write(name + "\n")
    p.stdin.close()
    p.wait(30)


def _finding(d, name: str) -> dict | None:
    r = d.ctl("findings", "-o", "json", check=True)
    for line in r.stdout.splitlines():
        f = json.loads(line)
        if f["event"].get("name") == name:
            return f
    return None


def test_losses_counted_warned_and_findings_marked_incomplete(tmp_path, journald):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "loss.yaml").write_text(RULE)
    d = start_daemon(tmp_path, {"ring_buffer_pages": 4}, rules=[str(rules)])
    try:
        before, a_pid = _subject("a")  # started (and seen) before the loss
        find_event(d, "exec", lambda e: True, pid=a_pid)
        d.proc.send_signal(signal.SIGSTOP)
        try:  # 16 KiB of ring and nobody reading: most of these execs cannot be recorded
            subprocess.run(["/bin/sh", "-c", "for i in $(seq 300); do /bin/true; done"],
                           check=True, timeout=120)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        lost = wait_for(lambda: status(d).get("lost", {}).get("exec", 0), 15)
        assert lost > 0, status(d)

        def warned():
            return [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd",
                                               _PID=str(d.proc.pid))
                    if "events lost" in e.get("MESSAGE", "")]

        warning = wait_for(warned, 15)
        assert warning, "no 'events lost' warning from this spyderd in journald"
        assert "lost exec" in warning[0]["MESSAGE"]
        # the ring may keep overflowing between two reads: the text shows at least as many
        counted = sum(status(d)["lost"].values())
        text = d.ctl("status", check=True).stdout
        shown = re.search(r"lost: (\d+)", text)
        assert shown and int(shown.group(1)) >= counted, text

        after, b_pid = _subject("b")  # started once the loss was noticed and reported
        find_event(d, "exec", lambda e: True, pid=b_pid)
        _trigger(before, "spyder_loss_a")
        _trigger(after, "spyder_loss_b")
        fa = wait_for(lambda: _finding(d, "spyder_loss_a"), 15)
        fb = wait_for(lambda: _finding(d, "spyder_loss_b"), 15)
        assert fa and fa["incomplete"] is True
        assert fb and fb["incomplete"] is False
        ja = wait_for(lambda: journal_entries(SPYDER_FINDING_ID=fa["id"]), 15)
        assert ja and ja[0]["SPYDER_INCOMPLETE"] == "1"
        jb = wait_for(lambda: journal_entries(SPYDER_FINDING_ID=fb["id"]), 15)
        assert jb and jb[0]["SPYDER_INCOMPLETE"] == "0"
    finally:
        d.stop()

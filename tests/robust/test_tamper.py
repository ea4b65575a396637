"""Tampering is evidence, with the default rule pack (rules/tamper.yaml): a test process
that SIGSTOPs spyderd gets one finding, one that SIGKILLs it is named by the gap report of
the next start (the kernel keeps the last signal aimed at spyderd in a pinned map that
outlives the daemon), one that SIGTERMs it gets a finding sent before the daemon exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from spyderd.daemon.service import MSG_GAP_UNCLEAN
from tests.conftest import journal_entries, wait_for

pytestmark = pytest.mark.root
FROZEN = "spyderd killed or frozen by another process"
STOPPED = "spyderd asked to stop by a process other than the service manager"
TAMPER_RULES = (FROZEN, STOPPED, "Signal aimed at spyderd")
SENDER = ("import os, sys, time; os.kill(int(sys.argv[1]), int(sys.argv[2])); "
          "print(os.getpid(), flush=True); time.sleep(float(sys.argv[3]))")


def _send(pid: int, sig: int, linger: float = 3.0) -> subprocess.Popen:
    """A process of its own sends the signal (and stays a moment, so the graph knows it)."""
    return subprocess.Popen([sys.executable, "-c", SENDER, str(pid), str(int(sig)),
                             str(linger)], stdout=subprocess.PIPE, text=True)


def test_sigstop_gives_a_finding_and_sigkill_is_named_at_the_next_start(spyderd_factory):
    d = spyderd_factory()
    d.start()
    pid = d.proc.pid
    stopper = _send(pid, signal.SIGSTOP)
    stopper_pid = int(stopper.stdout.readline())
    time.sleep(2)
    os.kill(pid, signal.SIGCONT)
    found = wait_for(lambda: [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd",
                                                         SPYDER_RULE=FROZEN, _PID=str(pid))
                              if e.get("SPYDER_PID") == str(stopper_pid)], 60)
    assert found, "no finding for the SIGSTOP"
    time.sleep(1)  # one finding per signal: no other tamper rule on the same sender
    by_stopper = [e["SPYDER_RULE"] for r in TAMPER_RULES
                  for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=r,
                                           _PID=str(pid), SPYDER_PID=str(stopper_pid))]
    assert by_stopper == [FROZEN], by_stopper
    stopper.wait()
    stopper.stdout.close()
    # aimed at another thread: the kernel finds it in the daemon's thread map (self_tids)
    tid = next(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    killer = _send(tid, signal.SIGKILL, 0.5)
    killer_pid = int(killer.stdout.readline())
    d.proc.wait(30)
    killer.wait()
    killer.stdout.close()
    d.start()
    gaps = wait_for(lambda: journal_entries(SYSLOG_IDENTIFIER="spyderd",
                                            MESSAGE_ID=MSG_GAP_UNCLEAN, _PID=str(d.proc.pid)),
                    30)
    assert gaps, "no capture-gap report after the SIGKILL"
    g = gaps[-1]
    assert g.get("SPYDER_GAP_SIGNAL") == "9" and g.get("SPYDER_GAP_SENDER_PID") == \
        str(killer_pid), g
    assert f"SIGKILL by python3[{killer_pid}]" in g["MESSAGE"] or \
        f"[{killer_pid}]" in g["MESSAGE"]
    assert "the previous run was sent SIGKILL" in d.ctl("status").stdout


def _findings_of(rule: str, daemon_pid: int, sender: int) -> list[dict]:
    return journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=rule,
                           _PID=str(daemon_pid), SPYDER_PID=str(sender))


def test_sigterm_by_hand_gives_a_finding_before_the_clean_stop(spyderd_factory):
    d = spyderd_factory()
    d.start()
    pid = d.proc.pid
    # kill(2) of one of spyderd's other threads stops the whole daemon: the same finding
    tid = next(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    stopper = _send(tid, signal.SIGSTOP, 1.0)
    stopper_pid = int(stopper.stdout.readline())
    time.sleep(1)
    os.kill(pid, signal.SIGCONT)
    stopper.wait()
    stopper.stdout.close()
    assert wait_for(lambda: _findings_of(FROZEN, pid, stopper_pid), 30), "thread SIGSTOP"
    stopper = _send(pid, signal.SIGTERM, 1.0)
    stopper_pid = int(stopper.stdout.readline())
    assert d.proc.wait(60) == 0
    stopper.wait()
    stopper.stdout.close()
    found = wait_for(lambda: _findings_of(STOPPED, pid, stopper_pid), 10)
    assert found, "no finding for the SIGTERM"
    assert found[0]["SPYDER_SEVERITY"] == "high"
    assert not _findings_of(FROZEN, pid, stopper_pid)

"""spyderctl never writes a watched process's control characters to the terminal raw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from hypothesis import given
from hypothesis import strategies as st

from spyderd.ctl.output import terminal_safe
from spyderd.graph import Graph, Store
from spyderd.graph.synthetic import roots
from spyderd.model import ExecEvent, ForkEvent
from tests.conftest import REPO
from tests.graph.crash_writer import finding

EVIL_ARGS = ["evil", "\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "carriage\rreturn", "\x9b31m", "\x00"]


def _store(state) -> str:
    store = Store(state)
    g = Graph(store, "esc", boot_wall_ns=0)
    g.load_snapshot(roots(1))
    t = time.time_ns()
    g.apply(ForkEvent(time=t, ktime=t, pid=4242, tid=4242, ppid=100, child_start=t,
                      comm="svc", uid=0))
    node = g.apply(ExecEvent(time=t + 1, ktime=t + 1, pid=4242, tid=4242,
                             filename="/tmp/\x1b[31mevil\rexe", args=EVIL_ARGS, start=t,
                             ppid=100, comm="evil\x1b[8m", uid=0))
    f = finding(1, 1, t + 1, node.id)
    f.root_id = node.id
    f.message = "evil ran: \x1b[2J\x1b]0;owned\x07 " + " ".join(EVIL_ARGS)
    g.add_finding(f, None)
    g.flush()
    store.close()
    return f.id


def _ctl(state, *args: str) -> str:
    env = dict(os.environ, SPYDERD_STATE_DIR=str(state), SPYDERD_RUNTIME_DIR=str(state / "run"),
               PYTHONPATH=str(REPO), SYSTEMD_COLORS="1", SYSTEMD_PAGER="cat")
    r = subprocess.run([sys.executable, "-m", "spyderd.ctl", *args], env=env, cwd=REPO,
                       capture_output=True, text=True, check=False, errors="surrogateescape")
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def _no_raw_controls(out: str) -> None:
    stripped = out
    for own in ("\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[36m",
                "\x1b[1;31m", "\x1b[1;32m"):
        stripped = stripped.replace(own, "")
    bad = [c for c in stripped if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, (bad, out[:500])


def test_text_output_escapes_what_processes_wrote(tmp_path):
    _store(tmp_path)
    for args in (("ps", "--all", "--no-pager"), ("findings", "--no-pager"),
                 ("trace", "--pid", "4242", "--no-pager"),
                 ("process", "--pid", "4242", "--no-pager"),
                 ("events", "--no-pager")):
        out = _ctl(tmp_path, *args)
        _no_raw_controls(out)
        assert "\\x1b" in out or "\\u001b" in out, (args, out[:300])  # shown, escaped
    raw = _ctl(tmp_path, "events", "-o", "json", "--no-pager")
    evs = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert any(ev.get("args") == EVIL_ARGS for ev in evs)  # JSON keeps the exact data


@given(st.text())
def test_terminal_safe_property(text):
    _no_raw_controls(terminal_safe(text))

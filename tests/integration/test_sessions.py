"""Issue 6 on the real kernel: the audit login uid survives `sudo -u nobody`, and a process
in an ssh-like session (a pty and setsid) belongs to an interactive session node."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import REPO, Spyderd
from containers_support import exec_with_args, trace_of

pytestmark = pytest.mark.root
LOGIN_UID = 1000  # the "original user" a login service would have recorded


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, journald):
    d = Spyderd(tmp_path_factory.mktemp("spyderd-sessions"), [str(REPO / "rules")])
    try:
        d.start(wait=240)  # compiling the probes is slow on a busy 2-core machine
        yield d
    finally:
        d.stop()


def _node_by_id(d, node_id: str) -> dict:
    """Any stored node (session, container, machine) through `spyderctl trace ID`."""
    r = d.ctl("trace", node_id, "-o", "json", check=True)
    nodes = [n for n in json.loads(r.stdout)["nodes"] if n["id"] == node_id]
    assert nodes, r.stdout[:2000]
    return nodes[0]


def _gated(flag, marker: str) -> list[str]:
    """argv of a shell that waits for `flag` (so spyderd sees it alive) and names itself."""
    return ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done; : {marker}"]


def _image(trace: dict, pid: int, argv: list[str]) -> dict:
    hits = [n for n in trace["nodes"] if n["kind"] == "process" and n["pid"] == pid
            and n["args"] == argv]
    assert hits, [n for n in trace["nodes"] if n["pid"] == pid]
    return hits[-1]


def test_sudo_keeps_the_login_uid(daemon, tmp_path):
    assert shutil.which("sudo"), "sudo is missing (packaging/install.sh installs it)"
    marker = f"spy-sudo-{uuid.uuid4().hex[:8]}"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    for d in (shared, *shared.parents):  # nobody must be able to see the flag appear
        if d == Path(tempfile.gettempdir()):
            break
        d.chmod(d.stat().st_mode | 0o011)
    flag = shared / "go"
    argv = _gated(flag, marker)
    # What pam_loginuid does at login, in a child of the test only; then a root shell's
    # `sudo -u nobody`.
    prog = ("import os, sys\n"
            f"open('/proc/self/loginuid', 'w').write('{LOGIN_UID}')\n"
            "os.execvp('sudo', ['sudo', '-u', 'nobody', *sys.argv[1:]])\n")
    proc = subprocess.Popen([sys.executable, "-c", prog, *argv], stdin=subprocess.DEVNULL)
    try:
        ev = exec_with_args(daemon, argv)
        flag.touch()
        assert proc.wait(30) == 0
        trace = trace_of(daemon, ev["pid"], lambda t: any(
            n["kind"] == "process" and n["args"] == argv for n in t["nodes"]))
    finally:
        flag.touch()
        if proc.poll() is None:
            proc.kill()
    sh = _image(trace, ev["pid"], argv)
    nobody = pwd.getpwnam("nobody")
    assert sh["uid"] == nobody.pw_uid and sh["user"] == "nobody"
    assert sh["loginuid"] == LOGIN_UID, sh
    assert sh["sessionid"] > 0
    boot = sh["id"].split(":")[1]
    assert sh["session_id"] == f"session:{boot}:{sh['sessionid']}"
    try:
        expected_login = pwd.getpwuid(LOGIN_UID).pw_name
    except KeyError:
        expected_login = ""
    assert sh["login_user"] == expected_login
    sudo = [n for n in trace["nodes"] if n["kind"] == "process" and n["args"][:1] == ["sudo"]]
    assert sudo, "sudo is not an ancestor in the trace"
    assert sudo[-1]["uid"] == 0 and sudo[-1]["loginuid"] == LOGIN_UID
    assert sudo[-1]["session_id"] == sh["session_id"]
    session = _node_by_id(daemon, sh["session_id"])
    assert session["kind"] == "session" and session["loginuid"] == LOGIN_UID
    assert session["session_kind"] == "audit" and session["sessionid"] == sh["sessionid"]


PTY_PROG = """
import os, pty, sys
pid, fd = pty.fork()  # the child: setsid() and the pty as its controlling terminal
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
while True:
    try:
        if not os.read(fd, 1024):
            break
    except OSError:
        break
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_pty_session_gets_a_session_node(daemon, tmp_path):
    flag, marker = tmp_path / "go", f"spy-pty-{uuid.uuid4().hex[:8]}"
    argv = _gated(flag, marker)
    proc = subprocess.Popen([sys.executable, "-c", PTY_PROG, *argv], stdin=subprocess.DEVNULL)
    try:
        ev = exec_with_args(daemon, argv)
        flag.touch()
        assert proc.wait(30) == 0
        trace = trace_of(daemon, ev["pid"], lambda t: any(
            n["kind"] == "process" and n["args"] == argv for n in t["nodes"]))
    finally:
        flag.touch()
        if proc.poll() is None:
            proc.kill()
    sh = _image(trace, ev["pid"], argv)
    assert sh["tty"].startswith("pts/"), sh
    assert sh["interactive"] is True and sh["session_id"]
    session = _node_by_id(daemon, sh["session_id"])
    assert session["kind"] == "session" and session["interactive"] is True
    assert session["tty"] == sh["tty"] and session["leader"] == ev["pid"]
    # the test's own process has no terminal and no session
    parent = [n for n in trace["nodes"] if n["kind"] == "process" and n["pid"] == proc.pid]
    assert parent and parent[-1]["tty"] == "" and parent[-1]["interactive"] is False

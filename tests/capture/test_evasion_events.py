"""Issue 11 network and kernel capture on the real kernel, through `spyderctl events -o
json`: packet and raw sockets, a socket dup'ed onto a shell's stdio, io_uring set-up, and
signals aimed at spyderd itself (an event whatever capture.kill_signals says, and kept in
a pinned map that outlives a SIGKILL, read by the next start)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from capture_support import absent, find_event, run_py, start_daemon
from conftest import wait_for

from spyderd.capture import tamper

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    daemon = start_daemon(tmp_path_factory.mktemp("evasion"),
                          {"disable": ["files", "creds"], "kill_signals": [9]}, loader=loader)
    yield daemon
    daemon.stop()


def test_packet_and_raw_sockets_not_ordinary_ones(d):
    code = textwrap.dedent("""
        import os, socket
        print(os.getpid(), flush=True)
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "socket", lambda e: e["family"] == "packet", pid=pid)
    assert ev["type"] == "raw" and ev["protocol"] == socket.htons(3) and ev["result"] >= 0
    ev = find_event(d, "socket", lambda e: e["family"] == "inet", pid=pid)
    assert ev["type"] == "raw" and ev["protocol"] == socket.IPPROTO_ICMP
    absent(d, "socket", lambda e: e["type"] in ("dgram", "stream"), pid=pid)


def test_socket_duplicated_onto_stdio(d):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    code = textwrap.dedent(f"""
        import os, socket
        print(os.getpid(), flush=True)
        s = socket.create_connection(("127.0.0.1", {port}))
        keep = os.dup(0)
        os.dup2(s.fileno(), 0)
        os.dup2(keep, 0)          # a file onto 0: not an event
        os.dup2(s.fileno(), 9)    # a socket onto another fd: not an event
    """)
    try:
        pid = int(run_py(code).stdout)
        conn, _ = srv.accept()
        conn.close()
    finally:
        srv.close()
    ev = find_event(d, "dup", lambda e: e["newfd"] == 0, pid=pid)
    assert ev["protocol"] == "tcp" and ev["remote_ip"] == "127.0.0.1"
    assert ev["remote_port"] == port and ev["result"] == 0
    absent(d, "dup", lambda e: e["newfd"] == 9 or e["oldfd"] != ev["oldfd"], pid=pid)


def test_io_uring_setup(d):
    code = textwrap.dedent("""
        import ctypes, os
        print(os.getpid(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        fd = libc.syscall(425, 8, params)       # io_uring_setup(8, &params)
        print(fd, flush=True)
    """)
    out = run_py(code).stdout.split()
    pid, fd = int(out[0]), int(out[1])
    ev = find_event(d, "kernel", lambda e: e["call"] == "io_uring_setup", pid=pid)
    assert ev["request"] == 8 and ev["result"] == fd


def test_signal_at_spyderd_is_an_event_whatever_kill_signals_says(d):
    victim = subprocess.Popen(["sleep", "30"])
    code = textwrap.dedent(f"""
        import os, signal
        print(os.getpid(), flush=True)
        os.kill({d.proc.pid}, signal.SIGCONT)
        os.kill({victim.pid}, signal.SIGCONT)   # not in capture.kill_signals: no event
        os.kill({victim.pid}, signal.SIGKILL)
    """)
    pid = int(run_py(code).stdout)
    victim.wait()
    ev = find_event(d, "kernel", lambda e: e["target_pid"] == d.proc.pid, pid=pid)
    assert ev["call"] == "kill" and ev["request"] == signal.SIGCONT
    assert ev["target_spyderd"] is True and ev["target_name"]
    ev = find_event(d, "kernel", lambda e: e["target_pid"] == victim.pid, pid=pid)
    assert ev["request"] == signal.SIGKILL and ev["target_spyderd"] is False
    assert ev["target_name"] in ("", "sleep")  # read after the kill: may already be gone
    absent(d, "kernel", lambda e: e["target_pid"] == victim.pid and e["request"] == 18,
           pid=pid)


def test_sigkill_of_spyderd_is_named_at_the_next_start(tmp_path, journald, loader):
    base = tmp_path / "killed"
    base.mkdir()
    first = start_daemon(base, {"disable": ["files", "creds", "network"]}, loader=loader)
    try:
        killer = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import os, signal
            print(os.getpid(), flush=True)
            os.kill({first.proc.pid}, signal.SIGKILL)
        """)], capture_output=True, text=True, check=True)
        assert first.proc.wait(30) == -signal.SIGKILL
        killer_pid = int(killer.stdout)
        pinned = tamper.pin_path(str(first.state))
        assert pinned.exists()
        second = start_daemon(base, {"disable": ["files", "creds", "network"]}, loader=loader)
        try:
            want = f"was sent signal 9 by python[{killer_pid}] (uid 0)"
            assert wait_for(lambda: want in second.log.read_text(), 15), \
                second.log.read_text()[-2000:]
            assert pinned.exists()  # the new daemon's map, in place of the old one
        finally:
            second.stop()
        assert second.proc.wait(30) == 0
        assert "last signal received: 15 from python" in second.log.read_text()
        assert not pinned.exists()  # a clean stop leaves nothing behind
    finally:
        first.stop()

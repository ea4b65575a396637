"""Network events on the real kernel (loopback and a network namespace made here), read back
with `spyderctl events`."""

from __future__ import annotations

import errno
import os
import socket
import textwrap

import pytest
from capture_support import (
    absent,
    events,
    find_event,
    netns_inode,
    run_py,
    start_daemon,
    status,
)

pytestmark = pytest.mark.root
UDP_PORTS = [53, 15353, 15355]  # capture.udp_ports for this module's daemon


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    daemon = start_daemon(tmp_path_factory.mktemp("netd"), {"udp_ports": UDP_PORTS}, loader=loader)
    yield daemon
    daemon.stop()


def test_tcp_connect_accept_listen_ipv4(d):
    host_ns = netns_inode()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    code = textwrap.dedent(f"""
        import os, socket
        print(os.getpid(), flush=True)
        c = socket.create_connection(("127.0.0.1", {port}))
        print(c.getsockname()[1], flush=True)
    """)
    pid, cport = map(int, run_py(code).stdout.split())
    conn, _ = srv.accept()
    conn.close()
    srv.close()
    ev = find_event(d, "connect", lambda e: e["remote_port"] == port, pid=pid)
    assert ev["result"] == 0 and ev["family"] == 4
    assert ev["remote_ip"] == "127.0.0.1" and ev["local_ip"] == "127.0.0.1"
    assert ev["local_port"] == cport
    assert ev["netns"] == host_ns
    ev = find_event(d, "accept", lambda e: e["local_port"] == port, pid=os.getpid())
    assert ev["remote_port"] == cport and ev["remote_ip"] == "127.0.0.1"
    assert ev["netns"] == host_ns
    ev = find_event(d, "listen", lambda e: e["local_port"] == port, pid=os.getpid())
    assert ev["local_ip"] == "127.0.0.1" and ev["netns"] == host_ns


def test_tcp_connect_refused_ipv6(d):
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    code = textwrap.dedent(f"""
        import os, socket
        print(os.getpid(), flush=True)
        c = socket.socket(socket.AF_INET6)
        try:
            c.connect(("::1", {port}))
        except ConnectionRefusedError:
            pass
    """)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "connect", lambda e: e["remote_port"] == port, pid=pid)
    assert ev["result"] == -errno.ECONNREFUSED
    assert ev["family"] == 6 and ev["remote_ip"] == "::1"


def test_bind_tcp_udp_ephemeral_and_failure(d):
    code = textwrap.dedent("""
        import os, socket
        print(os.getpid(), flush=True)
        t = socket.socket(); t.bind(("127.0.0.1", 0)); print(t.getsockname()[1], flush=True)
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::1", 0))
        print(u.getsockname()[1], flush=True)
        t2 = socket.socket(socket.AF_INET6)
        try:
            t2.bind(("::1", u.getsockname()[1])); t3 = socket.socket(socket.AF_INET6)
            t3.bind(("::1", u.getsockname()[1]))
        except OSError:
            pass
    """)
    pid, tport, uport = map(int, run_py(code).stdout.split())
    ev = find_event(d, "bind", lambda e: e["protocol"] == "tcp" and e["family"] == 4, pid=pid)
    assert ev["local_port"] == tport and ev["local_ip"] == "127.0.0.1" and ev["result"] == 0
    assert ev["netns"] == netns_inode()
    ev = find_event(d, "bind", lambda e: e["protocol"] == "udp", pid=pid)
    assert ev["local_port"] == uport and ev["local_ip"] == "::1" and ev["family"] == 6
    ev = find_event(d, "bind", lambda e: e["result"] != 0, pid=pid)
    assert ev["result"] == -errno.EADDRINUSE and ev["local_port"] == uport


def test_udp_destinations_dns_and_filters(d):
    code = textwrap.dedent("""
        import os, socket
        print(os.getpid(), flush=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"q", ("127.0.0.1", 15353))
        s.sendto(b"q", ("127.0.0.1", 15353))          # a repeat: folded in the kernel
        s.sendto(b"q", ("127.0.0.1", 15354))          # not in capture.udp_ports
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.sendmsg([b"q"], [], 0, ("::1", 15355))
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.connect(("127.0.0.53", 53))                 # how glibc's resolver reaches DNS
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.sendto(b"q", ("255.255.255.255", 53))    # no SO_BROADCAST: EACCES
        except PermissionError:
            pass
    """)
    before = status(d)["kernel_counters"].get("udp_repeats", 0)
    pid = int(run_py(code).stdout)
    ev = find_event(d, "udp", lambda e: e["remote_port"] == 15353, pid=pid)
    assert ev["call"] == "sendto" and ev["remote_ip"] == "127.0.0.1" and ev["result"] == 0
    assert ev["family"] == 4 and ev["netns"] == netns_inode()
    ev = find_event(d, "udp", lambda e: e["call"] == "sendmsg", pid=pid)
    assert ev["remote_ip"] == "::1" and ev["remote_port"] == 15355 and ev["family"] == 6
    ev = find_event(d, "udp", lambda e: e["call"] == "connect", pid=pid)
    assert ev["remote_ip"] == "127.0.0.53" and ev["remote_port"] == 53 and ev["result"] == 0
    ev = find_event(d, "udp", lambda e: e["remote_ip"] == "255.255.255.255", pid=pid)
    assert ev["result"] == -errno.EACCES
    absent(d, "udp", lambda e: e["remote_port"] == 15354, pid=pid, settle=0)
    assert len([e for e in events(d, "udp", pid) if e["remote_port"] == 15353]) == 1
    assert status(d)["kernel_counters"]["udp_repeats"] > before


def test_unix_connect_path_abstract_and_failure(d, tmp_path):
    path = tmp_path / "spyder.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()
    code = textwrap.dedent(f"""
        import os, socket
        print(os.getpid(), flush=True)
        socket.socket(socket.AF_UNIX).connect({str(path)!r})
        try:
            socket.socket(socket.AF_UNIX).connect("\\0spyder-abstract-none")
        except ConnectionRefusedError:
            pass
    """)
    pid = int(run_py(code).stdout)
    srv.close()
    ev = find_event(d, "unix_connect", lambda e: e["path"] == str(path), pid=pid)
    assert ev["result"] == 0
    ev = find_event(d, "unix_connect", lambda e: e["path"].startswith("@"), pid=pid)
    assert ev["path"] == "@spyder-abstract-none"
    assert ev["result"] == -errno.ECONNREFUSED


def test_connect_in_own_network_namespace_carries_its_netns(d):
    code = textwrap.dedent("""
        import ctypes, fcntl, os, socket, struct
        assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0  # CLONE_NEWNET
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x40, b""))  # lo up
        print(os.getpid(), os.stat("/proc/self/ns/net").st_ino, flush=True)
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        c = socket.create_connection(srv.getsockname())
        print(srv.getsockname()[1], flush=True)
    """)
    pid, ns, port = map(int, run_py(code).stdout.split())
    assert ns != netns_inode()
    ev = find_event(d, "connect", lambda e: e["remote_port"] == port, pid=pid)
    assert ev["netns"] == ns and ev["result"] == 0
    ev = find_event(d, "listen", lambda e: e["local_port"] == port, pid=pid)
    assert ev["netns"] == ns

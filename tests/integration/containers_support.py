"""Helpers for the real-container tests: network namespaces, a listener, busybox bundles.

Addresses live only in namespaces these helpers create (10.199.<n>.0/30); the machine's
own network namespace is never touched. Everything made here is removed on exit, even
when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import wait_for

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "nc", "sleep", "cat", "echo", "ls", "id", "true")

LISTENER = r"""
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4)
print("ready", os.getpid(), flush=True)
s.settimeout(60)
c, addr = s.accept()
data = c.recv(100)
c.sendall(b"ok\n")
c.close()
print("peer", addr[0], addr[1], data.decode().strip(), flush=True)
sys.stdin.read()  # stay (and keep the namespace inhabited) until the test is done
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}: {r.stderr}")
    return r


def subnet_index() -> int:
    return 1 + os.getpid() % 200


@contextmanager
def netns(name: str):
    """A named network namespace with loopback up; deleted on exit."""
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def veth(host_ns: str, host_if: str, peer_if: str, peer_target: str, n: int) -> tuple[str, str]:
    """A veth pair from `host_ns` to `peer_target` (a netns name or a pid), addressed /30."""
    host_ip, peer_ip = f"10.199.{n}.1", f"10.199.{n}.2"
    run("ip", "-n", host_ns, "link", "add", host_if, "type", "veth", "peer", "name", peer_if,
        "netns", peer_target)
    run("ip", "-n", host_ns, "addr", "add", f"{host_ip}/30", "dev", host_if)
    run("ip", "-n", host_ns, "link", "set", host_if, "up")
    return host_ip, peer_ip


class Listener:
    """A TCP listener in a network namespace, as its own process (not the test's)."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, ip, str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["ready"], self.proc.stderr.read()
        self.pid = int(line[1])
        self.port = port

    def wait_peer(self) -> tuple[str, int, str]:
        """(peer ip, peer port, what it sent); the listener gives up after 60 s."""
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["peer"], f"no connection reached the listener: {line}"
        return line[1], int(line[2]), " ".join(line[3:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def busybox_rootfs(root: Path) -> Path:
    """A rootfs with a static busybox and its applets (busybox-static)."""
    (root / "bin").mkdir(parents=True)
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    return root


def runc_bundle(bundle: Path, args: list[str], netns_path: str,
                annotations: dict[str, str]) -> Path:
    """`runc spec`, then: no terminal, our command, a given netns, our annotations."""
    busybox_rootfs(bundle / "rootfs")
    run("runc", "spec", "--bundle", str(bundle))
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["root"]["readonly"] = True
    cfg["hostname"] = "spyder-ctr"
    ns = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["linux"]["namespaces"] = [*ns, {"type": "network", "path": netns_path}]
    cfg["annotations"] = annotations
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    return bundle


def events(d, kind: str) -> list[dict]:
    r = d.ctl("events", "--kind", kind, "-o", "json", check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def exec_with_args(d, args: list[str], timeout: float = 20) -> dict:
    """The exec event whose argv is exactly `args` (waits for spyderd to store it)."""
    def find():
        hits = [e for e in events(d, "exec") if e.get("args") == args]
        return hits[-1] if hits else None

    ev = wait_for(find, timeout)
    assert ev, f"no exec of {args} stored by spyderd:\n" + d.log.read_text()[-3000:]
    return ev


def trace_of(d, pid: int, ready, timeout: float = 20) -> dict:
    """`spyderctl trace --pid PID -o json`, polled until `ready(trace)` holds."""
    last: dict = {}

    def get():
        nonlocal last
        r = d.ctl("trace", "--pid", str(pid), "-o", "json")
        if r.returncode != 0:
            return None
        last = json.loads(r.stdout)
        return last if ready(last) else None

    got = wait_for(get, timeout, interval=0.5)
    assert got, "trace never complete:\n" + json.dumps(last, indent=1)[:6000]
    return got


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def kill_tree_wait(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.kill()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)

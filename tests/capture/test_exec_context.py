"""What an exec carries beyond argv (issue 11), on the real kernel, read back with
`spyderctl events -o json` and `spyderctl query`: watched environment variables, fds 0/1/2
(tty, /dev/null, file, pipe with the process at the other end, socket 4-tuple), the script
an interpreter runs, and the effective capabilities."""

from __future__ import annotations

import json
import os
import pty
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from capture_support import find_event, start_daemon
from conftest import wait_for

pytestmark = pytest.mark.root
TRUE = "/bin/true"


@pytest.fixture(scope="module")
def d(tmp_path_factory, journald, loader):
    daemon = start_daemon(tmp_path_factory.mktemp("execctx"),
                          {"disable": ["files", "kernel", "creds"]}, loader=loader)
    yield daemon
    daemon.stop()


def exec_of(d, pid: int, filename: str = TRUE) -> dict:
    return find_event(d, "exec", lambda e: e["filename"] == filename, pid=pid, timeout=60)


def test_watched_environment_variables_only(d):
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/nonexistent/spyder-evil.so",
           "HISTFILE": "/dev/null", "HISTFILESIZE": "0", "LD_PRELOADX": "not-watched",
           "SPYDER_OTHER": "x" * 300}
    p = subprocess.Popen([TRUE], env=env, stderr=subprocess.DEVNULL)
    p.wait()
    ev = exec_of(d, p.pid)
    assert ev["env"] == {"LD_PRELOAD": "/nonexistent/spyder-evil.so", "HISTFILE": "/dev/null",
                         "HISTFILESIZE": "0"}
    plain = subprocess.Popen([TRUE], env={"PATH": "/bin", "HISTFILE": ""})
    plain.wait()
    assert exec_of(d, plain.pid)["env"] == {"HISTFILE": ""}  # set but empty: still seen


def test_stdio_null_file_and_tty(d, tmp_path):
    out = tmp_path / "out.txt"
    master, slave = pty.openpty()
    try:
        with out.open("w") as f:
            p = subprocess.Popen([TRUE], stdin=subprocess.DEVNULL, stdout=f, stderr=slave)
            p.wait()
        tty = os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)
    stdin, stdout, stderr = exec_of(d, p.pid)["stdio"]
    assert stdin == {"type": "null", "path": "/dev/null"}
    assert stdout == {"type": "file", "path": str(out)}
    assert stderr == {"type": "tty", "path": tty}


def test_stdio_socket_four_tuple(d):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, peer = srv.accept()
    try:
        p = subprocess.Popen([TRUE], stdin=conn, stdout=subprocess.DEVNULL)
        p.wait()
    finally:
        for s in (cli, conn, srv):
            s.close()
    stdin = exec_of(d, p.pid)["stdio"][0]
    assert stdin == {"type": "socket", "protocol": "tcp", "inode": stdin["inode"],
                     "local_ip": "127.0.0.1", "local_port": port,
                     "remote_ip": "127.0.0.1", "remote_port": peer[1]}


def test_pipe_ends_joined_in_the_graph(d):
    tag = uuid.uuid4().hex[:8]
    writer = subprocess.Popen(["/bin/echo", f"spyder-pipe-{tag}"], stdout=subprocess.PIPE)
    reader = subprocess.Popen(["/bin/cat"], stdin=writer.stdout, stdout=subprocess.DEVNULL)
    writer.stdout.close()
    writer.wait()
    reader.wait()
    w = exec_of(d, writer.pid, "/bin/echo")["stdio"][1]
    r = exec_of(d, reader.pid, "/bin/cat")["stdio"][0]
    assert w["type"] == r["type"] == "pipe" and w["pipe"] == r["pipe"]
    cond = (f'process.name = cat and process.stdin.type = pipe and process.stdin.peer = echo '
            f'and pipe_writer(process.cmdline contains "spyder-pipe-{tag}")')
    hits = wait_for(lambda: d.ctl("query", cond, "--since", "-5min", "-o", "json",
                                  check=True).stdout.strip(), 15)
    rows = [json.loads(x) for x in hits.splitlines()]
    assert {r["process"]["pid"] for r in rows} == {reader.pid}
    back = f'process.name = echo and pipe_reader(process.name = cat and process.pid = {reader.pid})'
    assert d.ctl("query", back, "--since", "-5min", "-o", "json", check=True).stdout.strip()


def test_script_run_by_interpreter(d, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("exit 0\n")
    p = subprocess.Popen(["/bin/bash", "-e", "job.sh", "arg"], cwd=tmp_path)
    p.wait()
    assert exec_of(d, p.pid, "/bin/bash")["script"] == str(script)
    shebang = tmp_path / "run-me"
    shebang.write_text("#!/bin/sh\nexit 0\n")
    shebang.chmod(0o755)
    q = subprocess.Popen([str(shebang)])
    q.wait()
    ev = exec_of(d, q.pid, str(shebang))
    assert ev["script"] == str(shebang) and ev["interpreter"] == "/bin/sh"
    inline = subprocess.Popen(["/bin/sh", "-c", "exit 0"])
    inline.wait()
    assert exec_of(d, inline.pid, "/bin/sh")["script"] == ""


def test_effective_capabilities(d):
    p = subprocess.Popen([TRUE])
    p.wait()
    caps = int(next(line.split()[1] for line in Path("/proc/self/status").read_text()
                    .splitlines() if line.startswith("CapEff:")), 16)
    assert exec_of(d, p.pid)["cap_effective"] == caps
    nobody = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               TRUE])
    nobody.wait()
    assert exec_of(d, nobody.pid)["cap_effective"] == 0
    cond = f"process.pid = {p.pid} and process.caps contains CAP_SYS_ADMIN"
    assert wait_for(lambda: d.ctl("query", cond, "--since", "-5min", check=True)
                    .stdout.strip(), 15)
    assert stat.S_ISDIR(os.stat("/proc/self").st_mode)

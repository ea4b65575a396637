"""Issue 2 end to end on the real kernel: probes, graph in LMDB, rule, journald, spyderctl."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import REPO, free_port, journal_entries, wait_for

pytestmark = pytest.mark.root
RULE = "Shell spawned below a web server"


class Listener:
    """A local TCP listener that records who connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.peers: list[tuple[str, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.peers.append(addr)
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def webshell():
    listener = Listener()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "tests/integration/webshell_server.py"),
                               str(port), str(listener.port)])

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    assert wait_for(up, 10), "web server did not start"
    yield server, port, listener
    server.kill()
    server.wait()
    listener.close()


def _finding_for(server_pid: int, daemon_pid: int) -> dict | None:
    """This daemon's finding (other spyderd instances may share the journal)."""
    for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=RULE,
                             _PID=str(daemon_pid)):
        if f"[{server_pid}] >" in e.get("SPYDER_CHAIN", ""):
            return e
    return None


def test_webshell_finding_trace_and_restart(spyderd_factory, webshell):
    server, port, listener = webshell
    d = spyderd_factory()
    # The web server started before spyderd: its listening socket must come from the
    # snapshot or from capture. Restart the listener role by starting spyderd first? No:
    # a server already running is the common case, so spyderd must handle it.
    d.start()
    st = json.loads(d.ctl("status", "-o", "json", check=True).stdout)
    assert st["ready"] and st["probes"]["process"]["state"] == "attached"
    assert st["probes"]["network"]["state"] == "attached"

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
    assert body == b"rc=0\n" and listener.peers
    sent = time.monotonic()
    entry = wait_for(lambda: _finding_for(server.pid, d.proc.pid), 5)
    assert entry, "no finding in journald within 5 s:\n" + d.log.read_text()[-3000:]
    assert time.monotonic() - sent <= 5.5

    chain = entry["SPYDER_CHAIN"]
    m = re.search(rf"python[\d.]*\[{server.pid}\] > sh\[(\d+)\] > python[\d.]*\[(\d+)\]$",
                  chain)
    assert m, chain
    sh_pid, client_pid = int(m.group(1)), int(m.group(2))
    assert entry["PRIORITY"] == "3" and entry["SPYDER_SEVERITY"] == "high"
    assert re.fullmatch(r"[0-9a-f]{32}", entry["MESSAGE_ID"].replace("-", ""))
    assert entry["SPYDER_PID"] == str(sh_pid) and entry["SPYDER_EXE"].endswith("sh")
    assert "T1505.003" in entry["SPYDER_MITRE"]
    assert entry["SPYDER_CONTAINER_ID"] == ""
    chain_json = json.loads(entry["SPYDER_CHAIN_JSON"])
    assert [c["pid"] for c in chain_json][-3:] == [server.pid, sh_pid, client_pid]
    for field in ("SPYDER_FINDING_ID", "SPYDER_TRACE_ID", "SPYDER_PROCESS_ID", "SPYDER_UID",
                  "SPYDER_CMDLINE", "SPYDER_MACHINE_ID", "SPYDER_CONTAINER_NAME"):
        assert field in entry
    fid = entry["SPYDER_FINDING_ID"]

    trace = _check_trace(d, fid, server.pid, sh_pid, client_pid, listener.port)
    assert entry["SPYDER_TRACE_ID"] == trace["id"]
    tree = d.ctl("trace", fid, check=True).stdout
    assert f"sh[{sh_pid}]" in tree and f"127.0.0.1:{listener.port}" in tree and "!!" in tree

    # kill -9, start again on the same state dir: the trace is still there.
    d.kill(signal.SIGKILL)
    d.start()
    _check_trace(d, fid, server.pid, sh_pid, client_pid, listener.port)
    _check_no_self_activity(d)


def _check_trace(d, fid, server_pid, sh_pid, client_pid, target_port) -> dict:
    trace = json.loads(d.ctl("trace", fid, "-o", "json", check=True).stdout)
    assert {"id", "kind", "root", "nodes", "edges", "findings"} <= set(trace)
    by_pid = {}
    for n in trace["nodes"]:
        if n["kind"] == "process":
            by_pid.setdefault(n["pid"], []).append(n)
    server = [n for n in by_pid[server_pid] if "webshell_server.py" in " ".join(n["args"])]
    sh = [n for n in by_pid[sh_pid] if n["exe"].endswith("sh")]
    client = [n for n in by_pid[client_pid]
              if n["args"][:2] == [sys.executable, "-c"] and "create_connection" in n["args"][2]]
    assert server and sh and client, json.dumps(trace, indent=1)[:4000]
    assert sh[0]["args"][:2] == ["sh", "-c"]
    for n in (server[0], sh[0], client[0]):
        for key in ("id", "kind", "pid", "ppid", "exe", "args", "uid", "start", "end",
                    "container_id", "machine_id"):
            assert key in n
    ids = {n["id"]: n for n in trace["nodes"]}

    def reaches(src: str, dst: str) -> bool:
        """dst is below src through spawned/exec edges."""
        frontier, seen = [src], set()
        while frontier:
            cur = frontier.pop()
            for e in trace["edges"]:
                if e["src"] == cur and e["kind"] in ("spawned", "exec") and e["dst"] not in seen:
                    if e["dst"] == dst:
                        return True
                    seen.add(e["dst"])
                    frontier.append(e["dst"])
        return False

    assert any(e["kind"] == "spawned" for e in trace["edges"])
    assert reaches(server[0]["id"], sh[0]["id"]) and reaches(sh[0]["id"], client[0]["id"])
    conns = [ids[e["dst"]] for e in trace["edges"]
             if e["kind"] == "connect" and e["src"] == client[0]["id"]]
    assert any(c["remote_ip"] == "127.0.0.1" and c["remote_port"] == target_port
               and c["result"] == 0 for c in conns), conns
    assert any(f["id"] == fid for f in trace["findings"])
    return trace


def _check_no_self_activity(d) -> None:
    st = json.loads(d.ctl("status", "-o", "json", check=True).stdout)
    own = d.ctl("events", "--pid", str(st["pid"]), "-o", "json", check=True).stdout
    assert own.strip() == "", own[:500]
    mine = [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", _PID=str(st["pid"]))
            if e.get("SPYDER_PID") == str(st["pid"])]  # this daemon's findings about itself
    assert mine == []


def test_check_reports_rule_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- rule: Broken\n"
        "  description: a rule with a syntax error\n"
        "  event: exec\n"
        "  condition: process.name = \"sh\" and and ancestor(process.name = \"nginx\")\n"
        "  severity: high\n"
        "  output: broken {process.name}\n")
    r = subprocess.run([sys.executable, "-m", "spyderd", "--check", "--rules", str(bad)],
                       cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert re.search(rf"{re.escape(str(bad))}:4:\d+:", r.stderr), r.stderr
    assert "expected" in r.stderr.lower(), r.stderr

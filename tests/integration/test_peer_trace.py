"""Issue 3: a trace crosses from one process tree into another through a peer edge."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import free_port, wait_for

pytestmark = pytest.mark.root

SERVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4)
print("up", flush=True)
c, _ = s.accept(); c.recv(10); time.sleep(1)
"""
CLIENT = """
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); c.send(b"hi"); time.sleep(1)
"""


def test_client_trace_reaches_server_through_peer_edge(spyderd_factory):
    d = spyderd_factory()
    d.start()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout.readline().strip() == "up"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port)])
    client.wait(10)
    server.wait(10)
    time.sleep(1.0)  # one batch delay: the daemon commits every 0.5 s

    def trace():
        r = d.ctl("trace", "--pid", str(client.pid), "-o", "json")
        if r.returncode != 0:
            return None
        t = json.loads(r.stdout)
        return t if any(n["pid"] == server.pid for n in t["nodes"]) else None

    t = wait_for(trace, 5)
    assert t, d.ctl("trace", "--pid", str(client.pid)).stdout
    nodes = {n["id"]: n for n in t["nodes"]}
    server_img = [n for n in t["nodes"] if n["pid"] == server.pid and n["kind"] == "process"]
    assert server_img and "-c" in server_img[-1]["args"]
    peers = [e for e in t["edges"] if e["kind"] == "peer"]
    assert peers, t["edges"]
    ends = {nodes[e["src"]]["direction"] for e in peers} | {nodes[e["dst"]]["direction"]
                                                          for e in peers}
    assert ends == {"in", "out"}
    out_conn = next(n for n in t["nodes"] if n["kind"] == "connection"
                    and n["direction"] == "out" and n["remote_port"] == port)
    assert nodes[out_conn["process_id"]]["pid"] == client.pid
    in_conn = next(nodes[e["dst"]] for e in peers if e["src"] == out_conn["id"])
    assert nodes[in_conn["process_id"]]["pid"] == server.pid
    tree = d.ctl("trace", "--pid", str(client.pid), check=True).stdout
    assert f"[{server.pid}])" in tree  # "(peer python3[<server pid>])" on the connection line

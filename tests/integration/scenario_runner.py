"""Run commands (a JSON list of argv lists, no shell) one after another, after listening on a
loopback port: the runner is a network server, so whatever it runs is a trace of its own.
Test helper for trace_scenarios.scenario()."""

import json
import socket
import subprocess
import sys

s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
for argv in json.loads(sys.argv[1]):
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
print("done", flush=True)

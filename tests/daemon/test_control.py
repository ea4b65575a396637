"""The control socket: requests, following, refusal of peers outside root/spyder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from spyderd.common import access
from spyderd.daemon import control
from spyderd.errors import NotRunningError

CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'{"op": "status"}\\n')
print(s.makefile().readline().strip())
"""


class Served:
    """A ControlServer pumped from a background thread, as the daemon loop would."""

    def __init__(self, run_dir, handlers, gid=None) -> None:
        self.server = control.ControlServer(run_dir, handlers, gid)
        self.server.start()
        self.stop = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while not self.stop:
            with self.lock:
                self.server.service(0)
            time.sleep(0.01)

    def publish(self, topic, item) -> None:
        with self.lock:
            self.server.publish(topic, item)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.server.close()


@pytest.fixture
def served(tmp_path):
    made = []

    def make(handlers=None, gid=None) -> Served:
        s = Served(tmp_path, handlers or {"status": lambda req: {"ok": True, "status": {"x": 1}}},
                   gid)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_request_answer_and_errors(tmp_path, served):
    def boom(req):
        raise RuntimeError("bug")

    s = served({"status": lambda req: {"ok": True, "status": {"ready": True}}, "boom": boom})
    assert control.request(tmp_path, "status") == {"ok": True, "status": {"ready": True}}
    assert "internal error: RuntimeError: bug" in control.request(tmp_path, "boom")["error"]
    assert "unknown op 'nope'" in control.request(tmp_path, "nope")["error"]
    assert s.server.stats["requests"] == 3
    mode = os.stat(tmp_path / "control.sock").st_mode & 0o777
    assert mode == 0o660


def test_follow_gets_published_items_and_a_slow_reader_never_blocks(tmp_path, served):
    s = served()
    it = control.follow(tmp_path, ["findings"])
    s.publish("traces", {"id": "trc-ignored"})
    s.publish("findings", {"id": "fnd-1"})
    assert next(it) == {"topic": "findings", "item": {"id": "fnd-1"}}
    # a follower that stops reading is dropped once a megabyte is queued; the server goes on
    stuck = control.follow(tmp_path, ["findings"])
    big = {"blob": "x" * 65536}
    for _ in range(40):
        s.publish("findings", big)
    assert s.server.stats["followers_dropped"] >= 1
    assert control.request(tmp_path, "status")["ok"]
    del stuck


def test_no_daemon_is_not_running(tmp_path):
    with pytest.raises(NotRunningError, match="spyderd is not running"):
        control.request(tmp_path, "status")


@pytest.fixture
def open_dir():
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="spyder-ctl-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d)


@pytest.mark.root
def test_peers_outside_root_and_spyder_are_refused(open_dir):
    gid = access.group_id()
    assert gid is not None, "the spyder group must exist (packaging/install.sh creates it)"
    s = Served(open_dir, {"status": lambda req: {"ok": True}}, gid)
    tmp_path = open_dir
    os.chmod(tmp_path / "control.sock", 0o666)  # let the file mode pass: SO_PEERCRED decides

    def as_user(*setpriv):
        out = subprocess.run(["setpriv", "--reuid=65534", *setpriv, sys.executable, "-c", CLIENT,
                              str(tmp_path / "control.sock")], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return json.loads(out)

    refused = as_user("--regid=65534", "--clear-groups")
    assert not refused["ok"] and refused["error"].startswith("permission denied")
    assert "uid 65534 is neither root nor in group 'spyder'" in refused["error"]
    assert as_user("--regid=65534", f"--groups={gid}")["ok"]  # supplementary group
    assert as_user(f"--regid={gid}", "--clear-groups")["ok"]  # primary group
    assert s.server.stats["rejected"] == 1
    s.close()

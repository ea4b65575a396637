"""The control socket under hostile local clients: malformed JSON, huge bodies, slow and
idle clients, too many connections. The daemon's loop never raises and keeps answering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spyderd.daemon import control

pytestmark = pytest.mark.root  # SO_PEERCRED as root; one test switches to nobody


class Pumped:
    """A ControlServer serviced from a thread, as the daemon loop does."""

    def __init__(self, run_dir, **kw) -> None:
        self.server = control.ControlServer(run_dir, {"status": lambda req: {"ok": True}},
                                            None, **kw)
        self.server.start()
        self.errors: list[BaseException] = []
        self.stop = False
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while not self.stop:
            try:
                self.server.service(0.01)
            except BaseException as exc:  # noqa: BLE001 - the test asserts there are none
                self.errors.append(exc)
                return

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.server.close()


@pytest.fixture(scope="module")
def pumped(tmp_path_factory):
    p = Pumped(tmp_path_factory.mktemp("ctl"), request_timeout=0.5, reply_timeout=0.5)
    yield p
    p.close()


def ask(path, payload: bytes, timeout: float = 5) -> dict | None:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(payload)
        line = s.makefile("rb").readline()
    except (BrokenPipeError, ConnectionResetError):
        return None
    finally:
        s.close()
    return json.loads(line) if line else None


def healthy(p: Pumped) -> None:
    assert not p.errors, p.errors
    assert ask(p.server.path, b'{"op": "status"}\n') == {"ok": True}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
                 lambda c: st.one_of(st.lists(c, max_size=3),
                                     st.dictionaries(st.sampled_from(["op", "topics", "x"]), c,
                                                     max_size=3)), max_leaves=8)
    .map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"op": []}', b'{"op": "follow", "topics": 5}', b"[" * 40_000,
                     b'{"op": "follow", "topics": [[]]}', b'{"op": "\xff"}',
                     b'{"op": "nope"}'])))
def test_malformed_requests_get_an_answer_not_an_exception(pumped, body):
    body = body.replace(b"\n", b" ") + b"\n"
    answer = ask(pumped.server.path, body)
    if answer is not None and answer.get("topics") is not None:
        return  # a well-formed follow request: accepted
    assert answer is None or isinstance(answer.get("ok"), bool)
    assert not pumped.errors, pumped.errors


def test_huge_body_is_refused(pumped):
    answer = ask(pumped.server.path, b"x" * (control.MAX_REQUEST + 70_000))
    assert answer == {"ok": False, "error": "request too long"} or answer is None
    healthy(pumped)


def test_slow_and_idle_clients_are_dropped(pumped):
    before = pumped.server.stats["timeouts"]
    idle = []
    for _ in range(control.MAX_CONNECTIONS + 8):  # more than the limit, all silent
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(pumped.server.path))
        idle.append(s)
    drip = socket.socket(socket.AF_UNIX)
    drip.connect(str(pumped.server.path))
    for ch in b'{"op": ':  # one byte at a time, slower than the request timeout allows
        try:
            drip.send(bytes([ch]))
        except OSError:
            break
        time.sleep(0.1)
    time.sleep(1.0)
    assert pumped.server.stats["timeouts"] > before
    assert len(pumped.server.conns) <= 1
    healthy(pumped)  # the slots came back
    for s in [*idle, drip]:
        s.close()


def test_a_user_cannot_take_every_slot():
    """Connections per user other than root are limited; root keeps slots of its own."""
    run = Path(tempfile.mkdtemp(prefix="spyderd-ctl-"))  # nobody must reach the socket
    os.chmod(run, 0o755)
    p = Pumped(run, request_timeout=30, reply_timeout=30)
    os.chmod(p.server.path, 0o777)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a local user (nobody) opening as many connections as it can
        os.close(r)
        os.setgid(65534)
        os.setuid(65534)
        held = []
        try:
            for _ in range(control.MAX_CONNECTIONS):
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(p.server.path))
                held.append(s)
            os.write(w, b"x")
        except OSError as exc:
            os.write(w, str(exc).encode())
        time.sleep(3)
        os._exit(0)
    os.close(w)
    assert os.read(r, 200) == b"x"
    time.sleep(0.3)
    try:
        mine = [c for c in p.server.conns.values() if c.peer[1] == 65534]
        assert 0 < len(mine) <= control.MAX_PER_UID
        assert p.server.stats["refused_busy"] >= control.MAX_CONNECTIONS - control.MAX_PER_UID
        healthy(p)  # root still gets in
    finally:
        os.waitpid(pid, 0)
        os.close(r)
        p.close()
        shutil.rmtree(run, ignore_errors=True)

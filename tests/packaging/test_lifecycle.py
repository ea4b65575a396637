"""The service contract without systemd: sd_notify messages (READY=1 after the probes are
attached, STATUS=, WATCHDOG=1, STOPPING=1), SIGTERM -> exit 0 with a clean-stop marker, and
the capture-gap report in journald after a clean and after an unclean stop.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from conftest import REPO, Spyderd, journal_entries, wait_for

from spyderd.capture.registry import probes
from spyderd.daemon import service


class Meta(dict):
    """An in-memory stand-in for Store's meta database."""

    def get_meta(self, key):
        return self.get(key)

    def put_meta(self, key, value):
        self[key] = json.loads(json.dumps(value))


def test_gap_after_clean_and_unclean_stop():
    m = Meta()
    assert service.report_gap(m, 100.0) is None  # fresh store: first start
    service.mark_running(m, 100.0)
    service.mark_alive(m, 130.0)
    gap = service.report_gap(m, 142.5)  # no mark_stopped: crashed after 130
    assert gap and not gap.clean and gap.seconds == 12.5
    last = m[service.META_LAST_GAP]
    assert {k: last[k] for k in ("from", "to", "seconds", "clean")} == {
        "from": 130.0, "to": 142.5, "seconds": 12.5, "clean": False}
    assert not last.get("sender")  # nobody was seen signalling the daemon
    service.mark_running(m, 143.0)
    service.mark_stopped(m, 150.0)
    gap = service.report_gap(m, 151.0)
    assert gap and gap.clean and gap.seconds == 1.0


def test_watchdog_interval_is_half_watchdogsec_at_most_one_second(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert service.watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert service.watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    assert service.watchdog_interval() == 0.5
    monkeypatch.setenv("WATCHDOG_USEC", "junk")
    assert service.watchdog_interval() == 1.0


def test_stderr_is_journal_only_for_the_matching_stream(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not service.stderr_is_journal()
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not service.stderr_is_journal()


class Notify:
    """The datagram socket systemd would give a Type=notify service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.messages


def _config(tmp_path: Path) -> Path:
    """The shipped config with only the process probe: lifecycle, not capture, is tested."""
    others = [p.name for p in probes() if p.name != "process"]
    text = (REPO / "packaging/spyderd.yaml").read_text()
    assert "  disable: []\n" in text
    cfg = tmp_path / "spyderd.yaml"
    cfg.write_text(text.replace("  disable: []\n", f"  disable: [{', '.join(others)}]\n"))
    return cfg


def _gap_entry(pid: int, message_id: str) -> dict | None:
    found = journal_entries(MESSAGE_ID=message_id, _PID=str(pid))
    return found[-1] if found else None


@pytest.mark.root
def test_notify_stop_and_gap_reports(tmp_path, journald):
    from spyderd.graph import Store

    d = Spyderd(tmp_path, [str(REPO / "rules")], config=_config(tmp_path))
    n = Notify(tmp_path / "notify.sock")
    d.env.update(NOTIFY_SOCKET=str(n.path), WATCHDOG_USEC="2000000")
    try:
        d.start()
        assert wait_for(lambda: "READY=1" in n.drain(), 10), n.messages
        st = json.loads((d.run / "status.json").read_text())
        assert st["ready"] and st["probes"]["process"]["state"] == "attached", st
        # The loop: STATUS= with the rate and losses, WATCHDOG=1 every second.
        assert wait_for(lambda: n.drain().count("WATCHDOG=1") >= 2, 10), n.messages
        assert any(m.startswith("STATUS=capturing: ") and "events/s" in m and " lost" in m
                   for m in n.messages), n.messages
        assert d.kill(signal.SIGTERM) == 0
        assert "STOPPING=1" in n.drain() and "WATCHDOG_USEC=600000000" in n.messages
        store = Store(d.state, readonly=True)
        assert store.get_meta(service.META_CLEAN_STOP) is True
        store.close()

        d.start()  # after a clean stop: info
        clean = wait_for(lambda: _gap_entry(d.proc.pid, service.MSG_GAP_CLEAN), 10)
        assert clean and clean["PRIORITY"] == "6" and clean["SPYDER_GAP_CLEAN"] == "1", clean
        assert d.kill(signal.SIGKILL) == -signal.SIGKILL

        d.start()  # after kill -9: warning with the gap
        unclean = wait_for(lambda: _gap_entry(d.proc.pid, service.MSG_GAP_UNCLEAN), 10)
        assert unclean and unclean["PRIORITY"] == "4", unclean
        assert float(unclean["SPYDER_GAP_SECONDS"]) > 0
        assert unclean["MESSAGE"].startswith("capture was down for ")
        st = json.loads((d.run / "status.json").read_text())
        assert st["capture_gap"]["clean"] is False and st["capture_gap"]["seconds"] > 0
    finally:
        d.stop()

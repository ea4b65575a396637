"""The journal follower: which entries become alerts, and how they find their process."""

from __future__ import annotations

from datetime import UTC, datetime

from spyderd.capture.journal import RETRY_ROUNDS, JournalFollower
from spyderd.model import Node


class FakeReader:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def process(self) -> int:
        return 0

    def get_next(self) -> dict:
        return self.entries.pop(0) if self.entries else {}

    def close(self) -> None:
        pass


def entry(**kw) -> dict:
    base = {"MESSAGE": "boom", "PRIORITY": 3, "_PID": 400, "_UID": 0, "_GID": 0,
            "_COMM": "app", "SYSLOG_IDENTIFIER": "app", "__CURSOR": f"c{len(kw)}",
            "__REALTIME_TIMESTAMP": datetime(2026, 1, 1, tzinfo=UTC)}
    base.update(kw)
    return base


def follower(known: dict[int, Node]) -> tuple[JournalFollower, FakeReader]:
    calls = []

    def resolve(pid, t, unit):
        calls.append((pid, t, unit))
        return known.get(pid)

    f = JournalFollower(resolve, own_pid=999)
    f._reader = FakeReader()
    f.calls = calls
    return f, f._reader


def test_alerts_attach_to_their_process_and_own_entries_are_skipped():
    proc = Node(id="proc:b:1:400", kind="process", pid=400)
    f, r = follower({400: proc})
    r.entries += [entry(MESSAGE=b"bytes \xff ok"), entry(SYSLOG_IDENTIFIER="spyderd"),
                  entry(_PID=999), entry(_PID=None, _TRANSPORT="kernel",
                                         MESSAGE="audit: apparmor=DENIED pid=400 comm=x")]
    out = f.poll()
    assert [a.process_id for a in out] == [proc.id, proc.id]
    assert out[0].message == "bytes \ufffd ok" and out[0].priority == 3
    assert out[0].time == int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e9)
    assert f.stats["skipped_own"] == 2 and f.stats["attached"] == 2


def test_unknown_process_is_retried_then_kept_unattached():
    f, r = follower({})
    r.entries.append(entry(_PID=401))
    assert f.poll() == []
    for _ in range(RETRY_ROUNDS - 1):
        assert f.poll() == []
    (late,) = f.poll()
    assert late.process_id == "" and late.pid == 401 and f.stats["unattached"] == 1
    r.entries.append(entry(_PID=None, _SYSTEMD_UNIT="", MESSAGE="no pid at all"))
    (orphan,) = f.poll()
    assert orphan.pid == 0 and f.stats["unattached"] == 2


def test_a_process_that_shows_up_late_is_attached():
    known: dict[int, Node] = {}
    f, r = follower(known)
    r.entries.append(entry(_PID=402))
    assert f.poll() == []
    known[402] = Node(id="proc:b:2:402", kind="process", pid=402)
    (a,) = f.poll()
    assert a.process_id == "proc:b:2:402" and f.status()["waiting"] == 0

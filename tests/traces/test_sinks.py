"""journald fields for findings and traces, outage accounting, the JSON-lines sink."""

from __future__ import annotations

import json
import os

from spyderd.model import Finding
from spyderd.sinks.journald import TRACE_MESSAGE_ID, JournaldSink, finding_fields, trace_fields
from spyderd.sinks.jsonl import JsonlSink

CHAIN = [{"id": "p1", "role": "root", "pid": 10, "name": "nginx", "exe": "/usr/sbin/nginx",
          "args": ["nginx"], "uid": 0, "container_id": ""},
         {"id": "p2", "role": "subject", "pid": 11, "name": "sh", "exe": "/bin/sh",
          "args": ["sh", "-c", "id; x"], "uid": 33, "user": "www-data", "container_id": "c1",
          "container_name": "web"},
         {"id": "p9", "role": "ref", "pid": 99, "name": "curl", "exe": "/usr/bin/curl",
          "args": [], "uid": 0, "container_id": ""}]


def finding(**kw) -> Finding:
    base = {"id": "fnd-1", "rule": "Shell", "severity": "high", "priority": 3,
            "message": "shell!", "time": 1, "process_id": "p2", "trace_id": "trc-1",
            "root_id": "p1", "event": {}, "tags": ["T1059.004", "web"],
            "message_id": "a" * 32, "chain": CHAIN, "count": 3}
    base.update(kw)
    return Finding(**base)


def test_finding_fields():
    f = finding_fields(finding(), "m1")
    assert f["SPYDER_CHAIN"] == "nginx[10] > sh[11]"  # the ref is in the JSON only
    assert len(json.loads(f["SPYDER_CHAIN_JSON"])) == 3
    assert (f["PRIORITY"], f["SPYDER_PID"], f["SPYDER_UID"], f["SPYDER_USER"]) == \
        ("3", "11", "33", "www-data")
    assert f["SPYDER_CMDLINE"] == "sh -c 'id; x'" and f["SPYDER_CONTAINER_NAME"] == "web"
    assert f["SPYDER_MITRE"] == "T1059.004" and f["SPYDER_COUNT"] == "3"
    assert f["MESSAGE"] == "shell! (x3)" and f["SPYDER_KIND"] == "finding"


def test_trace_fields():
    tr = {"id": "trc-1", "root": "p1", "root_kind": "inbound", "root_name": "nginx",
          "root_pid": 10, "trigger": "fnd-1", "findings": ["fnd-1", "fnd-2"],
          "rules": {"Shell": "high", "Recon": "medium"}, "score": 28, "threshold": 20,
          "priority": 3, "counts": {"processes": 4, "connections": 1, "files": 2, "alerts": 1},
          "users": ["www-data"], "containers": ["c1"], "machines": ["m1"], "first": 10**18,
          "last": 10**18 + 5 * 10**9, "mitre": ["T1059.004"]}
    f = trace_fields(tr, "m1")
    assert f["MESSAGE_ID"] == TRACE_MESSAGE_ID and f["SPYDER_KIND"] == "trace"
    assert (f["SPYDER_TRACE_SCORE"], f["SPYDER_TRACE_ROOT"], f["SPYDER_TRACE_RULES"]) == \
        ("28", "p1", "Shell,Recon")
    assert f["SPYDER_TRACE_FINDINGS"] == "fnd-1 fnd-2" and f["SPYDER_TRACE_FILES"] == "2"
    assert f["SPYDER_TRACE_FIRST"] == "2001-09-09T01:46:40.000Z"
    assert "scored 28 (threshold 20): 2 rules (Shell, Recon)" in f["MESSAGE"]
    assert f["PRIORITY"] == "3"


def test_journald_outage_is_counted_and_logged_once(caplog):
    caplog.set_level("INFO", logger="spyderd.sinks")
    calls = []

    def send(**fields):
        calls.append(fields)
        if state["down"]:
            raise ConnectionRefusedError(111, "Connection refused")

    state = {"down": True}
    sink = JournaldSink("m1", send=send)
    assert not sink.send(finding()) and not sink.send(finding(id="fnd-2"))
    assert sink.errors == 2 and sink.down and "unreachable" in sink.last_error
    assert sum("journald unreachable" in r.message for r in caplog.records) == 1
    state["down"] = False
    assert sink.send(finding()) and not sink.down and sink.sent == 1
    assert any("reachable again" in r.message for r in caplog.records)


def test_jsonl_appends_and_reopens_after_rotation(tmp_path):
    path = tmp_path / "log" / "findings.jsonl"
    sink = JsonlSink(path)
    assert sink.send(finding())
    assert sink.send_trace({"id": "trc-1", "score": 5, "emitted": {"journald": 5}})
    os.rename(path, tmp_path / "rotated.jsonl")
    assert sink.send(finding(id="fnd-2"))
    old = [json.loads(line) for line in (tmp_path / "rotated.jsonl").read_text().splitlines()]
    new = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["type"], r["id"]) for r in old] == [("finding", "fnd-1"), ("trace", "trc-1")]
    assert "sent" not in old[0] and "emitted" not in old[1]
    assert [r["id"] for r in new] == ["fnd-2"]
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_jsonl_failure_is_counted(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    sink = JsonlSink(blocker / "x.jsonl")  # a path below a regular file cannot exist
    assert not sink.send(finding()) and sink.errors == 1 and sink.last_error

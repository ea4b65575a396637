"""Falco-style and Sigma-converted rules in a real spyderd on this machine's kernel.

The daemon loads only the Falco-style corpus (tests/rules/corpus/falco) and the Sigma corpus
converted by `spyderctl rules import-sigma`; harmless look-alikes of what the rules are about
run for real (loopback only, files under /var/log named by the test and removed), and each
finding must reach journald under the right rule.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import REPO, Spyderd, journal_entries, wait_for

pytestmark = pytest.mark.root
FALCO = REPO / "tests/rules/corpus/falco"
SIGMA = REPO / "tests/sigma/corpus"
LISTENER = r"""
import socket
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 31337))
srv.listen(4)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.close()
"""


@pytest.fixture(scope="module")
def daemon(journald):
    base = Path(tempfile.mkdtemp(prefix="spyder-import-"))
    sigma = base / "sigma.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "spyderd.ctl", "rules", "import-sigma", str(SIGMA), "-o",
         str(sigma)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr  # the corpus holds unsupported constructs on purpose
    assert sigma.exists() and "not converted" in r.stderr
    cfg = base / "spyderd.yaml"
    cfg.write_text("findings:\n  settle: 0.3\n")
    d = Spyderd(base, [str(FALCO), str(sigma)], cfg)
    d.start(wait=120)
    yield d
    d.stop()
    shutil.rmtree(base, ignore_errors=True)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def expect(d: Spyderd, rule: str, tag: str) -> dict:
    """The rule's finding mentioning `tag` in journald, waited for up to 60 s (a loaded
    machine delays the daemon and journald)."""

    def found() -> list[dict]:
        return [e for e in journal_entries(SYSLOG_IDENTIFIER="spyderd", SPYDER_RULE=rule)
                if tag in e.get("SPYDER_CMDLINE", "") + e.get("MESSAGE", "")]  # fmt: skip

    got = wait_for(found, 60)
    assert got, f"no {rule!r} finding for {tag}\n" + d.log.read_text()[-3000:]
    return got[-1]


def test_falco_and_sigma_rules_fire_on_the_real_kernel(daemon, tmp_path: Path) -> None:
    tag = "spy" + uuid.uuid4().hex[:10]
    # netcat told to run a program (busybox nc, to a closed loopback port)
    (tmp_path / "nc").symlink_to("/bin/busybox")
    run([str(tmp_path / "nc"), "-w", "1", "-e", "/bin/true", "127.0.0.1", "1", tag])
    # shell history switched off, private keys searched for, a keyword, a pty one-liner
    run(["/bin/bash", "-c", f"export HISTFILE=/dev/null; echo {tag}"])
    run(["find", str(tmp_path), "-name", f"id_rsa-{tag}"])
    run(["/bin/sh", "-c", f"echo mimipenguin-{tag}"])
    run(["python3", "-c", "print('pty.spawn')", tag])  # argv[0] python3, as the rule wants
    # a log truncated, a history file and a log deleted (watched: /var/log/)
    log = Path(f"/var/log/{tag}.log")
    history = Path(f"/var/log/{tag}.bash_history")
    try:
        log.write_text("x\n")
        history.write_text("ls\n")
        assert run(["truncate", "-s", "0", str(log)]).returncode == 0
        assert run(["rm", "-f", str(log), str(history)]).returncode == 0
    finally:
        log.unlink(missing_ok=True)
        history.unlink(missing_ok=True)
    # a connection to a remote-access port (a loopback listener of our own)
    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE,
                                text=True)  # fmt: skip
    try:
        assert listener.stdout.readline().strip() == "ready"
        connect = "import socket,sys; socket.create_connection(('127.0.0.1', 31337)).close()"
        assert run([sys.executable, "-c", connect, tag]).returncode == 0
    finally:
        listener.kill()
        listener.wait(10)

    falco = {
        "Netcat remote code execution": "T1059.004",
        "Shell history disabled": "T1562.003",
        "Search for private keys": "T1552.004",
        "Clear log activities": "T1070.002",
        "Delete bash history": "T1070.003",
        "Outbound connection to C2 port": "T1571",
    }
    sigma = {
        "Netcat with exec option": "T1059.004",
        "Keyword search for mimipenguin": "T1003",
        "Python one-liner spawning a pty": "T1059.006",
        "Log file deleted": "T1070.002",
        "Connection to a reverse shell port": "T1571",
    }
    for rule, mitre in {**falco, **sigma}.items():
        entry = expect(daemon, rule, tag)
        assert mitre in entry["SPYDER_MITRE"], (rule, entry["SPYDER_MITRE"])
    entry = expect(daemon, "Netcat with exec option", tag)
    assert entry["MESSAGE"].startswith("Sigma: Netcat with exec option: ")

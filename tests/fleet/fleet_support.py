"""Fleet fixtures: a real nats-server with JetStream on 127.0.0.1, three network namespaces
joined by veth pairs (A - B - C), a spyderd "host" scoped to each, and a stitcher."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, Spyderd, free_port, wait_for

HOSTS = ("a", "b", "c")
# addresses inside this test's own namespaces only (veth pairs, nothing leaves the machine)
LINKS = (("a", "b", "10.251.1.1", "10.251.1.2"), ("b", "c", "10.251.2.1", "10.251.2.2"))
TEST_RULES = """
- rule: Fleet test client on A
  event: exec
  condition: process.cmdline contains "10.251.1.2"
  severity: high
  tags: [T1021]
  output: "{process.name} reaches B"
- rule: Fleet test hop on B
  event: exec
  condition: process.name = sh and process.cmdline contains "10.251.2.2"
  severity: high
  tags: [T1021]
  output: "{process.name} reaches C"
- rule: Fleet test NAT client on A
  event: exec
  condition: process.name = sh and process.cmdline contains "7004"
  severity: high
  tags: [T1021]
  output: "{process.name} reaches C through B's NAT"
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class Broker:
    """nats-server -js on a free loopback port, its JetStream store kept across restarts."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = base / "jetstream"
        self.log = base / "nats.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen([exe, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                          "-sd", str(self.store)], stdout=logf,
                                         stderr=subprocess.STDOUT)
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_for(up, 15), self.log.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def host_config(base: Path, host: str, ns: str, url: str) -> Path:
    cfg = base / f"host-{host}.yaml"
    cfg.write_text(f"""
machine_id: "{('f1ee7' + host) * 4}0000"
store:
  batch_delay: 0.2
capture:
  scope: netns:/run/netns/{ns}
fleet:
  url: {url}
  name: host-{host}
findings:
  settle: 0.2
""")
    return cfg


class Stitcher:
    def __init__(self, base: Path, url: str) -> None:
        self.status = base / "stitch.json"
        self.log = base / "stitch.log"
        self.args = [sys.executable, "-m", "spyderd.fleet.stitch", "--url", url,
                     "--state-dir", str(base / "stitch"), "--status", str(self.status)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=logf,
                                         stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert wait_for(self.status.exists, 30), self.log.read_text()

    def stats(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], cwd=REPO, **kw)


def wait_findings(d: Spyderd, rule: str, timeout: float = 30) -> list[dict]:
    def found():
        r = d.ctl("findings", "--rule", rule, "-o", "json")
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    return wait_for(found, timeout, 0.5) or []


__all__ = ["HOSTS", "Broker", "Stitcher", "host_config", "in_ns", "sh", "time", "wait_findings"]

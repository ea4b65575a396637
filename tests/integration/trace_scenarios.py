"""Helpers for the trace tests: a configured spyderd, scenario runners, journal lookups.

A *scenario* runs a list of commands (argv lists, no shell) below a small runner that
listens on a loopback port first. The runner is a network server, so every scenario is a
trace root of its own (`inbound`), whatever else runs on the machine or in other tests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Spyderd, ctl, journal_entries, wait_for

RULES = [str(REPO / "rules"), str(REPO / "tests/integration/rules")]

RUNNER = REPO / "tests/integration/scenario_runner.py"


def write_config(base: Path, **findings) -> Path:
    """A spyderd config for tests: packaging defaults plus these `findings` settings."""
    lines = ["findings:"] + [f"  {k}: {json.dumps(v)}" for k, v in findings.items()]
    path = base / "spyderd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class TestSpyderd(Spyderd):
    """Spyderd with a config of its own, optionally inside another mount namespace."""

    __test__ = False

    def __init__(self, base: Path, config: Path, prefix: list[str] | None = None) -> None:
        base.mkdir(parents=True, exist_ok=True)
        super().__init__(base, RULES, config)
        self.prefix = prefix or []

    def start(self, wait: float = 120) -> None:
        args = [*self.prefix, sys.executable, "-m", "spyderd", "--config", str(self.config)]
        for r in self.rules:
            args += ["--rules", r]
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen(args, env=self.env, cwd=REPO, stdout=logf,
                                         stderr=subprocess.STDOUT)
        r = ctl(self.env, "status", "--wait", str(wait), timeout=wait + 30)
        assert r.returncode == 0, f"spyderd not ready:\n{r.stdout}\n{self.log.read_text()}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def json_lines(self, *args: str) -> list[dict]:
        r = self.ctl(*args, "-o", "json", "--no-pager", check=True)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def findings(self, *args: str) -> list[dict]:
        return self.json_lines("findings", "--all", *args)

    def entries(self, **match: str) -> list[dict]:
        """This daemon's own journald entries (other spyderds may run on the machine)."""
        return journal_entries(_PID=str(self.proc.pid), **match)


def scenario(commands: list[list[str]], timeout: float = 60) -> int:
    """Run the commands one after another below a listening runner; returns its pid."""
    p = subprocess.Popen([sys.executable, str(RUNNER), json.dumps(commands)],
                         stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=timeout)
    assert out.strip() == "done", out
    return p.pid


def wait_findings(d: TestSpyderd, pred, timeout: float = 90, what: str = "findings"):
    """Poll `spyderctl findings` until `pred(findings)` returns something true (90 s: on a
    loaded CI machine the daemon was seen 20+ s behind; a pass returns at once)."""
    got = wait_for(lambda: pred(d.findings()), timeout, interval=0.5)
    assert got, f"{what} never showed up:\n" + "\n".join(
        json.dumps({k: f[k] for k in ("rule", "message", "trace_id", "count")})
        for f in d.findings()) + "\n" + d.log.read_text()[-3000:]
    return got

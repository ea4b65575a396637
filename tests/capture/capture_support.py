"""A real spyderd per test module, and reading its audit trail back through spyderctl.

Each capture test module starts one daemon per probe loader (libbpf, bcc) with its own
config overrides, triggers events for real and reads them with
`spyderctl events -o json`, as an analyst would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import REPO, Spyderd, wait_for


def start_daemon(base: Path, capture: dict | None = None, rules: list[str] | None = None,
                 wait: float = 180, loader: str = "libbpf") -> Spyderd:
    """spyderd on `base` with the shipped config, `capture:` keys overridden, probes
    loaded by `loader` (libbpf or bcc)."""
    cfg = yaml.safe_load((REPO / "packaging/spyderd.yaml").read_text())
    cfg["capture"].update(capture or {})
    cfg["capture"]["loader"] = loader
    if os.environ.get("SPYDER_TEST_DISABLE"):  # developer runs only: skip a slow probe
        cfg["capture"]["disable"] = os.environ["SPYDER_TEST_DISABLE"].split(",")
    cfg["store"]["batch_delay"] = 0.2
    cfg["findings"]["settle"] = 0.2
    path = base / "spyderd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    d = Spyderd(base, rules or [str(REPO / "rules")], config=path)
    d.start(wait=wait)
    return d


def events(d: Spyderd, kind: str, pid: int | None = None) -> list[dict]:
    args = ["events", "--kind", kind, "-o", "json"]
    if pid is not None:
        args += ["--pid", str(pid)]
    r = d.ctl(*args, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def find_event(d: Spyderd, kind: str, pred, pid: int | None = None,
               timeout: float = 15) -> dict:
    """The first stored `kind` event matching `pred`; fails with what was seen."""
    seen: list[dict] = []

    def look():
        seen[:] = events(d, kind, pid)
        return next((e for e in seen if pred(e)), None)

    ev = wait_for(look, timeout, interval=0.3)
    assert ev is not None, f"no matching {kind} event; saw {len(seen)}: {seen[-5:]}"
    return ev


def absent(d: Spyderd, kind: str, pred, pid: int | None = None, settle: float = 1.5) -> None:
    """No stored `kind` event matches `pred` once the daemon had time to store it."""
    time.sleep(settle)
    hits = [e for e in events(d, kind, pid) if pred(e)]
    assert not hits, f"unexpected {kind} events: {hits}"


def status(d: Spyderd) -> dict:
    return json.loads(d.ctl("status", "-o", "json", check=True).stdout)


def netns_inode(pid: int | str = "self") -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def run_py(code: str, **kw) -> subprocess.CompletedProcess:
    """Run a Python snippet in a child (its pid is known from its own output if needed)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, **kw)

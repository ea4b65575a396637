"""Shared fixtures: a real journald, a real spyderd on temporary directories, spyderctl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JOURNAL_SOCKET = "/run/systemd/journal/socket"


def pytest_collection_modifyitems(config, items):
    """Root tests need the kernel; off CI a non-root run skips them, in CI they must run."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the suite as root (eBPF tests are not optional)")
    skip = pytest.mark.skip(reason="needs root and the running kernel")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def journald_alive() -> bool:
    """A leftover socket file is not a journald: try sending a datagram to it."""
    if not os.path.exists(JOURNAL_SOCKET):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(JOURNAL_SOCKET)
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(scope="module", params=["libbpf", "bcc"])
def loader(request) -> str:
    """Each capture test module runs once per probe loader: the CO-RE objects through
    libbpf (the default) and the bcc fallback compiling the same sources."""
    return request.param


@pytest.fixture(scope="session")
def journald():
    """Make sure a journald runs; start /lib/systemd/systemd-journald if none does."""
    proc = None
    if not journald_alive():
        os.makedirs("/run/systemd/journal", exist_ok=True)
        proc = subprocess.Popen(["/lib/systemd/systemd-journald"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not journald_alive():
            assert time.monotonic() < deadline, "systemd-journald did not come up"
            time.sleep(0.1)
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(10)


def ctl(env: dict, *args: str, check: bool = False, timeout: float = 60):
    """Run spyderctl from this source tree."""
    r = subprocess.run([sys.executable, "-m", "spyderd.ctl", *args], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert r.returncode == 0, f"spyderctl {' '.join(args)} -> {r.returncode}\n{r.stderr}"
    return r


class Spyderd:
    """A spyderd process on its own state and runtime directories."""

    def __init__(self, base: Path, rules: list[str], config: Path | None = None) -> None:
        self.config = config or REPO / "packaging/spyderd.yaml"
        self.state = base / "state"
        self.run = base / "run"
        self.log = base / "spyderd.log"
        self.rules = rules
        self.env = dict(os.environ, SPYDERD_STATE_DIR=str(self.state),
                        SPYDERD_RUNTIME_DIR=str(self.run), PYTHONPATH=str(REPO))
        self.proc: subprocess.Popen | None = None
        self.wrapper: list[str] = []  # e.g. unshare: the daemon runs under it

    def start(self, wait: float = 240) -> None:
        args = [*self.wrapper, sys.executable, "-m", "spyderd", "--config", str(self.config)]
        for r in self.rules:
            args += ["--rules", r]
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen(args, env=self.env, cwd=REPO, stdout=logf,
                                         stderr=subprocess.STDOUT)
        r = ctl(self.env, "status", "--wait", str(wait), timeout=wait + 30)
        assert r.returncode == 0, f"spyderd not ready:\n{r.stdout}\n{self.log.read_text()}"

    def ctl(self, *args: str, **kw):
        return ctl(self.env, *args, **kw)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


@pytest.fixture
def spyderd_factory(tmp_path, journald):
    made: list[Spyderd] = []

    def make(rules: list[str] | None = None) -> Spyderd:
        d = Spyderd(tmp_path, rules or [str(REPO / "rules")])
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def journal_entries(**match) -> list[dict]:
    """journald entries matching the given fields (all values as strings)."""
    from systemd import journal

    r = journal.Reader()
    for k, v in match.items():
        r.add_match(**{k: v})
    return [{k: (v if isinstance(v, str) else str(v)) for k, v in e.items()} for e in r]


def wait_for(pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


__all__ = ["REPO", "ctl", "free_port", "journal_entries", "json", "shutil", "wait_for"]

"""A journald of our own that a test may stop and start, without touching anyone else's.

The machine's journald (started by tests/conftest.py's `journald` fixture, or by whoever
came first) owns /run/systemd/journal/socket and must keep running for everybody. This
helper makes a private mount namespace (held open by a `sleep`) in which
/run/systemd/journal, /run/log/journal and /var/log/journal are bind mounts of temporary
directories, and runs /lib/systemd/systemd-journald and spyderd inside it with `nsenter`.
Stopping that journald (by the pid we started) leaves the real one alone; the test reads
the private journal files directly from the temporary directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"
MOUNTS = {"sock": "/run/systemd/journal", "run": "/run/log/journal", "var": "/var/log/journal"}


class PrivateJournal:
    def __init__(self, base: Path) -> None:
        self.dirs = {k: base / f"journal-{k}" for k in MOUNTS}
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for target in MOUNTS.values():
            os.makedirs(target, exist_ok=True)  # mount points on the host (harmless if there)
        binds = " && ".join(f"mount --bind {self.dirs[k]} {t}" for k, t in MOUNTS.items())
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"{binds} && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()
        if line != "ready":
            self.holder.kill()
            raise RuntimeError(f"private mount namespace failed: {line!r}")
        self.journald: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        return self.dirs["sock"] / "socket"

    def enter(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--"]

    def alive(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.connect(str(self.socket_path))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def start(self, timeout: float = 15) -> None:
        assert self.journald is None or self.journald.poll() is not None
        self.journald = subprocess.Popen([*self.enter(), JOURNALD], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.alive():
            assert time.monotonic() < deadline, "private journald did not come up"
            assert self.journald.poll() is None, "private journald exited"
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the journald this helper started (only that one, by its pid)."""
        if self.journald is not None and self.journald.poll() is None:
            self.journald.terminate()
            self.journald.wait(15)
        assert not self.alive()

    def entries(self, **match: str) -> list[dict]:
        """Entries of the private journal matching the given fields (values as strings)."""
        from systemd import journal

        out = []
        for d in (self.dirs["run"], self.dirs["var"]):
            for sub in d.iterdir() if d.exists() else ():
                if not sub.is_dir():
                    continue
                r = journal.Reader(path=str(sub))
                for k, v in match.items():
                    r.add_match(**{k: v})
                out += [{k: (v if isinstance(v, str) else str(v)) for k, v in e.items()}
                        for e in r]
                r.close()
        return out

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.holder.kill()
            self.holder.wait(10)

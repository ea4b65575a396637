"""A real systemd as PID 1, booted with systemd-nspawn inside a debootstrap'd Debian root.

Never against this machine's own root filesystem: systemd's tmpfiles step would empty the
machine's /tmp. The root is its own directory (checked before every boot), cached under
/var/cache/spyderd-test and used through an overlay, so the cache stays pristine and a test
run costs a boot, not a debootstrap.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

CACHE = Path("/var/cache/spyderd-test")
SUITE = "bookworm"
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus")
# Bump when the way the root is built changes, so old caches are rebuilt.
ROOT_FORMAT = "1"
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8", "TERM": "dumb", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}


def deb_depends(control: Path) -> list[str]:
    """Package names in the Depends of packaging/debian/control.in (first alternative)."""
    m = re.search(r"^Depends:(.*)$", control.read_text(), re.MULTILINE)
    assert m, f"{control}: no Depends"
    names = []
    for dep in m.group(1).split(","):
        name = dep.split("|")[0].split("(")[0].strip()
        if name:
            names.append(name)
    return names


def root_packages(control: Path) -> list[str]:
    return sorted(set(BASE_PACKAGES) | set(deb_depends(control)))


def cached_root(control: Path, log: Path) -> Path:
    """The pristine root for this package list; built with debootstrap on first use."""
    pkgs = root_packages(control)
    key = hashlib.sha256(f"{ROOT_FORMAT} {SUITE} {' '.join(pkgs)}".encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse
        if (root / ".complete").exists():
            return root
        for old in [*CACHE.glob(f"{SUITE}-*"), *CACHE.glob(".build-*")]:
            shutil.rmtree(old, ignore_errors=True)  # other package lists, failed builds
        tmp = CACHE / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        with open(log, "a") as out:
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(pkgs)}",
                            SUITE, str(tmp)], stdout=out, stderr=subprocess.STDOUT,
                           check=True, timeout=900)
        # Smaller and quieter: no package lists, no apt caches, no foreign machine id.
        subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=False)
        (tmp / "etc/machine-id").write_text("")
        (tmp / ".complete").write_text(" ".join(pkgs) + "\n")
        os.rename(tmp, root)
        return root


def _is_own_root(path: Path) -> bool:
    """True only for a directory that is not this machine's / and looks like a Debian root."""
    real, slash = os.stat(path), os.stat("/")
    if (real.st_dev, real.st_ino) == (slash.st_dev, slash.st_ino) or path.resolve() == Path("/"):
        return False
    return (path / "etc/debian_version").exists() and (path / "lib/systemd/systemd").exists()


def ensure_kernel_fs() -> None:
    """The container binds tracefs and debugfs from here; mount them if they are not."""
    for fstype, where in (("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug")):
        if subprocess.run(["mountpoint", "-q", where], check=False).returncode != 0:
            subprocess.run(["mount", "-t", fstype, fstype, where], check=True)


class Container:
    """One booted container on an overlay of the cached root; `close()` always tears down."""

    def __init__(self, lower: Path, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.console = base / "console.log"
        self.proc: subprocess.Popen | None = None
        self.pid1 = 0
        for d in ("upper", "work", "root"):
            (base / d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={base / 'upper'},workdir={base / 'work'}",
                        str(self.root)], check=True)
        self.mounted = True

    def boot(self, timeout: float = 120) -> None:
        assert _is_own_root(self.root), f"refusing to boot systemd on {self.root}"
        ensure_kernel_fs()
        kver = os.uname().release
        args = ["systemd-nspawn", "-D", str(self.root), "--register=no", "--keep-unit",
                "--quiet", "--capability=all", "--system-call-filter=bpf perf_event_open",
                "--bind=/sys/kernel/tracing", "--bind=/sys/kernel/debug",
                f"--bind-ro=/lib/modules/{kver}", "--bind-ro=/usr/src", "-b"]
        with open(self.console, "ab") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=CLEAN_ENV,
                                         start_new_session=True)
        self.pid1 = self._wait_pid1(30)
        deadline = time.monotonic() + timeout
        while True:  # "offline" (or no answer) until PID 1 has set up its control socket
            r = self.run("systemctl", "is-system-running", "--wait", timeout=timeout)
            state = r.stdout.strip()
            if state not in ("offline", "") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state in ("running", "degraded"), f"boot ended {state!r}:\n{self.tail()}"

    def _wait_pid1(self, timeout: float) -> int:
        """The container's PID 1 is the nspawn child that is pid 1 in its own namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                     + self.tail())
            for pid in _children(self.proc.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                m = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)
                if m and m.group(1).split()[-1] == "1":
                    return pid
            time.sleep(0.1)
        raise AssertionError("no container PID 1 after 30 s:\n" + self.tail())

    def run(self, *cmd: str, timeout: float = 60, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the container (all its namespaces, its root, a clean env)."""
        assert self.pid1, "container not booted"
        r = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *cmd], env=CLEAN_ENV,
                           capture_output=True, text=True, timeout=timeout, check=False,
                           input=input)
        if check:
            assert r.returncode == 0, (f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n"
                                       f"{r.stderr}")
        return r

    def tail(self, n: int = 4000) -> str:
        try:
            return self.console.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        """Power off; kill PID 1 (and so the whole container) if that takes too long."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn asks systemd to power off
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                if self.pid1:
                    _kill(self.pid1)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    _kill(self.proc.pid)
                    self.proc.wait(10)
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.root)], check=False)
            self.mounted = False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

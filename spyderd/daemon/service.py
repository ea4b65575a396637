"""spyderd as a systemd service: sd_notify, logging into journald, the capture-gap report.

Kept apart from the daemon loop so the service-manager contract (what READY, STATUS and
WATCHDOG mean, which MESSAGE_IDs exist, how a restart reports the time capture was down)
lives in one place. Every MESSAGE_ID here has an entry in packaging/spyderd.catalog.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from spyderd.errors import AlreadyRunningError

log = logging.getLogger("spyderd")

# journald MESSAGE_IDs of spyderd's own messages (never change them: the catalog keys on them).
MSG_GAP_UNCLEAN = "ffaa85f3fb1a44a1b33b3ba1a11e4fa0"  # capture down after a crash/kill/hang
MSG_GAP_CLEAN = "f19b7fa1e2764af2a8986c41a98829ad"  # capture down between a stop and a start
MSG_RELOAD_REFUSED = "3a1e23b29f894585825677485ff8604f"  # broken rule set, old rules kept
MSG_EVENTS_LOST = "0bec99d235c844f486c7d22558f9950f"  # ring-buffer losses / decode errors
MSG_PROBE_TAMPERED = "f3db43e6418e4117acb4c1ee6f5fd9ef"  # a probe detached or replaced

# Store meta keys (the store's `meta` database).
META_LAST_ALIVE = "last_alive"  # wall time (s) of the last liveness write of a running daemon
META_CLEAN_STOP = "clean_stop"  # true once a daemon finished shutdown(); false while it runs
META_LAST_GAP = "last_gap"  # the gap reported at the latest start


# Sent when shutdown starts. The loop stops pinging then, and detaching a hundred
# tracepoints and flushing the store can outlast a short WatchdogSec: systemd would kill a
# clean stop (Result=watchdog). Stretch the watchdog; TimeoutStopSec still bounds the stop.
STOPPING = "STOPPING=1\nWATCHDOG_USEC=600000000"


class MetaStore(Protocol):
    def get_meta(self, key: str) -> Any: ...

    def put_meta(self, key: str, value: Any) -> None: ...


def notify(msg: str) -> bool:
    """sd_notify(3) when NOTIFY_SOCKET is set; best effort, never fatal."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    try:
        from systemd import daemon as sd

        return bool(sd.notify(msg))
    except Exception as exc:  # noqa: BLE001 - notification is best effort
        log.debug("sd_notify failed: %s", exc)
        return False


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to journald ($JOURNAL_STREAM is "dev:inode")."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: str) -> None:
    """Under systemd log natively to journald (real PRIORITY, MESSAGE_ID and SPYDER_*
    fields, and still under `journalctl -u spyderd`, which matches on the cgroup);
    elsewhere log plain lines to stderr."""
    handler: logging.Handler | None = None
    if stderr_is_journal():
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="spyderd")
            handler.setFormatter(logging.Formatter("%(message)s"))
        except ImportError:  # python3-systemd missing: stderr still reaches the journal
            handler = None
    handlers = [handler] if handler is not None else []
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers = [handler]
        extra = journal_handler()  # not under systemd, but a journald runs: log there too
        if extra is not None:
            handlers.append(extra)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())


JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journal_handler() -> logging.Handler | None:
    """A JournalHandler when journald's socket exists (warnings such as lost events must
    reach the journal even when stderr goes to a file), else None."""
    if not os.path.exists(JOURNAL_SOCKET):
        return None
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    h = JournalHandler(SYSLOG_IDENTIFIER="spyderd")
    h.setFormatter(logging.Formatter("%(message)s"))
    return h


def status_line(*, events_per_s: float, lost: int, decode_errors: int, findings: int,
                rules: int) -> str:
    """The one-line STATUS= shown by `systemctl status spyderd`."""
    return (f"capturing: {events_per_s:.0f} events/s, {lost} lost, "
            f"{decode_errors} decode errors, {findings} findings, {rules} rules")


def watchdog_interval(default: float = 1.0) -> float:
    """Seconds between WATCHDOG=1 pings: at most half of WatchdogSec, at most `default`."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        usec = 0
    return min(default, usec / 2e6) if usec > 0 else default


@dataclass(frozen=True, slots=True)
class Gap:
    """Time capture was not running, between the previous daemon's last sign of life and
    the moment this daemon's probes attached."""

    start: float
    end: float
    clean: bool
    sender: str = ""  # who signalled the previous daemon last, when the kernel saw it

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.end, "seconds": round(self.seconds, 3),
                "clean": self.clean, "sender": self.sender}


def previous_run(store: MetaStore) -> tuple[float | None, bool]:
    """(last liveness wall time, whether that run stopped cleanly) from the store."""
    last = store.get_meta(META_LAST_ALIVE)
    clean = store.get_meta(META_CLEAN_STOP)
    return (float(last) if isinstance(last, int | float) else None), clean is True


def mark_running(store: MetaStore, now: float) -> None:
    """From here until mark_stopped(), a restart counts as after an unclean stop."""
    store.put_meta(META_CLEAN_STOP, False)
    store.put_meta(META_LAST_ALIVE, now)


def mark_alive(store: MetaStore, now: float) -> None:
    store.put_meta(META_LAST_ALIVE, now)


def mark_stopped(store: MetaStore, now: float) -> None:
    store.put_meta(META_LAST_ALIVE, now)
    store.put_meta(META_CLEAN_STOP, True)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def report_gap(store: MetaStore, capture_started: float,
               sender: dict[str, Any] | None = None) -> Gap | None:
    """Log how long capture was down before this start (a window an attacker could use):
    a warning after an unclean stop, info after a clean one; nothing on a fresh store.

    `sender` is the last signal the kernel saw aimed at the previous daemon (kept in a
    pinned BPF map that outlives a SIGKILL: spyderd.capture.tamper): who killed or stopped
    it is named in the message and in SPYDER_GAP_SIGNAL / SPYDER_GAP_SENDER_* fields."""
    last, clean = previous_run(store)
    if last is None:
        log.info("no previous run recorded in this store: first start")
        return None
    gap = Gap(last, capture_started, clean, sender_text(sender))
    fields = {"MESSAGE_ID": MSG_GAP_CLEAN if clean else MSG_GAP_UNCLEAN,
              "SPYDER_GAP_SECONDS": f"{gap.seconds:.1f}",
              "SPYDER_GAP_FROM": _iso(gap.start), "SPYDER_GAP_TO": _iso(gap.end),
              "SPYDER_GAP_CLEAN": "1" if clean else "0", **sender_fields(sender)}
    text = (f"capture was down for {gap.seconds:.1f} s (from {_iso(gap.start)} to "
            f"{_iso(gap.end)}): activity in that window was not recorded")
    if gap.sender:
        text += f"; the previous run was sent {gap.sender}"
    if clean:
        log.info("%s (previous run stopped cleanly)", text, extra=fields)
    else:
        log.warning("%s; the previous run did not stop cleanly (crash, kill -9, watchdog "
                    "or power loss), so up to one store batch before it may be lost too",
                    text, extra=fields)
    store.put_meta(META_LAST_GAP, gap.as_dict())
    return gap


def sender_text(sender: dict[str, Any] | None) -> str:
    """ "SIGKILL by kill[4242] (uid 0) at 2026-12-03T14:01:02+00:00", or "". """
    if not sender:
        return ""
    try:
        name = signal.Signals(int(sender.get("signal", 0))).name
    except ValueError:
        name = f"signal {sender.get('signal')}"
    when = _iso(sender["time"] / 1e9) if sender.get("time") else "?"
    return (f"{name} by {sender.get('sender_comm') or '?'}[{sender.get('sender_pid')}] "
            f"(uid {sender.get('sender_uid')}) at {when}")


def sender_fields(sender: dict[str, Any] | None) -> dict[str, str]:
    if not sender:
        return {}
    return {"SPYDER_GAP_SIGNAL": str(sender.get("signal", "")),
            "SPYDER_GAP_SENDER_PID": str(sender.get("sender_pid", "")),
            "SPYDER_GAP_SENDER_COMM": str(sender.get("sender_comm", "")),
            "SPYDER_GAP_SENDER_UID": str(sender.get("sender_uid", ""))}


# -- one daemon per state directory ---------------------------------------------------------

PID_FILE = "spyderd.pid"


@dataclass
class InstanceLock:
    """flock(2) on the state directory itself, held for the daemon's life.

    The kernel drops the lock when the process dies however it dies (kill -9 too), so
    there is never a stale lock to clean up. Locking the directory rather than a file in
    it means a refused second start creates nothing: no lock file, no status, no store.
    """

    fd: int
    pid_file: Path | None = None

    def write_pid(self, runtime_dir: Path) -> None:
        """`<runtime_dir>/spyderd.pid`, for scripts and the refusal message."""
        path = runtime_dir / PID_FILE
        tmp = path.with_suffix(".pid.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
        self.pid_file = path

    def release(self) -> None:
        if self.pid_file is not None and _read_pid(self.pid_file) == os.getpid():
            self.pid_file.unlink(missing_ok=True)
        os.close(self.fd)


def acquire_instance_lock(state_dir: Path, runtime_dir: Path) -> InstanceLock:
    """Lock `state_dir` or raise AlreadyRunningError naming the holder's pid."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(fd) or _read_pid(runtime_dir / PID_FILE)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise AlreadyRunningError(f"spyderd is already running{who} on state directory "
                                  f"{state_dir}") from None
    return InstanceLock(fd)


def lock_holder(fd: int, locks: str = "/proc/locks") -> int | None:
    """The pid holding a flock on the file open at `fd`, from /proc/locks.

    The pid file may be missing or name another runtime dir's daemon; the kernel's lock
    table names the real holder. Lines read `1: FLOCK ADVISORY WRITE 123 fd:01:4567 0 EOF`.
    """
    st = os.fstat(fd)
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        lines = Path(locks).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        try:
            major, minor, ino = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(ino)) == want:
                return int(parts[4])
        except ValueError:
            continue
    return None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def report_probe_fault(fault: Any) -> None:
    """A critical journald entry for an attachment someone detached or replaced
    (`spyderd.capture.integrity.Fault`), saying whether it was attached again."""
    a = fault.attachment
    if fault.reattached:
        outcome = f"re-attached ({fault.new_label})"
    else:
        outcome = f"NOT re-attached ({fault.reattach_error}): the probe is blind there"
    fields = {"MESSAGE_ID": MSG_PROBE_TAMPERED, "SPYDER_PROBE": a.probe,
              "SPYDER_PROBE_PROGRAM": a.program, "SPYDER_PROBE_HOOK": a.hook,
              "SPYDER_PROBE_STATE": fault.state, "SPYDER_PROBE_LINK_ID": str(a.link_id),
              "SPYDER_PROBE_PROG_ID": str(a.prog_id), "SPYDER_PROBE_DETAIL": fault.detail,
              "SPYDER_PROBE_SINCE": _iso(fault.time),
              "SPYDER_PROBE_REATTACHED": "1" if fault.reattached else "0"}
    log.critical("probe %s %s: %s; %s", a.probe, fault.state, fault.detail, outcome,
                 extra=fields)

"""Third-party alerts: other services' warnings and errors, followed from the journal.

sshd authentication failures, sudo denials, kernel and AppArmor/SELinux denials, OOM kills,
any application's errors: entries with PRIORITY 0..4 (emerg..warning) become `AlertEvent`s
attached to the process that wrote them, so they show up in traces and rules can match
`event: alert`. spyderd's own entries (SYSLOG_IDENTIFIER=spyderd, or our own _PID) are
skipped, so findings never feed back into the rules.

The reader starts at the tail of the journal (history before spyderd started is not
replayed) and is polled from the daemon loop: `poll()` never waits. Matching an entry to a
process image: `_PID` plus the entry's time (the image of that pid that was running when
the entry was written; kernel and audit messages name the pid in the text as `pid=N`),
else the newest live process of `_SYSTEMD_UNIT`'s cgroup. An entry whose process is not in
the graph yet (the fork event still in the ring buffer) is retried for about a second,
then kept unattached (`pid` 0) and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spyderd.model import AlertEvent, Node

log = logging.getLogger("spyderd.capture")

MAX_PRIORITY = 4  # warning
RETRY_ROUNDS = 10
MAX_PER_POLL = 2000
_KERNEL_PID = re.compile(r"\bpid[=: ]+(\d+)")

Resolver = Callable[[int, int, str], Node | None]  # (pid, wall ns, unit) -> process image


@dataclass
class _Waiting:
    ev: AlertEvent
    rounds: int = 0


@dataclass
class JournalFollower:
    """Non-blocking reader of new journal entries at PRIORITY <= `max_priority`."""

    resolve: Resolver
    max_priority: int = MAX_PRIORITY
    own_pid: int = field(default_factory=os.getpid)
    skip_identifiers: tuple[str, ...] = ("spyderd",)
    stats: dict[str, int] = field(default_factory=lambda: {
        "read": 0, "attached": 0, "unattached": 0, "skipped_own": 0, "errors": 0})
    state: str = "closed"
    reason: str = ""
    _reader: Any = None
    _waiting: deque = field(default_factory=deque)

    def open(self) -> bool:
        """Open the journal at its tail; False (and `reason`) when it cannot be read."""
        try:
            from systemd import journal

            r = journal.Reader()
            for prio in range(self.max_priority + 1):
                r.add_match(PRIORITY=str(prio))
            r.seek_tail()
            r.get_previous()  # position on the last entry; new ones follow
            r.fileno()  # allocates the inotify watch that process() needs
            r.process()
        except Exception as exc:  # noqa: BLE001 - no journal must not stop capture
            self.state, self.reason = "unavailable", f"{type(exc).__name__}: {exc}"
            log.warning("not following the journal for third-party alerts: %s", self.reason)
            return False
        self._reader = r
        self.state, self.reason = "following", ""
        return True

    def fileno(self) -> int:
        return self._reader.fileno() if self._reader is not None else -1

    def poll(self) -> list[AlertEvent]:
        """New alerts since the last call (never blocks), oldest first."""
        out = self._retry()
        if self._reader is None:
            return out
        try:
            self._reader.process()
            for _ in range(MAX_PER_POLL):
                entry = self._reader.get_next()
                if not entry:
                    break
                ev = self._event(entry)
                if ev is not None:
                    out += self._attach(ev)
        except Exception as exc:  # noqa: BLE001 - a corrupt journal file must not stop us
            self.stats["errors"] += 1
            self.reason = f"{type(exc).__name__}: {exc}"
            log.warning("journal read error: %s", self.reason)
        return out

    def _event(self, e: dict[str, Any]) -> AlertEvent | None:
        self.stats["read"] += 1
        ident = str(e.get("SYSLOG_IDENTIFIER", ""))
        pid = _int(e.get("_PID"))
        if ident in self.skip_identifiers or pid == self.own_pid:
            self.stats["skipped_own"] += 1
            return None
        msg = e.get("MESSAGE", "")
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        if not pid and e.get("_TRANSPORT") in ("kernel", "audit"):
            m = _KERNEL_PID.search(str(msg))
            pid = int(m.group(1)) if m else 0
        t = e.get("_SOURCE_REALTIME_TIMESTAMP") or e.get("__REALTIME_TIMESTAMP")
        wall = int(t.timestamp() * 1e9) if hasattr(t, "timestamp") else 0
        return AlertEvent(
            time=wall, pid=pid, uid=_int(e.get("_UID")), gid=_int(e.get("_GID")),
            comm=str(e.get("_COMM", ""))[:16], message=str(msg)[:4096],
            unit=str(e.get("_SYSTEMD_UNIT", "")), priority=_int(e.get("PRIORITY"), 4),
            identifier=ident or str(e.get("_COMM", "")), cursor=str(e.get("__CURSOR", "")))

    def _attach(self, ev: AlertEvent) -> list[AlertEvent]:
        node = self.resolve(ev.pid, ev.time, ev.unit) if (ev.pid or ev.unit) else None
        if node is not None:
            return [self._attached(ev, node)]
        if ev.pid:
            self._waiting.append(_Waiting(ev))
            return []
        self.stats["unattached"] += 1
        return [ev]

    def _attached(self, ev: AlertEvent, node: Node) -> AlertEvent:
        self.stats["attached"] += 1
        return dataclasses.replace(ev, process_id=node.id, pid=node.pid)

    def _retry(self) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for _ in range(len(self._waiting)):
            w = self._waiting.popleft()
            node = self.resolve(w.ev.pid, w.ev.time, w.ev.unit)
            if node is not None:
                out.append(self._attached(w.ev, node))
            elif w.rounds + 1 >= RETRY_ROUNDS:
                self.stats["unattached"] += 1
                out.append(w.ev)
            else:
                w.rounds += 1
                self._waiting.append(w)
        return out

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.state = "closed"

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "waiting": len(self._waiting),
                **self.stats}


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default

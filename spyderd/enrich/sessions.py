"""Login sessions: who is behind a command, and whether a human typed it.

Two kinds of session, the first that applies:

- an **audit session**: the kernel's `sessionid`, set together with `loginuid` when a
  login service (sshd, login, cron, gdm through pam_loginuid) writes
  /proc/self/loginuid. It survives `sudo`, `su`, `setsid` and daemonising, which is what
  makes it the right answer to "who did this". Id `session:<boot>:<sessionid>`.
- a **terminal session**: a POSIX session whose leader holds a controlling terminal
  (what `ssh -t`, `script`, `tmux`, a pty opened with setsid do), for hosts where nothing
  sets the audit login uid. Id `session:<boot>:<leader pid>:<leader start ticks>`.

A session is `interactive` when it has a terminal or was opened by a login service
(`ssh host cmd` has no pty but a person behind it). A process is `interactive` when it
has a controlling terminal itself or its session is interactive.
"""

from __future__ import annotations

from dataclasses import dataclass

from spyderd.enrich.procfs import ProcFacts, read_facts

LOGIN_SERVICES = frozenset({"sshd", "sshd-session", "login", "dropbear", "telnetd", "in.telnetd",
                            "agetty", "getty", "mingetty", "gdm-session-worker", "lightdm",
                            "sddm-helper", "xrdp-sesman", "machinectl", "systemd-logind"})
# su/sudo are not here: they keep the caller's audit session (that is the point of it);
# a `sudo -i` or `su -` shell is interactive through its terminal like any other.


@dataclass(slots=True)
class SessionKey:
    id: str
    kind: str  # "audit" | "tty"
    sessionid: int = -1
    leader: int = 0  # leader pid (tty sessions; audit: first process seen with the id)
    leader_start_ticks: int = 0


def session_key(boot: str, facts: ProcFacts, proc: str = "/proc") -> SessionKey | None:
    """The session a process belongs to, or None (no login, no terminal)."""
    if facts.sessionid >= 0:
        return SessionKey(f"session:{boot}:{facts.sessionid}", "audit",
                          sessionid=facts.sessionid, leader=facts.pid,
                          leader_start_ticks=facts.start_ticks)
    if facts.tty_nr and facts.sid > 0:
        if facts.sid == facts.pid:
            start = facts.start_ticks
        else:
            leader = read_facts(facts.sid, proc)
            start = leader.start_ticks if leader else 0
        return SessionKey(f"session:{boot}:{facts.sid}:{start}", "tty",
                          leader=facts.sid, leader_start_ticks=start)
    return None


def opened_by_login(*exes: str) -> bool:
    """Was a session opened by a login service (judged from the first processes in it)?"""
    return any(e.rsplit("/", 1)[-1] in LOGIN_SERVICES for e in exes if e)

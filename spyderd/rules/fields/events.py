"""evt.*, exit.*, fork.* and alert.* fields: the event itself and the lifecycle kinds."""

from __future__ import annotations

from spyderd.model.events import EVENT_TYPES, Event
from spyderd.model.nodes import Node
from spyderd.rules.fields.base import ALL_KINDS, Field, ev_attr, event_field

RESULT = frozenset({
    "connect", "accept", "bind", "udp", "unix_connect", "file", "cred", "setsid", "prctl",
    "kernel", "socket", "dup",
})  # fmt: skip
EXIT = frozenset({"exit"})
FORK = frozenset({"fork"})
ALERT = frozenset({"alert"})


def _result(ev: Event | None, node: Node) -> int | None:
    return getattr(ev, "result", None) if ev is not None and ev.kind in RESULT else None


def event_fields() -> list[Field]:
    f = event_field
    return [
        f("evt.kind", "str", ALL_KINDS, "Event kind: " + ", ".join(EVENT_TYPES) + ".",
          lambda ev, node: ev.kind if ev is not None else None, choices=ALL_KINDS),
        f("evt.time", "int", ALL_KINDS, "Event wall-clock time, ns.",
          lambda ev, node: ev.time if ev is not None else None),
        f("evt.result", "int", RESULT, "0 or a positive value on success, else -errno.", _result),
        f("exit.code", "int", EXIT, "Exit status.", ev_attr("code", EXIT)),
        f("exit.signal", "int", EXIT, "Signal that ended the process, or 0 (compare with "
          "signal names: `exit.signal = SIGKILL`).", ev_attr("signal", EXIT)),
        f("fork.thread", "bool", FORK, "True for a new thread rather than a process.",
          ev_attr("thread", FORK)),
        f("fork.clone_flags", "int", FORK, "clone(2) flags (test bits with `&`: "
          "`fork.clone_flags & CLONE_NEWUSER`).", ev_attr("clone_flags", FORK)),
        f("alert.message", "str", ALERT, "The journald message of another service.",
          ev_attr("message", ALERT)),
        f("alert.unit", "str", ALERT, "systemd unit that logged it.", ev_attr("unit", ALERT, "")),
        f("alert.priority", "int", ALERT, "syslog priority (3 err, 4 warning).",
          ev_attr("priority", ALERT)),
        f("alert.identifier", "str", ALERT, "SYSLOG_IDENTIFIER of the message.",
          ev_attr("identifier", ALERT, "")),
    ]  # fmt: skip

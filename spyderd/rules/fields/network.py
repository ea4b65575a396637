"""connection.* and unix.* fields: sockets the subject connected, accepted, listened or bound.

Read from the event alone, so they are missing on other kinds and inside causal operators.
"""

from __future__ import annotations

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.fields.base import Field, ev_attr, event_attr, event_field

TCP = frozenset({"connect", "accept"})
LOCAL = frozenset({"connect", "accept", "listen", "bind"})
REMOTE = frozenset({"connect", "accept", "udp"})
SOCK = frozenset({"connect", "accept", "listen", "bind", "udp"})
UDP = frozenset({"udp"})
UNIX = frozenset({"unix_connect"})
_DIRECTION = {"connect": "out", "accept": "in", "listen": "listen", "bind": "bind", "udp": "out"}


def _protocol(ev: Event | None, node: Node) -> str | None:
    if ev is None or ev.kind not in SOCK:
        return None
    if ev.kind == "bind":
        return ev.protocol  # type: ignore[attr-defined]
    return "udp" if ev.kind == "udp" else "tcp"


def _direction(ev: Event | None, node: Node) -> str | None:
    return _DIRECTION.get(ev.kind) if ev is not None else None


def network_fields() -> list[Field]:
    f, ev = event_field, event_attr
    return [
        ev("connection.family", "int", SOCK, "Address family: 4 or 6."),
        f("connection.protocol", "str", SOCK, "tcp or udp.", _protocol,
          choices=frozenset({"tcp", "udp"})),
        f("connection.direction", "str", SOCK, "out (connect, udp), in (accept), listen, bind.",
          _direction, choices=frozenset(_DIRECTION.values())),
        ev("connection.local_ip", "ip", LOCAL, "Local address."),
        ev("connection.local_port", "int", LOCAL, "Local port."),
        ev("connection.remote_ip", "ip", REMOTE, "Remote address."),
        ev("connection.remote_port", "int", REMOTE, "Remote port."),
        ev("connection.result", "int", TCP | {"bind", "udp"}, "0 when it worked, else -errno."),
        ev("connection.netns", "int", SOCK, "Network namespace inode of the socket.", 0),
        f("connection.call", "str", UDP, "udp: sendto, sendmsg or connect.", ev_attr("call", UDP),
          choices=frozenset({"sendto", "sendmsg", "connect"})),
        f("unix.path", "str", UNIX, "Unix socket path ('@' for abstract).", ev_attr("path", UNIX)),
    ]  # fmt: skip

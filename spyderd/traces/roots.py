"""Where a trace starts: the causal root a finding's subject descends from.

Walking up from the subject (the subject itself included), the root is the first image that
is one of these boundaries, nearest first:

- ``inbound``: a network server (an image that listens on a TCP port): everything below
  it answered an inbound connection. A web shell's commands group under the web server.
- ``session``: the first image of a login or interactive session (its parent belongs to
  another session, by the enricher's ``session_id``).
- ``container``: a container's first process (its parent runs outside the container).
- ``service``: a child of PID 1 (or of kthreadd): a daemon or a service's main process.
- ``top``: the oldest ancestor the graph knows (the chain is broken above it).

Nearest first, because the nearest boundary is the smallest tree that still holds the whole
story: a web server started from an interactive shell is the root of the attack on it, not
the administrator's login session. A container boundary is the exception: a container
started from inside an inbound connection or a session (a web shell running `runc run`, an
operator's `docker exec` typed in an ssh session) belongs to that connection or session, so
the walk goes on past it and the container is the root only when nothing but a service
(the container runtime's shim) or the top of the graph lies above it. When the boundary is a fork copy that was immediately
replaced by an exec (`sshd` forks, then execs `bash`), the exec'd image on the path is the
root instead, so the root names the program that actually ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from spyderd.model import Node

ROOT_KINDS = ("inbound", "session", "container", "service", "top")
MAX_WALK = 64
INIT_PIDS = (1, 2)  # init and kthreadd: their children are services or kernel helpers


class Ancestry(Protocol):
    """What root finding needs: `Graph` (live) and `History` (store) both provide it."""

    def ancestors(self, node: Node, depth: int | None = None) -> Iterator[Node]: ...


@dataclass(frozen=True, slots=True)
class Root:
    """A trace root and why it is one; `path` runs from the root down to the subject."""

    node: Node
    kind: str
    path: tuple[Node, ...]


def is_server(n: Node) -> bool:
    return n.kind == "process" and bool(n.attrs.get("listen_ports"))


def boundary(child: Node, parent: Node | None) -> str:
    """Why `child` starts a trace ('' when it does not)."""
    if parent is None:
        return "top"
    if is_server(child):
        return "inbound"
    sess, psess = child.attrs.get("session_id"), parent.attrs.get("session_id")
    if sess and sess != psess:
        return "session"
    if (child.attrs.get("container_id") or "") != (parent.attrs.get("container_id") or ""):
        return "container"
    if parent.pid in INIT_PIDS and parent.pid != child.pid:
        return "service"
    return ""


def find_root(g: Ancestry, subject: Node) -> Root:
    """The subject's trace root (see the module docstring)."""
    up = list(g.ancestors(subject, MAX_WALK))
    line = [subject, *up]  # nearest first
    container: int | None = None
    for i, node in enumerate(line):
        parent = line[i + 1] if i + 1 < len(line) else None
        kind = boundary(node, parent)
        if kind in ("inbound", "session"):
            return _settle(line, i, kind)
        if kind == "container":
            container = i if container is None else container
        elif kind in ("service", "top"):
            if container is not None:
                return _settle(line, container, "container")
            return _settle(line, i, kind)
    return _settle(line, len(line) - 1, "top")


def _settle(line: list[Node], i: int, kind: str) -> Root:
    """Step down from a fork copy to the image that replaced it on the same path."""
    while i > 0:
        cur, below = line[i], line[i - 1]
        fork_copy = cur.via == "spawned" and not cur.attrs.get("snapshot")
        if not (fork_copy and below.via == "exec" and below.parent == cur.id):
            break
        i -= 1
    return Root(node=line[i], kind=kind, path=tuple(reversed(line[: i + 1])))

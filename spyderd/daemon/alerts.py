"""Which process image wrote a journal entry: the lookup the journal alert source needs.

A third-party alert (sshd, sudo, a kernel message) names a pid or a unit and a time; the
image that wrote it is looked for in the live graph first, then in stored history.
"""

from __future__ import annotations

from spyderd.graph import Graph
from spyderd.graph.query import History
from spyderd.model import Node
from spyderd.model.store import Store


class AlertImages:
    """Callable handed to `capture.journal.JournalFollower`: (pid, time, unit) -> image."""

    def __init__(self, graph: Graph, store: Store) -> None:
        self.graph = graph
        self.store = store

    def __call__(self, pid: int, t: int, unit: str) -> Node | None:
        """The process image that wrote a journal entry: pid alive at `t`, else the unit's.

        journald stamps entries when it receives them, a little after the write: an image
        running at `t` wins; failing that, one that ended or started within `slack` of it.
        """
        if pid:
            return self.image_of(pid, t)
        if unit:
            cands = [n for n in self.graph.live.values()
                     if unit in (n.attrs.get("unit"), n.attrs.get("systemd_unit"))
                     or str(n.attrs.get("cgroup", "")).endswith("/" + unit)]
            return max(cands, key=lambda n: n.start) if cands else None
        return None

    def image_of(self, pid: int, t: int, slack: int = 50_000_000) -> Node | None:
        cands = []
        live = self.graph.live.get(pid)
        if live is not None:
            cands.append(live)
        for i, n in enumerate(reversed(self.graph.nodes.values())):
            if i >= 50_000:
                break
            if n.kind == "process" and n.pid == pid and n is not live:
                cands.append(n)
        for s in (0, slack):
            alive = [n for n in cands if n.start <= t + s and (not n.end or n.end + s >= t)]
            if alive:
                return max(alive, key=lambda n: n.start)
        return History(self.store).by_pid(pid, at_ns=t)  # evicted from memory: the store

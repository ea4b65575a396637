"""Login sessions the enricher has seen, keyed by boot and audit session (see `sessions`)."""

from __future__ import annotations

from spyderd.enrich import procfs
from spyderd.enrich.contexts import SessionCtx
from spyderd.enrich.sessions import opened_by_login, session_key
from spyderd.enrich.users import NameCache
from spyderd.model import Node


class SessionTracker:
    """Session contexts by id; changed session nodes go to the shared `changed`."""

    def __init__(self, *, boot: str, proc: str, machine_id: str, names: NameCache,
                 stats: dict[str, int], changed: dict[str, Node]) -> None:
        self.boot = boot
        self.proc = proc
        self.machine_id = machine_id
        self.names = names
        self.stats = stats
        self.changed = changed
        self.by_id: dict[str, SessionCtx] = {}

    def get(self, session_id: str) -> SessionCtx | None:
        return self.by_id.get(session_id)

    def of(self, node: Node, parent: Node | None, facts: procfs.ProcFacts,
           attrs: dict) -> SessionCtx | None:
        """The session of a process observed in /proc; sets its session attributes."""
        if attrs["sessionid"] >= 0 and facts.sessionid != attrs["sessionid"]:
            facts.sessionid = attrs["sessionid"]
        key = session_key(self.boot, facts, self.proc)
        if key is None:
            return None
        sess = self.by_id.get(key.id)
        if sess is None:
            sess = self._new(key, node, parent, attrs)
        elif attrs["tty"] and not sess.node.attrs.get("tty"):
            sess.node.attrs.update(tty=attrs["tty"], interactive=True)
            self.changed[sess.node.id] = sess.node
        attrs["session_id"] = key.id
        attrs["interactive"] = bool(attrs["tty"]) or bool(sess.node.attrs.get("interactive"))
        return sess

    def _new(self, key, node: Node, parent: Node | None, attrs: dict) -> SessionCtx:
        exes = (node.attrs.get("exe", ""), parent.attrs.get("exe", "") if parent else "")
        login = attrs["loginuid"]
        user = self.names.user(login) if login >= 0 else attrs["user"]
        s = Node(id=key.id, kind="session", start=node.start, uid=max(login, -1),
                 attrs={"session_kind": key.kind, "sessionid": key.sessionid,
                        "loginuid": login, "user": user, "tty": attrs["tty"],
                        "leader": key.leader,
                        "leader_id": node.id if key.leader == node.pid else "",
                        "interactive": bool(attrs["tty"]) or opened_by_login(*exes),
                        "machine_id": self.machine_id})
        sess = SessionCtx(node=s)
        self.by_id[key.id] = sess
        self.stats["sessions"] += 1
        return sess

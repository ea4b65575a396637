"""Graph nodes, edges and findings, with the stable ids the store and spyderctl use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLOCK_TICK_NS = 10_000_000  # /proc reports start times in USER_HZ=100 ticks


def process_id(boot: str, pid: int, start_ns: int, exec_ktime: int = 0) -> str:
    """Stable id of one program image: survives pid reuse (start time) and daemon restarts.

    The start time is cut to clock ticks so the kernel's exact value and /proc's agree;
    an exec adds its boot-time stamp, because one process may run several images.
    """
    base = f"proc:{boot}:{start_ns // CLOCK_TICK_NS}:{pid}"
    return f"{base}:{exec_ktime}" if exec_ktime else base


def connection_id(boot: str, ktime: int, pid: int, local_port: int, remote_port: int) -> str:
    """Id of one TCP connection as seen from one side."""
    return f"conn:{boot}:{ktime}:{pid}:{local_port}:{remote_port}"


@dataclass(slots=True)
class Node:
    """A vertex of the causal graph (process image, connection, listener, machine...).

    `attrs` holds the kind's own fields (exe, args, addresses...). Process nodes keep
    `parent` (the image they came from) and `via` ("spawned" or "exec") so ancestry
    walks need no edge lookups.
    """

    id: str
    kind: str
    start: int = 0  # wall-clock ns
    end: int = 0
    pid: int = 0
    ppid: int = 0
    uid: int = 0
    parent: str = ""
    via: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "pid": self.pid,
            "ppid": self.ppid,
            "uid": self.uid,
            "parent": self.parent,
            "via": self.via,
        }
        d.update(self.attrs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        core = {k: d[k] for k in ("id", "kind", "start", "end", "pid", "ppid", "uid",
                                  "parent", "via") if k in d}
        attrs = {k: v for k, v in d.items() if k not in core}
        return cls(**core, attrs=attrs)

    @property
    def name(self) -> str:
        exe = self.attrs.get("exe") or ""
        return exe.rsplit("/", 1)[-1] if exe else self.attrs.get("comm", "")


@dataclass(frozen=True, slots=True)
class Edge:
    """A time-stamped causal edge: spawned, exec, connect, accept, listen, peer, ..."""

    src: str
    dst: str
    kind: str
    time: int

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "kind": self.kind, "time": self.time}


@dataclass(slots=True)
class Finding:
    """A rule match with the ids needed to cut its trace out of the graph."""

    id: str
    rule: str
    severity: str
    priority: int
    message: str
    time: int
    process_id: str
    trace_id: str
    root_id: str
    event: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    message_id: str = ""
    chain: list[dict[str, Any]] = field(default_factory=list)
    sent: bool = False
    refs: list[str] = field(default_factory=list)  # nodes the rule's condition referred to
    count: int = 1  # occurrences folded into this finding (same rule, image and args)
    last_time: int = 0  # time of the latest folded occurrence
    suppressed: str = ""  # name of the suppression policy that matched, if any
    delivered: list[str] = field(default_factory=list)  # sinks that accepted it
    incomplete: bool = False  # events were lost since the subject started: chain may have gaps

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "priority": self.priority,
            "message": self.message,
            "time": self.time,
            "process_id": self.process_id,
            "trace_id": self.trace_id,
            "root_id": self.root_id,
            "event": self.event,
            "tags": self.tags,
            "message_id": self.message_id,
            "chain": self.chain,
            "sent": self.sent,
            "refs": self.refs,
            "count": self.count,
            "last_time": self.last_time,
            "suppressed": self.suppressed,
            "delivered": self.delivered,
            "incomplete": self.incomplete,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        names = cls.__slots__  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(slots=True)
class Trace:
    """Findings grouped by causal root (and request), scored, scheduled for the sinks.

    Stored as JSON (`to_dict`); a record that `Graph.add_finding` made without a tracker
    (a replay, a trace no longer in memory) only has id, root, findings, first and last:
    `tracked` tells them apart. Counts, users, containers and machines stay None until the
    trace's view in the store is counted.
    """

    id: str
    root: str
    key: str = ""
    root_kind: str = ""
    root_name: str = ""
    root_pid: int = 0
    root_label: str = ""
    trigger: str = ""
    units: list[str] = field(default_factory=list)  # requests below a server root
    dsts: list[str] = field(default_factory=list)  # outbound "ip:port" of its processes
    findings: list[str] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)  # rule -> worst severity
    score: int = 0
    threshold: int = 0
    suppressed: str = ""
    first: int = 0
    last: int = 0
    emitted: dict[str, int] = field(default_factory=dict)  # sink -> score it last received
    mitre: list[str] = field(default_factory=list)
    priority: int = 7
    merged_into: str = ""
    counts: dict[str, int] | None = None
    users: list[str] | None = None
    containers: list[str] | None = None
    machines: list[str] | None = None
    tracked: bool = True

    def to_dict(self) -> dict[str, Any]:
        if not self.tracked:
            return {"id": self.id, "root": self.root, "findings": self.findings,
                    "first": self.first, "last": self.last}
        d = {k: getattr(self, k) for k in _TRACE_FIELDS}
        for k in _TRACE_OPTIONAL:
            if d[k] in ("", None):
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        known = {k: v for k, v in d.items() if k in _TRACE_FIELDS}
        return cls(**known, tracked="rules" in d)

    def count(self, counts: dict[str, Any]) -> None:
        """Take the view's counts, users, containers and machines (`traces.view_counts`)."""
        self.counts, self.users = counts["counts"], counts["users"]
        self.containers, self.machines = counts["containers"], counts["machines"]


_TRACE_FIELDS = tuple(n for n in Trace.__slots__ if n != "tracked")  # type: ignore[attr-defined]
_TRACE_OPTIONAL = ("key", "root_label", "merged_into", "counts", "users", "containers",
                   "machines")

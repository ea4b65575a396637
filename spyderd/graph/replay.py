"""Replay source: a recorded event stream (JSON lines) fed through a fresh in-memory graph.

A recording is what `spyderctl events -o json` prints (one event per line, `kind` first), or
what `spyderctl record` writes: the same event lines, preceded by the context they need so a
replay reaches the same verdicts as the live daemon did:

    {"kind": "recording", "boot": "...", "machine_id": "...", "boot_wall_ns": N, ...}
    {"kind": "node", "node": {...}}        a context node (machine, session, container)
    {"kind": "snapshot", "pid": 120, "ppid": 1, "start_ns": ..., "exe": ..., "args": [...],
     "comm": ..., "uid": 0, "gid": 0, "listen_ports": [8000], "attrs": {...}}
                                           a process already running when recording began
    {"kind": "exec", "time": ..., "pid": ..., ...}    events, in time order

Snapshot lines list parents before children, like the daemon's startup snapshot; they become
graph nodes before the first event, so `ancestor(...)` sees a web server started long before
the recording. Processes started during the recording take their context attributes
(container, namespaces, session, user) from their parent, as the live enricher would find
them. Every line is checked; a bad one is a located `ReplayError` (`file:line: message`),
never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spyderd.capture.snapshot import ProcInfo
from spyderd.errors import SpyderError
from spyderd.graph import Graph
from spyderd.model import Edge, Event, Node, event_from_dict

REPLAY_BOOT = "replay"
FLUSH_EVERY = 5000
# attributes a new process shares with its parent until something changes them
INHERITED = (
    "container_id", "container_name", "container_image", "container_runtime", "k8s_pod",
    "k8s_namespace", "k8s_pod_uid", "k8s_container", "netns", "pidns", "mntns", "userns",
    "utsns", "loginuid", "sessionid", "tty", "user", "group", "session_id", "interactive",
)  # fmt: skip
_SNAPSHOT_KEYS = ("pid", "ppid", "start_ns", "comm", "exe", "args", "uid", "gid", "cgroup")


class ReplayError(SpyderError):
    """A recording cannot be read; the message starts with `file:line:`."""


@dataclass(slots=True)
class Recording:
    """A parsed recording: header, context nodes, startup snapshot and events, in order."""

    name: str
    header: dict[str, Any] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    snapshot: list[ProcInfo] = field(default_factory=list)
    listening: dict[int, list[int]] = field(default_factory=dict)
    attrs: dict[int, dict[str, Any]] = field(default_factory=dict)  # by snapshot pid
    events: list[Event] = field(default_factory=list)


def read_recording(path: str | Path) -> Recording:
    """Parse a recording file ("-" is not supported: replays need a file to point into)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{path}:1: cannot read recording: {exc}") from None
    return parse_recording(text.splitlines(), str(path))


def parse_recording(lines: Iterable[str], name: str = "<recording>") -> Recording:
    rec = Recording(name)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReplayError(f"{name}:{number}: not JSON: {exc.msg} (column {exc.colno})")
        if not isinstance(data, dict):
            raise ReplayError(f"{name}:{number}: each line must be a JSON object")
        try:
            _add_line(rec, data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ReplayError(f"{name}:{number}: {exc}") from None
    return rec


def _add_line(rec: Recording, data: dict[str, Any]) -> None:
    kind = data.get("kind")
    if kind == "recording":
        rec.header = data
    elif kind == "node":
        rec.nodes.append(Node.from_dict(data["node"]))
    elif kind == "snapshot":
        if rec.events:
            raise ValueError("snapshot lines must come before the first event")
        info = ProcInfo(**{k: data[k] for k in _SNAPSHOT_KEYS if k in data})
        if not isinstance(info.pid, int) or not isinstance(info.start_ns, int):
            raise ValueError("snapshot needs integer pid and start_ns")
        rec.snapshot.append(info)
        if data.get("listen_ports"):
            rec.listening[info.pid] = [int(p) for p in data["listen_ports"]]
        if data.get("attrs"):
            rec.attrs[info.pid] = dict(data["attrs"])
    else:
        rec.events.append(event_from_dict(data))


class ReplayEnricher:
    """Context for replayed processes: recorded attributes for snapshot processes, the
    parent's context for processes started during the recording."""

    def __init__(self, snapshot_attrs: dict[int, dict[str, Any]]) -> None:
        self.snapshot_attrs = snapshot_attrs
        self.loading = False

    def process_attrs(self, node: Node, parent: Node | None) -> dict:
        if self.loading and node.pid in self.snapshot_attrs:
            return dict(self.snapshot_attrs[node.pid])
        if parent is None:
            return {}
        return {k: parent.attrs[k] for k in INHERITED if k in parent.attrs}

    def context_nodes(self, node: Node) -> list[tuple[Node, Edge]]:
        return []


class ReplaySource:
    """A recording as a capture-like source: a graph primed with its context, then its
    events one at a time (or in batches through `poll`, like `Capture.poll`)."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self._next = 0
        header = recording.header
        self.enricher = ReplayEnricher(recording.attrs)
        self.graph = Graph(
            None,
            str(header.get("boot") or REPLAY_BOOT),
            boot_wall_ns=int(header.get("boot_wall_ns") or 0),
            machine_id=str(header.get("machine_id") or ""),
            enricher=self.enricher,
            max_recent=max(200_000, 4 * len(recording.events)),
        )
        for node in recording.nodes:
            self.graph.nodes[node.id] = node
        self.enricher.loading = True
        try:
            self.graph.load_snapshot(recording.snapshot, listening=recording.listening)
        finally:
            self.enricher.loading = False

    def poll(self, max_events: int = 1000) -> list[Event]:
        batch = self.recording.events[self._next : self._next + max_events]
        self._next += len(batch)
        return batch

    def __iter__(self) -> Iterator[tuple[Event, Node | None]]:
        """Each event with the process node the graph filed it under."""
        for ev in self.recording.events[self._next :]:
            self._next += 1
            node = self.graph.apply(ev)
            if self._next % FLUSH_EVERY == 0:
                self.graph.flush()  # no store: only drops the pending batch, bounds memory
            yield ev, node

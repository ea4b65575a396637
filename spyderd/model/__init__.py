"""The typed events and graph nodes every stage of spyderd exchanges.

Events come out of `capture` (or a replay file) and are never changed afterwards. Nodes are the
graph's vertices; their few mutable fields (end time, flags) change as later events
arrive. Everything here is plain data that serialises to JSON-compatible dicts.
"""

from spyderd.model.events import (
    EVENT_TYPES,
    AcceptEvent,
    AlertEvent,
    BindEvent,
    ConnectEvent,
    CredEvent,
    DupEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    KernelEvent,
    ListenEvent,
    PrctlEvent,
    SessionEvent,
    SocketEvent,
    UdpEvent,
    UnixConnectEvent,
    WroteExecEvent,
    event_from_dict,
    event_record,
    event_to_dict,
)
from spyderd.model.nodes import Edge, Finding, Node, Trace, connection_id, process_id

__all__ = [
    "EVENT_TYPES",
    "AcceptEvent",
    "AlertEvent",
    "BindEvent",
    "ConnectEvent",
    "CredEvent",
    "DupEvent",
    "Edge",
    "Event",
    "ExecEvent",
    "ExitEvent",
    "FileEvent",
    "Finding",
    "ForkEvent",
    "KernelEvent",
    "ListenEvent",
    "Node",
    "PrctlEvent",
    "SessionEvent",
    "SocketEvent",
    "Trace",
    "UdpEvent",
    "UnixConnectEvent",
    "WroteExecEvent",
    "connection_id",
    "event_from_dict",
    "event_record",
    "event_to_dict",
    "process_id",
]

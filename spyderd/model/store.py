"""What the stages ask of the store, as a protocol beside `Sink`, `Enricher` and
`GraphContext`: the findings intake, the daemon and history queries are written against
this, and both the LMDB store (`graph.store.Store`) and its guard for degraded mode
(`graph.guard.GuardedStore`) implement it (tests/model/test_store_protocol.py checks).

Trace records cross this boundary as JSON dicts (`Trace.from_dict` / `Trace.to_dict`);
events as the graph's (event, process id) pairs (no per-event dict on the daemon's path)
or the dicts of `event_record`; reads return the dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

from spyderd.model.nodes import Edge, Finding, Node


@runtime_checkable
class Store(Protocol):
    def node(self, node_id: str) -> Node | None: ...

    def edges(self, node_id: str, direction: str = "out") -> list[Edge]: ...

    def processes_by_pid(self, pid: int) -> list[Node]: ...

    def finding(self, fid: str) -> Finding | None: ...

    def findings(self, since_ns: int = 0, rule: str | None = None) -> Iterator[Finding]: ...

    def trace(self, tid: str) -> dict | None: ...

    def traces(self) -> Iterator[dict]: ...

    def events(self, since_ns: int = 0, until_ns: int | None = None, *,
               pid: int | None = None, path: str | None = None,
               remote_ip: str | None = None, uid: int | None = None,
               container_id: str | None = None) -> Iterator[dict]: ...

    def write_batch(self, nodes: list[Node], edges: list[Edge], events: list,
                    findings: list[Finding], traces: dict[str, dict],
                    extra: Callable[[Any], None] | None = None) -> None: ...

    def get_meta(self, key: str) -> Any: ...

    def put_meta(self, key: str, value: Any) -> None: ...

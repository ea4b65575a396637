"""Where findings and traces go: journald (by default) and JSON lines (optional).

Every sink has the same small surface (`Sink`): `send(finding)` and `send_trace(trace)`
return False rather than raise when the destination is unreachable, so the daemon keeps
the item and tries again; `errors` and `status()` feed `spyderctl status`.
"""

from __future__ import annotations

from typing import Any, Protocol

from spyderd.model import Finding, Trace


class Sink(Protocol):
    name: str
    errors: int

    def send(self, f: Finding) -> bool: ...

    def send_trace(self, tr: Trace) -> bool: ...

    def status(self) -> dict[str, Any]: ...


__all__ = ["Sink"]

"""Findings and traces as JSON lines, for SIEM shippers (Filebeat, Vector, Fluent Bit).

One object per line, `"type": "finding"` or `"type": "trace"`, the same fields as
`spyderctl findings -o json` and the trace records of `spyderctl traces -o json`. The file
is opened in append mode with mode 0640; when it is rotated away (renamed or deleted, as
logrotate does), the next write reopens the path, so no `copytruncate` is needed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from spyderd.model import Finding, Trace

log = logging.getLogger("spyderd.sinks")
_INTERNAL = ("sent", "delivered")


class JsonlSink:
    """Appends one JSON object per finding or trace; failures are counted, not raised."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = -1
        self._ino: tuple[int, int] | None = None
        self.sent = 0
        self.errors = 0
        self.last_error = ""

    def send(self, f: Finding) -> bool:
        rec = {"type": "finding", **{k: v for k, v in f.to_dict().items() if k not in _INTERNAL}}
        return self._write(rec)

    def send_trace(self, tr: Trace) -> bool:
        record = {k: v for k, v in tr.to_dict().items() if k != "emitted"}
        return self._write({"type": "trace", **record})

    def _write(self, rec: dict[str, Any]) -> bool:
        line = (json.dumps(rec, separators=(",", ":"), sort_keys=False) + "\n").encode()
        try:
            self._reopen_if_rotated()
            os.write(self._fd, line)
        except OSError as exc:
            self.errors += 1
            if self.last_error != str(exc):
                log.warning("cannot write %s: %s", self.path, exc)
            self.last_error = str(exc)
            self.close()
            return False
        self.sent += 1
        return True

    def _reopen_if_rotated(self) -> None:
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd >= 0 and current == self._ino:
            return
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o640)
        st = os.fstat(self._fd)
        self._ino = (st.st_dev, st.st_ino)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._ino = -1, None

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "errors": self.errors, "last_error": self.last_error,
                "path": str(self.path)}

"""Findings to journald with the SPYDER_* fields analysts and tests rely on."""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from spyderd.model import Finding
from spyderd.traces.build import chain_text

log = logging.getLogger("spyderd.sinks")


def finding_fields(f: Finding, machine_id: str) -> dict[str, Any]:
    """journald fields for one finding (DESIGN.md "A finding in journald")."""
    subject = next((c for c in f.chain if c["id"] == f.process_id), {})
    mitre = [t for t in f.tags if t[:1] == "T" and t[1:5].isdigit()]
    return {
        "MESSAGE": f.message,
        "PRIORITY": str(f.priority),
        "MESSAGE_ID": f.message_id,
        "SYSLOG_IDENTIFIER": "spyderd",
        "SPYDER_FINDING_ID": f.id,
        "SPYDER_TRACE_ID": f.trace_id,
        "SPYDER_RULE": f.rule,
        "SPYDER_SEVERITY": f.severity,
        "SPYDER_PROCESS_ID": f.process_id,
        "SPYDER_PID": str(subject.get("pid", f.event.get("pid", ""))),
        "SPYDER_EXE": subject.get("exe", ""),
        "SPYDER_CMDLINE": shlex.join(subject.get("args") or []),
        "SPYDER_UID": str(subject.get("uid", f.event.get("uid", ""))),
        "SPYDER_CONTAINER_ID": subject.get("container_id", ""),
        "SPYDER_CONTAINER_NAME": subject.get("container_name", ""),
        "SPYDER_MACHINE_ID": machine_id,
        "SPYDER_MITRE": ",".join(mitre),
        "SPYDER_CHAIN": chain_text(f.chain),
        "SPYDER_CHAIN_JSON": json.dumps(f.chain, separators=(",", ":")),
    }


class JournaldSink:
    """Sends findings; a failure is counted and reported, the caller keeps the finding."""

    def __init__(self, machine_id: str) -> None:
        from systemd import journal

        self._send = journal.send
        self.machine_id = machine_id
        self.sent = 0
        self.errors = 0
        self.last_error = ""

    def send(self, f: Finding) -> bool:
        try:
            self._send(**finding_fields(f, self.machine_id))
        except OSError as exc:
            self.errors += 1
            self.last_error = f"journald unreachable: {exc}"
            log.warning("could not send finding %s to journald: %s", f.id, exc)
            return False
        self.sent += 1
        return True

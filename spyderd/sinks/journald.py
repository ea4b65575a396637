r"""Findings and traces to journald with the SPYDER_* fields analysts and tests rely on.

Finding entries carry the fields of DESIGN.md ("A finding in journald"), plus
`SPYDER_KIND=finding`, `SPYDER_COUNT` (occurrences folded into it) and `SPYDER_TRACE_CMD`
(the command that shows the full trace). `SPYDER_CHAIN` and `SPYDER_CHAIN_JSON` start at
the trace root (`… > ` for the ancestry above it) and are cut to stay under journald's
4,096-byte JSON field limit (see `traces.compact`). Trace entries carry
`SPYDER_KIND=trace`, the trace's own MESSAGE_ID, `SPYDER_TRACE_SCORE`, `SPYDER_TRACE_ROOT`,
`SPYDER_TRACE_RULES` and the rest listed in `trace_fields`. `PRIORITY` comes from severity
(critical 2, high 3, medium 4, low 5, info 6); a trace takes its most severe finding's.

Every text field is made printable before it is sent: control characters other than
newline and tab (ESC, BEL, NUL, DEL, the C1 range) become `\xNN` (`\u00NN` inside the
JSON field), and every field is cut under the 4,096-byte limit. A process cannot then turn
its argv into a "[blob data]" entry that `journalctl` does not show, drive the terminal of
whoever reads the journal, or break `journalctl -o json`; field forging through newlines is
impossible anyway, since the native protocol sends values that hold one length-prefixed.

journald being down is not an error the caller must handle: `send` returns False, the
failure is counted, logged once per outage (not once per finding), and the caller keeps
the finding in the store to send again.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
import uuid
from typing import Any

from spyderd.model import Finding, Trace
from spyderd.traces.build import chain_text
from spyderd.traces.compact import BUDGET, dumps, journal_chain

log = logging.getLogger("spyderd.sinks")

# journald's catalog keys on this: it must never change (see packaging/spyderd.catalog)
TRACE_MESSAGE_ID = uuid.UUID("0f6c7a52-3d1e-4b8e-9a4f-5e2d8c7b1a90").hex


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
JSON_FIELDS = frozenset({"SPYDER_CHAIN_JSON"})


def printable(text: str, *, json_text: bool = False) -> str:
    """Control characters (newline and tab aside) as visible escapes; lone surrogates too."""
    form = "\\u{:04x}" if json_text else "\\x{:02x}"
    text = _CONTROL.sub(lambda m: form.format(ord(m.group())), text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Every string field printable and under journald's JSON field limit."""
    return {k: _fit(printable(v, json_text=k in JSON_FIELDS)) if isinstance(v, str) else v
            for k, v in fields.items()}


def _iso(ns: int) -> str:
    if not ns:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + \
        f".{ns // 1_000_000 % 1000:03d}Z"


def finding_fields(f: Finding, machine_id: str) -> dict[str, Any]:
    """journald fields for one finding (DESIGN.md "A finding in journald")."""
    subject = next((c for c in f.chain if c["id"] == f.process_id), {})
    mitre = [t for t in f.tags if t[:1] == "T" and t[1:5].isdigit()]
    return {
        "MESSAGE": f.message + (f" (x{f.count})" if f.count > 1 else ""),
        "PRIORITY": str(f.priority),
        "MESSAGE_ID": f.message_id,
        "SYSLOG_IDENTIFIER": "spyderd",
        "SPYDER_KIND": "finding",
        "SPYDER_FINDING_ID": f.id,
        "SPYDER_TRACE_ID": f.trace_id,
        "SPYDER_RULE": f.rule,
        "SPYDER_SEVERITY": f.severity,
        "SPYDER_PROCESS_ID": f.process_id,
        "SPYDER_PID": str(subject.get("pid", f.event.get("pid", ""))),
        "SPYDER_EXE": subject.get("exe", ""),
        "SPYDER_CMDLINE": _fit(shlex.join(subject.get("args") or [])),
        "SPYDER_UID": str(subject.get("uid", f.event.get("uid", ""))),
        "SPYDER_USER": subject.get("user", ""),
        "SPYDER_CONTAINER_ID": subject.get("container_id", ""),
        "SPYDER_CONTAINER_NAME": subject.get("container_name", ""),
        "SPYDER_MACHINE_ID": machine_id,
        "SPYDER_MITRE": ",".join(mitre),
        "SPYDER_COUNT": str(f.count),
        "SPYDER_INCOMPLETE": "1" if f.incomplete else "0",  # events lost: chain may have gaps
        **chain_fields(f),
    }


def chain_fields(f: Finding) -> dict[str, str]:
    """SPYDER_CHAIN and SPYDER_CHAIN_JSON from the trace root, cut to stay readable in
    `journalctl -o json` (see `traces.compact`), and where to see all of it."""
    short = journal_chain(f.chain)
    text = chain_text(f.chain)
    if len(text.encode()) > BUDGET:
        text = chain_text(short)
    return {"SPYDER_CHAIN": _fit(text), "SPYDER_CHAIN_JSON": dumps(short),
            "SPYDER_TRACE_CMD": f"spyderctl trace {f.id}"}


def _fit(text: str) -> str:
    """A text field cut below journald's JSON limit (the end marked with `…`)."""
    raw = text.encode()
    return text if len(raw) <= BUDGET else raw[:BUDGET].decode(errors="ignore") + "…"


def trace_message(tr: Trace) -> str:
    rules = list(tr.rules)
    shown = ", ".join(rules[:4]) + (f" and {len(rules) - 4} more" if len(rules) > 4 else "")
    root = f"{tr.root_label or tr.root_name or '?'} [{tr.root_pid}]"
    return (f"Trace {tr.id} scored {tr.score} (threshold {tr.threshold}): "
            f"{len(rules)} rule{'s' if len(rules) != 1 else ''} ({shown}) in "
            f"{len(tr.findings)} findings below {root} "
            f"({tr.root_kind or '?'} root)")


def trace_fields(tr: Trace, machine_id: str) -> dict[str, Any]:
    """journald fields for one trace entry."""
    counts = tr.counts or {}
    return {
        "MESSAGE": trace_message(tr),
        "PRIORITY": str(min(tr.priority, 4)),
        "MESSAGE_ID": TRACE_MESSAGE_ID,
        "SYSLOG_IDENTIFIER": "spyderd",
        "SPYDER_KIND": "trace",
        "SPYDER_TRACE_ID": tr.id,
        "SPYDER_TRACE_SCORE": str(tr.score),
        "SPYDER_TRACE_THRESHOLD": str(tr.threshold),
        "SPYDER_TRACE_ROOT": tr.root,
        "SPYDER_TRACE_ROOT_KIND": tr.root_kind,
        "SPYDER_TRACE_ROOT_PID": str(tr.root_pid),
        "SPYDER_TRACE_ROOT_NAME": tr.root_name,
        "SPYDER_TRACE_ROOT_LABEL": tr.root_label,
        "SPYDER_TRACE_CMD": f"spyderctl trace {tr.id}",
        "SPYDER_TRACE_RULES": ",".join(tr.rules),
        "SPYDER_TRACE_FINDINGS": " ".join(tr.findings),
        "SPYDER_TRACE_TRIGGER": tr.trigger,
        "SPYDER_TRACE_PROCESSES": str(counts.get("processes", "")),
        "SPYDER_TRACE_CONNECTIONS": str(counts.get("connections", "")),
        "SPYDER_TRACE_FILES": str(counts.get("files", "")),
        "SPYDER_TRACE_ALERTS": str(counts.get("alerts", "")),
        "SPYDER_TRACE_USERS": ",".join(tr.users or []),
        "SPYDER_TRACE_CONTAINERS": ",".join(tr.containers or []),
        "SPYDER_TRACE_MACHINES": ",".join(tr.machines or []),
        "SPYDER_TRACE_FIRST": _iso(tr.first),
        "SPYDER_TRACE_LAST": _iso(tr.last),
        "SPYDER_MITRE": ",".join(tr.mitre),
        "SPYDER_MACHINE_ID": machine_id,
    }


class JournaldSink:
    """Sends findings and traces; a failure is counted and reported, the caller retries."""

    name = "journald"

    def __init__(self, machine_id: str, send=None) -> None:
        if send is None:
            from systemd import journal

            send = journal.send
        self._send = send
        self.machine_id = machine_id
        self.sent = 0
        self.errors = 0
        self.last_error = ""
        self.down_since = 0.0

    def send(self, f: Finding) -> bool:
        return self._deliver(finding_fields(f, self.machine_id), f"finding {f.id}")

    def send_trace(self, tr: Trace) -> bool:
        return self._deliver(trace_fields(tr, self.machine_id), f"trace {tr.id}")

    def _deliver(self, fields: dict[str, Any], what: str) -> bool:
        try:
            self._send(**safe_fields(fields))
        except OSError as exc:
            self.errors += 1
            self.last_error = f"journald unreachable: {exc}"
            if not self.down_since:
                self.down_since = time.time()
                log.warning("journald unreachable (%s); keeping %s and what follows in the "
                            "store until it returns", exc, what)
            return False
        if self.down_since:
            log.info("journald reachable again after %.0f s; sending what was kept",
                     time.time() - self.down_since)
            self.down_since = 0.0
        self.sent += 1
        return True

    @property
    def down(self) -> bool:
        return bool(self.down_since)

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "errors": self.errors, "last_error": self.last_error,
                "down_since": self.down_since}

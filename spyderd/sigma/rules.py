"""A converted Sigma rule as a spyderd rule mapping: metadata carried over, id recorded.

level becomes severity, ATT&CK tags (`attack.t1059.004`) become technique ids and tactic
tags (`attack.execution`) plain tags, falsepositives are appended to the description, and
`sigma_id` records the rule's Sigma id so a finding can be traced back to it.
"""

from __future__ import annotations

import re
from typing import Any

LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high",
          "critical": "critical"}  # fmt: skip
_TECHNIQUE = re.compile(r"t\d{4}(\.\d{3})?")
# what the output names, by the first event kind of the rule
_OUTPUT = {
    "exec": "{process.name} (pid {process.pid}, uid {user.uid}): {process.cmdline}",
    "connect": "{process.name} (pid {process.pid}) {connection.direction} "
    "{connection.remote_ip}:{connection.remote_port}",
    "accept": "{process.name} (pid {process.pid}) {connection.direction} "
    "{connection.remote_ip}:{connection.remote_port}",
    "file": "{process.name} (pid {process.pid}) {file.op} {file.changed_path}",
    "alert": "{alert.identifier}: {alert.message}",
}


def tags(rule: Any) -> list[str]:
    """ATT&CK technique ids upper-cased (T1059.004), other tags as `namespace.name`'s name."""
    out: list[str] = []
    for tag in rule.tags:
        name = str(tag.name)
        if tag.namespace == "attack" and _TECHNIQUE.fullmatch(name):
            out.append(name.upper())
        elif tag.namespace == "attack":
            out.append(name.replace("-", "_"))
        else:
            out.append(f"{tag.namespace}.{name}")
    return list(dict.fromkeys(out))


def description(rule: Any) -> str:
    parts = [str(rule.description or rule.title).strip()]
    if rule.falsepositives:
        parts.append("False positives: " + "; ".join(str(f) for f in rule.falsepositives) + ".")
    if rule.references:
        parts.append("References: " + " ".join(str(r) for r in rule.references))
    return "\n".join(parts)


def rule_name(rule: Any, index: int = 0) -> str:
    name = str(rule.title).strip() or f"Sigma {rule.id}"
    return name if index == 0 else f"{name} ({index + 1})"


def rule_entry(rule: Any, condition: str, events: list[str], index: int = 0) -> dict[str, Any]:
    """The spyderd rule mapping for one converted condition of `rule`."""
    level = str(rule.level.name).lower() if rule.level is not None else "medium"
    entry: dict[str, Any] = {
        "rule": rule_name(rule, index),
        "description": description(rule),
        "event": events[0] if len(events) == 1 else list(events),
        "condition": condition,
        "severity": LEVELS.get(level, "medium"),
        "tags": tags(rule),
        "output": "Sigma: " + str(rule.title).replace("{", "{{").replace("}", "}}") + ": "
        + _OUTPUT.get(events[0], "{process.name} (pid {process.pid})"),
    }  # fmt: skip
    if rule.id is not None:
        entry["sigma_id"] = str(rule.id)
    if str(getattr(rule.status, "name", "")).lower() in ("deprecated", "unsupported"):
        entry["enabled"] = False
    return entry

"""The processing pipeline: Sigma log sources to spyderd event kinds, Sigma fields to spyderd's.

Sigma names what a rule reads by log source (`category: process_creation`, `product:
linux`) and by the field names of its taxonomy (Image, CommandLine, DestinationIp, ...).
For each supported log source this pipeline

- records the spyderd event kinds the rule runs on (state `spyderd_events`) and the field
  that unbound keywords search (state `spyderd_keywords`),
- maps the taxonomy's field names to spyderd fields,
- adds the condition that narrows the kind (`file_delete` is a file event with
  `file.op = unlink`),

and fails the rule, with the reason, when its log source is not one spyderd captures.
Fields without a spyderd equivalent pass through unmapped; the backend reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    FieldMappingTransformation,
    MapStringTransformation,
    RuleFailureTransformation,
    SetStateTransformation,
)

# Sigma's process fields (Sysmon's taxonomy, which Sigma's Linux rules use too)
PROCESS_FIELDS: dict[str, str] = {
    "Image": "process.exe",
    "CommandLine": "process.cmdline",
    "CurrentDirectory": "process.cwd",
    "ProcessId": "process.pid",
    "User": "user.name",
    "LogonId": "process.sessionid",
    "TerminalSessionId": "process.tty",
    "ParentImage": "parent.exe",
    "ParentCommandLine": "parent.cmdline",
    "ParentProcessId": "process.ppid",
    "ParentCurrentDirectory": "parent.cwd",
}
NETWORK_FIELDS: dict[str, str] = {
    "DestinationIp": "connection.remote_ip",
    "DestinationPort": "connection.remote_port",
    "SourceIp": "connection.local_ip",
    "SourcePort": "connection.local_port",
    "Protocol": "connection.protocol",
    "Initiated": "connection.direction",
    "DestinationIsIpv6": "connection.family",
}
FILE_FIELDS: dict[str, str] = {
    "TargetFilename": "file.changed_path",
    "SourceFilename": "file.path",
}
SYSLOG_FIELDS: dict[str, str] = {
    "message": "alert.message",
    "Message": "alert.message",
    "SYSLOG_IDENTIFIER": "alert.identifier",
    "unit": "alert.unit",
}


@dataclass(frozen=True)
class Source:
    """How one Sigma log source is read in spyderd."""

    category: str | None
    service: str | None
    events: tuple[str, ...]
    keywords: str  # the field unbound keywords search
    fields: dict[str, str]
    narrow: dict[str, str] = field(default_factory=dict)  # spyderd field -> required value


SOURCES: tuple[Source, ...] = (
    Source("process_creation", None, ("exec",), "process.cmdline", PROCESS_FIELDS),
    Source("network_connection", None, ("connect", "accept"), "process.cmdline",
           {**PROCESS_FIELDS, **NETWORK_FIELDS}),
    Source("file_event", None, ("file",), "file.changed_path", {**PROCESS_FIELDS, **FILE_FIELDS}),
    Source("file_change", None, ("file",), "file.changed_path", {**PROCESS_FIELDS, **FILE_FIELDS}),
    Source("file_delete", None, ("file",), "file.path", {**PROCESS_FIELDS, **FILE_FIELDS},
           {"file.op": "unlink"}),
    Source("file_rename", None, ("file",), "file.changed_path",
           {**PROCESS_FIELDS, **FILE_FIELDS}, {"file.op": "rename"}),
    Source("file_access", None, ("file",), "file.path", {**PROCESS_FIELDS, **FILE_FIELDS},
           {"file.op": "read"}),
    Source(None, "syslog", ("alert",), "alert.message", SYSLOG_FIELDS),
    Source(None, "journald", ("alert",), "alert.message", SYSLOG_FIELDS),
)  # fmt: skip


def source_for(logsource: Any) -> Source | None:
    """The supported source a rule's `logsource:` is, if any."""
    for source in SOURCES:
        if source.category and logsource.category == source.category:
            return source
        if source.service and logsource.service == source.service:
            return source
    return None


def _name(source: Source) -> str:
    return source.category or f"service {source.service}"


def _items(source: Source) -> list[ProcessingItem]:
    def cond() -> list[LogsourceCondition]:  # each item needs its own condition objects
        return [LogsourceCondition(category=source.category, product="linux",
                                   service=source.service)]  # fmt: skip

    tag = f"spyderd_{(source.category or source.service)}"
    items = [
        ProcessingItem(SetStateTransformation("spyderd_events", list(source.events)),
                       rule_conditions=cond(), identifier=f"{tag}_events"),
        ProcessingItem(SetStateTransformation("spyderd_keywords", source.keywords),
                       rule_conditions=cond(), identifier=f"{tag}_keywords"),
        ProcessingItem(MapStringTransformation({"true": "out", "false": "in"}),
                       rule_conditions=cond(), identifier=f"{tag}_initiated",
                       field_name_conditions=[IncludeFieldCondition(fields=["Initiated"])]),
        ProcessingItem(MapStringTransformation({"true": "6", "false": "4"}),
                       rule_conditions=cond(), identifier=f"{tag}_ipv6",
                       field_name_conditions=[IncludeFieldCondition(fields=["DestinationIsIpv6"])]),
        ProcessingItem(FieldMappingTransformation(dict(source.fields)), rule_conditions=cond(),
                       identifier=f"{tag}_fields"),
    ]  # fmt: skip
    if source.narrow:
        items.append(
            ProcessingItem(
                AddConditionTransformation(dict(source.narrow)),
                rule_conditions=cond(),
                identifier=f"{tag}_narrow",
            )
        )
    return items


def spyderd_pipeline() -> ProcessingPipeline:
    """Log sources and fields of Linux Sigma rules, as spyderd reads them."""
    items: list[ProcessingItem] = []
    for source in SOURCES:
        items.extend(_items(source))
    supported = ", ".join(_name(s) for s in SOURCES)
    items.append(
        ProcessingItem(
            RuleFailureTransformation(
                f"log source not captured by spyderd (it reads product linux: {supported})"
            ),
            rule_conditions=[
                LogsourceCondition(category=s.category, product="linux", service=s.service)
                for s in SOURCES
            ],
            rule_condition_linking=any,
            rule_condition_negation=True,
            identifier="spyderd_unsupported_logsource",
        )
    )
    return ProcessingPipeline(
        name="spyderd: Linux log sources and fields", priority=20, items=items,
        allowed_backends=frozenset({"spyderd"}),
    )  # fmt: skip

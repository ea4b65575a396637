"""`spyderctl rules import-sigma`: Sigma files to one spyderd rule file, and a report.

Every rule is converted on its own, so one that cannot be converted is reported (file, title,
id, reason) and the others still are. A converted condition is compiled by spyderd's own
rule compiler before it is written: what spyderd would refuse is reported here, never
written. Correlation rules: event_count and value_count over one rule become an `aggregate:`
block on that rule's condition (group-by fields mapped like the rule's, gte/gt thresholds);
`temporal_ordered` becomes a sequence (steps: the referenced rules, window: the timespan);
unordered temporal correlations and other thresholds are reported, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import (
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from spyderd.rules.collector import collect
from spyderd.rules.fields import FIELDS
from spyderd.rules.reader import read_text
from spyderd.rules.ruleset import build_rules
from spyderd.sigma.backend import SpyderdBackend
from spyderd.sigma.pipeline import source_for
from spyderd.sigma.rules import rule_entry, rule_name

SIGMA_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A Sigma rule that was not converted, and why."""

    file: str
    title: str
    id: str
    reason: str

    def __str__(self) -> str:
        ident = f" ({self.id})" if self.id else ""
        return f"{self.file}: {self.title}{ident}: not converted: {self.reason}"


@dataclass(slots=True)
class Report:
    """What one import produced: the spyderd rule mappings and the rules left out."""

    converted: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def yaml(self) -> str:
        head = (
            "# spyderd rules converted from Sigma by `spyderctl rules import-sigma`\n"
            f"# {len(self.converted)} converted, {len(self.skipped)} not converted\n"
        )
        body = yaml.safe_dump(self.converted, sort_keys=False, allow_unicode=True, width=100)
        return head + (body if self.converted else "[]\n")


def sigma_files(paths: Iterable[str | Path]) -> list[Path]:
    """The Sigma files named, directories expanded to their .yml/.yaml files in name order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in SIGMA_SUFFIXES))
        else:
            out.append(path)
    return out


def import_sigma(paths: Iterable[str | Path]) -> Report:
    """Convert every rule of every file; raises OSError for a file that cannot be read."""
    report = Report()
    files = sigma_files(paths)
    collection = SigmaCollection.load_ruleset([str(p) for p in files], collect_errors=True)
    collection.resolve_rule_references()
    backend = SpyderdBackend()
    names: set[str] = set()
    for rule in collection.rules:
        for entry in _convert(rule, backend, report):
            _unique_name(entry, rule, names)
            report.converted.append(entry)
    return report


def _convert(rule: Any, backend: SpyderdBackend, report: Report) -> list[dict[str, Any]]:
    if rule.errors:
        _skip(report, rule, "; ".join(str(e) for e in rule.errors))
        return []
    if isinstance(rule, SigmaCorrelationRule):
        entry = _correlation(rule, backend, report)
        return [entry] if entry is not None else []
    if not rule._output:  # a base rule a correlation uses and asked not to generate
        return []
    try:
        entries = backend.convert_rule(rule)
    except (SigmaError, NotImplementedError) as exc:
        _skip(report, rule, _reason(exc))
        return []
    checked = []
    for entry in entries:
        problem = _check(entry)
        if problem:
            _skip(report, rule, problem)
        else:
            checked.append(entry)
    return checked


def _correlation(
    rule: SigmaCorrelationRule, backend: SpyderdBackend, report: Report
) -> dict | None:
    """event_count and value_count as aggregate rules, temporal_ordered as a sequence;
    unordered temporal correlations are reported."""
    if rule.type in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
        return _aggregate(rule, backend, report)
    if rule.type != SigmaCorrelationType.TEMPORAL_ORDERED:
        why = (
            "temporal (unordered) correlation: spyderd sequences are ordered; write the order "
            "you expect as temporal_ordered"
            if rule.type == SigmaCorrelationType.TEMPORAL
            else f"correlation type {rule.type.name.lower()} is not supported"
        )
        _skip(report, rule, why)
        return None
    steps = []
    for ref in rule.rules or []:
        converted = _step(rule, ref, backend, report)
        if converted is None:
            return None
        steps.append({"event": converted["event"], "condition": converted["condition"]})
    if len(steps) < 2:
        _skip(report, rule, "a sequence needs two or more referenced rules")
        return None
    first = rule.rules[0].rule  # type: ignore[index]
    entry = rule_entry(rule, steps[0]["condition"], ["exec"])
    entry.pop("event")
    entry.pop("condition")
    entry["description"] += (
        "\nConverted from a Sigma temporal_ordered correlation: each step's process is the "
        "previous step's process or one of its descendants"
        + (f" (Sigma grouped by {', '.join(rule.group_by)})" if rule.group_by else "")
        + "."
    )
    entry["sequence"] = steps
    entry["within"] = f"{rule.timespan.seconds}s"
    entry["output"] = (
        "Sigma: "
        + _escape(str(rule.title))
        + (": {process.name} (pid {process.pid}) after " + _escape(str(first.title)))
    )
    problem = _check(entry)
    if problem:
        _skip(report, rule, problem)
        return None
    return entry


def _step(rule: Any, ref: Any, backend: SpyderdBackend, report: Report) -> dict | None:
    """The one converted rule a correlation refers to, or None (reported)."""
    base = getattr(ref, "rule", None)
    if not isinstance(base, SigmaRule):
        _skip(report, rule, f"{ref.reference!r} is not a detection rule of these files")
        return None
    try:
        backend.convert_rule(base)
        entries = base.get_conversion_result()  # also for a base rule whose output is off
    except (SigmaError, NotImplementedError) as exc:
        _skip(report, rule, f"rule {base.title!r}: {_reason(exc)}")
        return None
    if len(entries) != 1:
        _skip(report, rule, f"rule {base.title!r} has {len(entries)} conditions; one is needed")
        return None
    return entries[0]


_AT_LEAST = {
    SigmaCorrelationConditionOperator.GTE: 0,
    SigmaCorrelationConditionOperator.GT: 1,
}


def _aggregate(rule: SigmaCorrelationRule, backend: SpyderdBackend, report: Report) -> dict | None:
    """event_count / value_count over one rule: its condition with an aggregate: block."""
    if len(rule.rules or []) != 1:
        _skip(report, rule, f"{rule.type.name.lower()} over {len(rule.rules or [])} rules: "
              "spyderd counts the matches of one rule")  # fmt: skip
        return None
    cond = rule.condition
    if cond.op not in _AT_LEAST:
        _skip(report, rule, f"condition {cond.op.name.lower()}: spyderd fires when a count "
              "reaches a threshold (gte or gt)")  # fmt: skip
        return None
    base = rule.rules[0].rule  # type: ignore[index]
    converted = _step(rule, rule.rules[0], backend, report)  # type: ignore[index]
    if converted is None:
        return None
    by = [_field(base, name) for name in rule.group_by or []]
    distinct = _field(base, cond.fieldref) if rule.type == SigmaCorrelationType.VALUE_COUNT else ""
    missing = [n for n, f in zip(rule.group_by or [], by, strict=True) if not f]
    if missing or distinct is None:
        what = missing[0] if missing else cond.fieldref
        _skip(report, rule, f"Sigma field {what!r} has no spyderd equivalent for this log source")
        return None
    entry = rule_entry(rule, converted["condition"], _as_list(converted["event"]))
    block: dict[str, Any] = {
        "by": by or ["subject"],
        "count": cond.count + _AT_LEAST[cond.op],
        "within": f"{rule.timespan.seconds}s",
    }
    if distinct:
        block["distinct"] = distinct
    entry["aggregate"] = block
    entry["description"] += f"\nConverted from a Sigma {rule.type.name.lower()} correlation."
    problem = _check(entry)
    if problem:
        _skip(report, rule, problem)
        return None
    return entry


def _field(base: Any, name: Any) -> str | None:
    """A Sigma field of `base`'s log source as spyderd's (a spyderd name passes as it is)."""
    if not isinstance(name, str):
        return None
    if name in FIELDS:
        return name
    source = source_for(base.logsource)
    return source.fields.get(name) if source is not None else None


def _as_list(events: Any) -> list[str]:
    return list(events) if isinstance(events, list) else [events]


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _check(entry: dict[str, Any]) -> str:
    """The first error spyderd's loader finds in a converted rule, or "": the rule is read,
    collected and compiled exactly as a rule file would be."""
    text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=100)
    entries, diags = read_text(text, "<converted>")
    defs, found = collect(entries)
    diags += found
    build_rules(defs, diags)
    errors = [d for d in diags if d.is_error]
    return "spyderd refuses the converted rule: " + errors[0].message if errors else ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _skip(report: Report, rule: Any, reason: str) -> None:
    source = getattr(rule, "source", None)
    path = str(getattr(source, "path", "") or "") if source is not None else ""
    title = str(getattr(rule, "title", "") or "(untitled)")
    report.skipped.append(Skipped(path, title, str(rule.id or ""), reason))


def _unique_name(entry: dict[str, Any], rule: Any, names: set[str]) -> None:
    if entry["rule"] in names:
        entry["rule"] = f"{entry['rule']} [{str(rule.id or len(names))[:8]}]"
    names.add(entry["rule"])


__all__ = ["Report", "Skipped", "import_sigma", "rule_name", "sigma_files"]

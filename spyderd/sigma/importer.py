"""`spyderctl rules import-sigma`: Sigma files to one spyderd rule file, and a report.

Every rule is converted on its own, so one that cannot be converted is reported (file, title,
id, reason) and the others still are. A converted condition is compiled by spyderd's own
rule compiler before it is written: what spyderd would refuse is reported here, never
written. Correlation rules: `temporal_ordered` becomes a spyderd sequence (its steps are the
referenced rules, its window the timespan); event_count, value_count and unordered temporal
correlations are reported as not converted, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from spyderd.errors import RuleError
from spyderd.rules import compile_condition
from spyderd.rules.output import compile_template
from spyderd.rules.source import SourceText
from spyderd.sigma.backend import SpyderdBackend
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
    """temporal_ordered as a sequence rule; other correlation types are reported."""
    if rule.type != SigmaCorrelationType.TEMPORAL_ORDERED:
        why = {
            SigmaCorrelationType.EVENT_COUNT: "event_count needs counting over a window, "
            "which spyderd's rule language does not have yet",
            SigmaCorrelationType.VALUE_COUNT: "value_count needs counting distinct values over "
            "a window, which spyderd's rule language does not have yet",
            SigmaCorrelationType.TEMPORAL: "temporal (unordered) correlation: spyderd "
            "sequences are ordered; write the order you expect as temporal_ordered",
        }.get(rule.type, f"correlation type {rule.type.name.lower()} is not supported")
        _skip(report, rule, why)
        return None
    steps = []
    for ref in rule.rules or []:
        base = getattr(ref, "rule", None)
        if not isinstance(base, SigmaRule):
            _skip(report, rule, f"step {ref.reference!r} is not a detection rule of these files")
            return None
        try:
            entries = backend.convert_rule(base)
        except (SigmaError, NotImplementedError) as exc:
            _skip(report, rule, f"step {base.title!r}: {_reason(exc)}")
            return None
        if len(entries) != 1:
            _skip(report, rule, f"step {base.title!r} has {len(entries)} conditions; one needed")
            return None
        steps.append({"event": entries[0]["event"], "condition": entries[0]["condition"]})
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
        + str(rule.title).replace("{", "{{").replace("}", "}}")
        + (": {process.name} (pid {process.pid}) after " + _escape(str(first.title)))
    )
    problem = _check_sequence(entry)
    if problem:
        _skip(report, rule, problem)
        return None
    return entry


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _check(entry: dict[str, Any]) -> str:
    """The first error spyderd finds in a converted rule, or ""."""
    try:
        compile_condition(entry["condition"])
    except RuleError as exc:
        return "spyderd refuses the converted condition: " + exc.diagnostics[0].message
    diags: list = []
    if compile_template(SourceText.plain(entry["output"]), diags) is None:
        return "spyderd refuses the output: " + diags[0].message
    return ""


def _check_sequence(entry: dict[str, Any]) -> str:
    for step in entry["sequence"]:
        problem = _check({"condition": step["condition"], "output": entry["output"]})
        if problem:
            return problem
    return ""


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

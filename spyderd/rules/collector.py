"""Collector: entries to definitions, applying appends and overrides (stage 2).

Files load in order, so a site file can extend the default pack: `append: true` adds items to
an earlier list or `or (...)` to an earlier macro, `override: true` replaces an earlier rule,
and a rule entry with only `enabled:` switches an earlier rule on or off. Keys are checked
here (types, severity, event kinds); conditions are left as located text for the compiler.

A rule has either `event:` + `condition:`, or `sequence:` (steps, each with its own `event:`
and `condition:`) + `within:` (a duration such as 10m) and optionally
`max_partial_matches:` (how many unfinished matches it may hold, default 10000).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from spyderd.model.events import EVENT_TYPES
from spyderd.rules.aggregate import AggregateSpec, parse_aggregate
from spyderd.rules.diagnostics import Diagnostic, Location, error, warning
from spyderd.rules.exceptions import ExceptionDef, merge, parse_exceptions, structured
from spyderd.rules.fields.falco import FALCO_KEYS, FALCO_PRIORITIES, event_hint
from spyderd.rules.reader import Entry, Item, mapping_items, node_location
from spyderd.rules.source import SourceText
from spyderd.rules.values import parse_duration

SEVERITIES: dict[str, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
EVENT_KINDS: tuple[str, ...] = tuple(EVENT_TYPES)

_KEYS = {
    "rule": (
        "rule",
        "description",
        "event",
        "condition",
        "severity",
        "tags",
        "output",
        "exceptions",
        "enabled",
        "override",
        "append",
        "sequence",
        "within",
        "max_partial_matches",
        "aggregate",
        "sigma_id",
    ),
    "list": ("list", "items", "append"),
    "macro": ("macro", "condition", "append"),
    "step": ("event", "condition"),
}
_RULE_REQUIRED = ("condition", "event", "severity", "output")
_SEQUENCE_REQUIRED = ("sequence", "within", "severity", "output")


@dataclass(slots=True)
class ListDef:
    """A named list; each item keeps where it was written, for type errors in lists."""

    name: str
    loc: Location
    items: list[tuple[str | int, Location, str]] = field(default_factory=list)
    source_line: str = ""


@dataclass(slots=True)
class MacroDef:
    """A named condition; appended parts are or-ed, each part parsed from its own text."""

    name: str
    loc: Location
    parts: list[SourceText] = field(default_factory=list)


@dataclass(slots=True)
class StepDef:
    """One step of a sequence rule: the event kinds it waits for and its condition."""

    events: tuple[str, ...]
    condition: SourceText
    loc: Location


@dataclass(slots=True)
class RuleDef:
    """A rule as written, validated but not compiled.

    A sequence rule has `steps` (two or more) and `within_ns`; its `condition` is the first
    step's and `events` the union of the steps' kinds.
    """

    name: str
    loc: Location
    source_line: str
    condition: SourceText
    events: tuple[str, ...]
    severity: str
    output: SourceText
    description: str = ""
    tags: list[str] = field(default_factory=list)
    exceptions: list[SourceText] = field(default_factory=list)
    enabled: bool = True
    steps: list[StepDef] = field(default_factory=list)
    within_ns: int = 0
    max_partials: int | None = None
    named: dict[str, ExceptionDef] = field(default_factory=dict)
    aggregate: AggregateSpec | None = None  # counts matches per key (see aggregate)
    sigma_id: str = ""  # the Sigma rule it was converted from (import-sigma)

    def exception_texts(self) -> list[SourceText]:
        """Every exception as condition text: plain ones, then each structured one with rows."""
        texts = [exc.condition() for exc in self.named.values()]
        return [*self.exceptions, *(t for t in texts if t is not None)]


@dataclass(slots=True)
class Salvage:
    """What a rule with a structural error still lets us check: its condition texts and
    output, compiled for their own errors so one run reports everything."""

    name: str
    loc: Location
    conditions: list[SourceText] = field(default_factory=list)
    output: SourceText | None = None


@dataclass(slots=True)
class Definitions:
    """Everything the files define, after appends and overrides, in definition order."""

    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    rules: dict[str, RuleDef] = field(default_factory=dict)
    salvaged: list[Salvage] = field(default_factory=list)


def collect(entries: list[Entry]) -> tuple[Definitions, list[Diagnostic]]:
    """Fold entries, in load order, into definitions; every problem becomes a diagnostic."""
    defs = Definitions()
    diags: list[Diagnostic] = []
    handlers = {"rule": _rule, "list": _list, "macro": _macro}
    for entry in entries:
        _unknown_keys(entry, diags)
        handlers[entry.kind](entry, defs, diags)
    return defs, diags


def _diag(code: str, message: str, loc: Location, entry: Entry, **kw: Any) -> Diagnostic:
    return error(code, message, loc, entry.file.line(loc.line), **kw)


def _unknown_keys(entry: Entry, diags: list[Diagnostic]) -> None:
    known = _KEYS[entry.kind]
    for key, item in entry.items.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            if key in FALCO_KEYS and entry.kind == "rule":
                hint = _falco_key_hint(key)
            diags.append(
                warning(
                    "W008",
                    f"unknown key {key!r} in {entry.kind} {entry.name!r} is ignored{hint}",
                    item.key_loc,
                    entry.file.line(item.key_loc.line),
                )
            )


def _falco_key_hint(key: str) -> str:
    spyder = FALCO_KEYS[key]
    if not spyder:
        return " (a Falco key spyderd does not need)"
    if key == "priority":
        return (
            "; spyderd calls it 'severity' (Falco's priorities: "
            + ", ".join(f"{k.upper()} is {v}" for k, v in FALCO_PRIORITIES.items() if k != "info")
            + ")"
        )
    return f"; spyderd calls it {spyder!r}"


def _flag(entry: Entry, key: str, diags: list[Diagnostic]) -> bool:
    """A boolean key (append, override, enabled); a non-bool is an error and reads False."""
    item = entry.items.get(key)
    if item is None:
        return False
    if not isinstance(item.value, bool):
        diags.append(_diag("E005", f"{key}: must be true or false", item.loc, entry))
        return False
    return item.value


def _text(entry: Entry, key: str, diags: list[Diagnostic]) -> SourceText | None:
    """A string key as located text; missing or non-string is an error (None)."""
    item = entry.items.get(key)
    if item is None:
        diags.append(
            _diag("E004", f"{entry.kind} {entry.name!r} is missing {key!r}", entry.loc, entry)
        )
        return None
    if not isinstance(item.value, str):
        diags.append(_diag("E005", f"{key}: must be a string", item.loc, entry))
        return None
    return item.text()


def _strings(entry: Entry, key: str, diags: list[Diagnostic]) -> list[tuple[str, Any]] | None:
    """A list-of-strings key as (value, node) pairs; [] when absent, None when wrong."""
    item = entry.items.get(key)
    if item is None:
        return []
    if not isinstance(item.value, list):
        diags.append(_diag("E005", f"{key}: must be a list", item.loc, entry))
        return None
    pairs = item.elements()
    bad = [node for value, node in pairs if not isinstance(value, str)]
    for node in bad:
        diags.append(
            _diag("E005", f"{key}: items must be strings", node_location(node, entry.file), entry)
        )
    return None if bad else pairs


def _list(entry: Entry, defs: Definitions, diags: list[Diagnostic]) -> None:
    append = _flag(entry, "append", diags)
    item = entry.items.get("items")
    if item is None:
        diags.append(_diag("E004", f"list {entry.name!r} is missing 'items'", entry.loc, entry))
        return
    items = _list_items(entry, item, diags)
    if items is None:
        return
    target = _target(entry, defs.lists, append, diags)
    if target is None:
        defs.lists[entry.name] = ListDef(
            entry.name, entry.loc, items, entry.file.line(entry.loc.line)
        )
    else:
        target.items.extend(items)


def _list_items(
    entry: Entry, item: Item, diags: list[Diagnostic]
) -> list[tuple[str | int, Location, str]] | None:
    if not isinstance(item.value, list):
        diags.append(_diag("E005", "items: must be a list", item.loc, entry))
        return None
    out: list[tuple[str | int, Location, str]] = []
    for value, node in item.elements():
        loc = node_location(node, entry.file)
        if isinstance(value, bool) or not isinstance(value, str | int):
            diags.append(_diag("E005", "list items must be strings or integers", loc, entry))
            return None
        if isinstance(value, str) and _QUOTED.fullmatch(value):
            diags.append(
                warning(
                    "W103",
                    f"list item {value!r} keeps its quotes, so it only matches a value that "
                    f"has them; write {value[1:-1]!r} (YAML's own quotes are enough)",
                    loc,
                    entry.file.line(loc.line),
                )
            )
        out.append((value, loc, entry.file.line(loc.line)))
    return out


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
_JOINER = re.compile(r"\s*(and|or)\b")


def _macro(entry: Entry, defs: Definitions, diags: list[Diagnostic]) -> None:
    append = _flag(entry, "append", diags)
    text = _text(entry, "condition", diags)
    if text is None:
        return
    target = _target(entry, defs.macros, append, diags)
    if target is None:
        defs.macros[entry.name] = MacroDef(entry.name, entry.loc, [text])
    elif _JOINER.match(text.value):
        target.parts = [joined(target.parts, text)]  # Falco style: "or ...", "and ..."
    else:
        target.parts.append(text)


def joined(parts: list[SourceText], tail: SourceText) -> SourceText:
    """`(p1) or (p2) ... <tail>`: a condition extended Falco's way, by text that starts with
    `and` or `or`; every piece keeps its own location."""
    pieces: list[tuple[str, SourceText | None]] = [("(", None)]
    for i, part in enumerate(parts):
        pieces += [(") or (" if i else "", None), ("", part)]
    pieces += [(") ", None), ("", tail)]
    return SourceText.join(pieces)


def _target(entry: Entry, table: dict, append: bool, diags: list[Diagnostic]) -> Any:
    """The earlier definition an append extends, or None when this entry defines anew."""
    earlier = table.get(entry.name)
    if append and earlier is None:
        diags.append(
            _diag("E102", f"append to undefined {entry.kind} {entry.name!r}", entry.loc, entry)
        )
        return None
    if not append and earlier is not None:
        diags.append(
            warning(
                "W102",
                f"{entry.kind} {entry.name!r} redefined; this definition "
                "replaces the one at " + str(earlier.loc),
                entry.loc,
                entry.file.line(entry.loc.line),
            )
        )
        return None
    return earlier


def _rule(entry: Entry, defs: Definitions, diags: list[Diagnostic]) -> None:
    override = entry.items.get("override")
    if _flag_value(entry, "append"):
        _extend(entry, defs, diags, {k: "append" for k in _APPENDABLE})
        return
    if override is not None and isinstance(override.value, dict):
        modes = _override_modes(entry, override, diags)
        if modes is not None:
            _extend(entry, defs, diags, modes)
        return
    override_flag = _flag(entry, "override", diags)
    only_enabled = set(entry.items) <= {"rule", "enabled", "override"}
    if only_enabled and "enabled" in entry.items and entry.name in defs.rules:
        _toggle(entry, defs, diags)
        return
    errors_before = sum(d.is_error for d in diags)
    rule = _rule_def(entry, diags)
    if rule is None or sum(d.is_error for d in diags) > errors_before:
        defs.salvaged.append(_salvage(entry))
        return
    earlier = defs.rules.get(entry.name)
    if earlier is not None and not override_flag:
        diags.append(
            _diag(
                "E101",
                f"duplicate rule {entry.name!r}; add override: true to replace it",
                entry.loc,
                entry,
                chain=(f"first defined at {earlier.loc}",),
            )
        )
        return
    if earlier is None and override_flag:
        diags.append(_diag("E103", f"override of undefined rule {entry.name!r}", entry.loc, entry))
        return
    defs.rules[entry.name] = rule


# keys a later entry may extend (append) or replace in an earlier rule, Falco's way
_APPENDABLE = ("condition", "exceptions", "tags")
_REPLACEABLE = ("condition", "exceptions", "tags", "output", "severity", "description",
                "event", "enabled")  # fmt: skip


def _flag_value(entry: Entry, key: str) -> bool:
    item = entry.items.get(key)
    return item is not None and item.value is True


def _override_modes(entry: Entry, item: Item, diags: list[Diagnostic]) -> dict[str, str] | None:
    """`override: {condition: append, output: replace, ...}` checked against the entry."""
    modes: dict[str, str] = {}
    for key, mode in item.value.items():
        allowed = ("append", "replace") if key in _APPENDABLE else ("replace",)
        if key not in _REPLACEABLE or mode not in allowed:
            what = f"{key}: {mode}" if key in _REPLACEABLE else f"{key}"
            message = (
                f"override {what!r} is not possible; {key} takes " + " or ".join(allowed)
                if key in _REPLACEABLE
                else f"override: cannot change {key!r}; it takes " + ", ".join(_REPLACEABLE)
            )
            diags.append(_diag("E005", message, item.loc, entry))
            return None
        if key not in entry.items:
            message = f"override names {key!r} but the entry has no {key}:"
            diags.append(_diag("E004", message, item.loc, entry))
            return None
        modes[key] = mode
    for key in entry.items:
        if key not in ("rule", "override") and key not in modes:
            message = f"{key}: is not named in override:, so it would be ignored"
            diags.append(_diag("E005", message, entry.items[key].key_loc, entry))
            return None
    return modes


def _extend(
    entry: Entry, defs: Definitions, diags: list[Diagnostic], modes: dict[str, str]
) -> None:
    """`append: true` or `override: {...}`: change parts of an earlier rule in place."""
    earlier = defs.rules.get(entry.name)
    if earlier is None:
        diags.append(_diag("E102", f"append to undefined rule {entry.name!r}", entry.loc, entry))
        return
    for key in entry.items:
        if key in ("rule", "append", "override"):
            continue
        mode = modes.get(key)
        if mode is None:
            message = f"with append: true a rule takes only {', '.join(_APPENDABLE)}"
            diags.append(_diag("E005", message, entry.items[key].key_loc, entry))
            continue
        if key == "condition":
            _extend_condition(entry, earlier, mode, diags)
        elif key == "exceptions":
            _extend_exceptions(entry, earlier, mode, diags)
        elif key == "tags":
            _extend_tags(entry, earlier, mode, diags)
        else:
            _replace_key(entry, earlier, key, diags)


def _extend_condition(entry: Entry, rule: RuleDef, mode: str, diags: list[Diagnostic]) -> None:
    text = _text(entry, "condition", diags)
    if text is None:
        return
    if rule.steps:
        message = "a sequence rule's condition is its steps'; override the rule instead"
        diags.append(_diag("E005", message, entry.items["condition"].loc, entry))
        return
    if mode == "replace":
        rule.condition = text
    elif _JOINER.match(text.value):
        rule.condition = SourceText.join([("(", None), ("", rule.condition), (") ", None),
                                          ("", text)])  # fmt: skip
    else:
        rule.condition = SourceText.join([("(", None), ("", rule.condition), (") and (", None),
                                          ("", text), (")", None)])  # fmt: skip


def _extend_exceptions(entry: Entry, rule: RuleDef, mode: str, diags: list[Diagnostic]) -> None:
    found = parse_exceptions(entry, diags)
    if found is None:
        return
    texts, named = found
    if mode == "replace":
        rule.exceptions, rule.named = [], {}
    rule.exceptions.extend(texts)
    merge(rule.named, named, diags, entry.file)


def _extend_tags(entry: Entry, rule: RuleDef, mode: str, diags: list[Diagnostic]) -> None:
    tags = _strings(entry, "tags", diags)
    if tags is not None:
        new = [t for t, _ in tags]
        rule.tags = (
            new if mode == "replace" else [*rule.tags, *(t for t in new if t not in rule.tags)]
        )


def _replace_key(entry: Entry, rule: RuleDef, key: str, diags: list[Diagnostic]) -> None:
    """output, severity, description, event, enabled: the new value replaces the old."""
    if key == "output":
        text = _text(entry, "output", diags)
        if text is not None:
            rule.output = text
    elif key == "severity":
        severity = _severity(entry, diags)
        if severity is not None:
            rule.severity = severity
    elif key == "event":
        events = _events(entry, diags)
        if events is not None:
            rule.events = events
    elif key == "enabled":
        rule.enabled = _flag(entry, "enabled", diags)
    else:
        rule.description = str(entry.get("description", ""))


def _named(
    found: list[ExceptionDef], entry: Entry, diags: list[Diagnostic]
) -> dict[str, ExceptionDef]:
    named: dict[str, ExceptionDef] = {}
    merge(named, found, diags, entry.file)
    return named


def _salvage(entry: Entry) -> Salvage:
    """The located texts of a rule that failed its structural checks."""
    out = Salvage(entry.name, entry.loc)
    for key in ("condition", "output"):
        item = entry.items.get(key)
        if item is not None and isinstance(item.value, str):
            if key == "output":
                out.output = item.text()
            else:
                out.conditions.append(item.text())
    exceptions = entry.items.get("exceptions")
    if exceptions is not None:
        out.conditions += [
            SourceText.from_node(node, entry.file)
            for value, node in exceptions.elements()
            if isinstance(value, str)
        ]
        for node in getattr(exceptions.node, "value", []):
            if isinstance(node, yaml.MappingNode):
                exc = structured(node, entry.file, [], partial=True)  # errors already reported
                text = exc.condition() if exc is not None else None
                if text is not None:
                    out.conditions.append(text)
    steps = entry.items.get("sequence")
    if steps is not None and isinstance(steps.node, yaml.SequenceNode):
        for node in steps.node.value:
            for key_node, value_node in getattr(node, "value", []):
                if getattr(key_node, "value", None) == "condition" and isinstance(
                    value_node, yaml.ScalarNode
                ):
                    out.conditions.append(SourceText.from_node(value_node, entry.file))
    return out


def _toggle(entry: Entry, defs: Definitions, diags: list[Diagnostic]) -> None:
    """`- rule: X` with only `enabled:` switches the earlier rule X on or off."""
    defs.rules[entry.name].enabled = _flag(entry, "enabled", diags)


def _rule_def(entry: Entry, diags: list[Diagnostic]) -> RuleDef | None:
    if "sequence" in entry.items:
        if "aggregate" in entry.items:
            item = entry.items["aggregate"]
            diags.append(_diag("E005", "aggregate: not for sequence rules", item.key_loc, entry))
            return None
        return _sequence_def(entry, diags)
    rule = _plain_def(entry, diags)
    if rule is not None and "aggregate" in entry.items:
        rule.aggregate = parse_aggregate(entry, diags)
        if rule.aggregate is None:
            return None
    return rule


def _plain_def(entry: Entry, diags: list[Diagnostic]) -> RuleDef | None:
    missing = [k for k in _RULE_REQUIRED if k not in entry.items]
    if missing:
        diags.append(
            _diag(
                "E004",
                f"rule {entry.name!r} is missing " + ", ".join(repr(k) for k in missing),
                entry.loc,
                entry,
            )
        )
        if "event" in entry.items:
            _events(entry, diags)  # reported now too: one run shows every mistake
        if "severity" in entry.items:
            _severity(entry, diags)
        found = parse_exceptions(entry, diags)
        if found is not None:
            _named(found[1], entry, diags)
        return None
    condition = _text(entry, "condition", diags)
    output = _text(entry, "output", diags)
    events = _events(entry, diags)
    severity = _severity(entry, diags)
    tags = _strings(entry, "tags", diags)
    exceptions = parse_exceptions(entry, diags)
    description = entry.get("description", "")
    if not isinstance(description, str):
        diags.append(
            _diag("E005", "description: must be a string", entry.items["description"].loc, entry)
        )
    enabled = _flag(entry, "enabled", diags) if "enabled" in entry.items else True
    if (
        condition is None
        or output is None
        or events is None
        or severity is None
        or tags is None
        or exceptions is None
    ):
        return None
    file = entry.file
    return RuleDef(
        entry.name,
        entry.loc,
        file.line(entry.loc.line),
        condition,
        events,
        severity,
        output,
        str(description),
        [t for t, _ in tags],
        exceptions[0],
        enabled,
        named=_named(exceptions[1], entry, diags),
        sigma_id=str(entry.get("sigma_id", "")),
    )


def _sequence_def(entry: Entry, diags: list[Diagnostic]) -> RuleDef | None:
    """A `sequence:` rule: steps instead of event + condition, and a time window."""
    missing = [k for k in _SEQUENCE_REQUIRED if k not in entry.items]
    if missing:
        diags.append(
            _diag(
                "E004",
                f"sequence rule {entry.name!r} is missing " + ", ".join(repr(k) for k in missing),
                entry.loc,
                entry,
            )
        )
        return None
    for key in ("condition", "event"):
        if key in entry.items:
            diags.append(
                _diag(
                    "E005",
                    f"{key}: a sequence rule has none of its own; each step has one",
                    entry.items[key].key_loc,
                    entry,
                )
            )
    steps = _steps(entry, diags)
    within = _within(entry, diags)
    limit = _limit(entry, diags)
    output = _text(entry, "output", diags)
    severity = _severity(entry, diags)
    tags = _strings(entry, "tags", diags)
    exceptions = parse_exceptions(entry, diags)
    description = entry.get("description", "")
    enabled = _flag(entry, "enabled", diags) if "enabled" in entry.items else True
    if (
        steps is None
        or within is None
        or output is None
        or severity is None
        or tags is None
        or exceptions is None
        or limit == 0
    ):
        return None
    kinds = tuple(dict.fromkeys(k for step in steps for k in step.events))
    return RuleDef(
        entry.name,
        entry.loc,
        entry.file.line(entry.loc.line),
        steps[0].condition,
        kinds,
        severity,
        output,
        str(description),
        [t for t, _ in tags],
        exceptions[0],
        enabled,
        steps,
        within,
        limit,
        _named(exceptions[1], entry, diags),
        sigma_id=str(entry.get("sigma_id", "")),
    )


def _steps(entry: Entry, diags: list[Diagnostic]) -> list[StepDef] | None:
    """The `sequence:` list: mappings of `event` and `condition`, at least two of them."""
    item = entry.items["sequence"]
    if not isinstance(item.node, yaml.SequenceNode) or len(item.node.value) < 2:
        diags.append(
            _diag("E005", "sequence: must be a list of two or more steps", item.loc, entry)
        )
        return None
    steps: list[StepDef] = []
    for index, node in enumerate(item.node.value, start=1):
        loc = node_location(node, entry.file)
        if not isinstance(node, yaml.MappingNode):
            diags.append(_diag("E005", "a step is a mapping of event: and condition:", loc, entry))
            return None
        items = mapping_items(node, entry.file, diags)
        if items is None:
            return None
        step = Entry("step", f"{entry.name} step {index}", loc, entry.file, items)
        _unknown_keys(step, diags)
        if "event" not in items or "condition" not in items:
            diags.append(_diag("E004", f"step {index} needs event: and condition:", loc, entry))
            return None
        events = _events(step, diags)
        condition = _text(step, "condition", diags)
        if events is None or condition is None:
            return None
        steps.append(StepDef(events, condition, loc))
    return steps


def _within(entry: Entry, diags: list[Diagnostic]) -> int | None:
    item = entry.items["within"]
    ns = parse_duration(item.value) if isinstance(item.value, str) else None
    if not ns:
        diags.append(
            _diag("E005", "within: must be a duration such as 30s, 10m or 2h", item.loc, entry)
        )
        return None
    return ns


def _limit(entry: Entry, diags: list[Diagnostic]) -> int | None:
    """max_partial_matches: a positive integer; None = the RuleSet's default, 0 = bad."""
    item = entry.items.get("max_partial_matches")
    if item is None:
        return None
    if isinstance(item.value, bool) or not isinstance(item.value, int) or item.value < 1:
        diags.append(
            _diag("E005", "max_partial_matches: must be a positive integer", item.loc, entry)
        )
        return 0
    return item.value


def _events(entry: Entry, diags: list[Diagnostic]) -> tuple[str, ...] | None:
    item = entry.items["event"]
    pairs = [(item.value, item.node)] if isinstance(item.value, str) else item.elements()
    if not pairs or not all(isinstance(v, str) for v, _ in pairs):
        diags.append(
            _diag(
                "E005",
                "event: must be an event kind or a list of them",
                item.loc,
                entry,
                expected=list(EVENT_KINDS),
            )
        )
        return None
    kinds: list[str] = []
    for value, node in pairs:
        if value not in EVENT_KINDS:
            near = difflib.get_close_matches(value, EVENT_KINDS, n=1)
            hint = event_hint(value) or (f"; did you mean {near[0]!r}?" if near else "")
            diags.append(
                _diag(
                    "E007",
                    f"unknown event kind {value!r}{hint}",
                    node_location(node, entry.file),
                    entry,
                    expected=list(EVENT_KINDS),
                )
            )
            return None
        if value not in kinds:
            kinds.append(value)
    return tuple(kinds)


def _severity(entry: Entry, diags: list[Diagnostic]) -> str | None:
    item = entry.items["severity"]
    value = item.value.lower() if isinstance(item.value, str) else None
    if value not in SEVERITIES:
        hint = ""
        if value in FALCO_PRIORITIES:
            hint = f"; Falco's {str(item.value).upper()} is spyderd's {FALCO_PRIORITIES[value]!r}"
        diags.append(
            _diag(
                "E006",
                f"bad severity {item.value!r}{hint}",
                item.loc,
                entry,
                expected=list(SEVERITIES),
            )
        )
        return None
    return value

"""Aggregation: a rule that fires when enough of its matches pile up per key within a window.

```yaml
- rule: Discovery burst from one shell
  event: exec
  condition: process.name in (discovery_programs)
  aggregate:
    by: parent                 # subject, parent, session, container, user, or field names
    distinct: process.name     # count distinct values of a field (absent: count events)
    count: 4                   # fire when the count reaches this
    within: 10s                # sliding window
    max_keys: 10000            # optional bound on keys held (oldest key dropped, counted)
```

Every event the rule's condition (exceptions applied) matches is counted under its key, the
tuple of the `by` values. When a key's count within the window reaches `count`, the rule fires
once, its refs being the subjects of the counted events, and that key is quiet for one window
(later matches are counted as `suppressed`), so a sweep of a thousand ports gives one finding
per window rather than one per port.

State is bounded: a key holds at most `count` entries (it fires at `count`), and a rule at
most `max_keys` keys (least recently matched dropped first, counted in `dropped`); keys whose
last match is older than the window expire (counted in `expired`). The counters reach
`spyderctl status` through `RuleSet.stats()`. On reload, a rule whose events, condition and
aggregate are unchanged keeps its keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from spyderd.model.events import Event
from spyderd.model.nodes import Node
from spyderd.rules.context import GraphContext
from spyderd.rules.diagnostics import Diagnostic, Location, error
from spyderd.rules.fields import FIELDS, field_reader, suggest
from spyderd.rules.reader import Entry, Item, mapping_items, node_location
from spyderd.rules.values import parse_duration

DEFAULT_MAX_KEYS = 10_000
MAX_COUNT = 10_000
# `by:` keywords: the nodes an SRE groups by, as the fields that identify them
KEY_FIELDS = {
    "subject": "process.id",
    "parent": "parent.id",
    "session": "session.id",
    "container": "container.id",
    "user": "user.uid",
}
_KEYS = ("by", "distinct", "count", "within", "max_keys")

Reader = Callable[[Event | None, Node, GraphContext], Any]


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    """An `aggregate:` block as written (keywords resolved to field names)."""

    by: tuple[str, ...]
    count: int
    within_ns: int
    distinct: str | None = None
    max_keys: int = DEFAULT_MAX_KEYS
    loc: Location | None = field(default=None, compare=False)

    def describe(self) -> str:
        what = f"distinct {self.distinct}" if self.distinct else "events"
        return f"{self.count} {what} by {', '.join(self.by)} within {self.within_ns / 1e9:g}s"


@dataclass(slots=True)
class _Key:
    """One key's counted matches: value (or event time) -> (time, subject), oldest first."""

    entries: OrderedDict[Any, tuple[int, Node]] = field(default_factory=OrderedDict)
    last: int = 0
    quiet_until: int = 0


@dataclass(slots=True)
class AggregateStats:
    keys: int = 0
    counted: int = 0
    fired: int = 0
    suppressed: int = 0
    expired: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "keys": self.keys,
            "counted": self.counted,
            "fired": self.fired,
            "suppressed": self.suppressed,
            "expired": self.expired,
            "dropped": self.dropped,
        }


@dataclass(frozen=True, slots=True)
class Fired:
    """A key that reached its count: the subjects counted (oldest first) and the count."""

    subjects: tuple[Node, ...]
    values: tuple[Any, ...]
    key: tuple[Any, ...]


class Aggregator:
    """The per-key counts of one aggregate rule."""

    def __init__(self, spec: AggregateSpec, signature: tuple = ()) -> None:
        self.spec = spec
        self._signature = (signature, spec)
        self._by: tuple[Reader, ...] = tuple(field_reader(FIELDS[f]) for f in spec.by)
        self._distinct: Reader | None = (
            field_reader(FIELDS[spec.distinct]) if spec.distinct else None
        )
        self.keys: OrderedDict[tuple[Any, ...], _Key] = OrderedDict()
        self.stats = AggregateStats()

    def signature(self) -> tuple:
        """What must be equal for a reloaded rule to take over this state."""
        return self._signature

    def adopt(self, old: Aggregator) -> None:
        """Take over the keys of the same aggregate from the previous rule set."""
        self.keys = old.keys
        self.stats = old.stats
        self._trim()

    def feed(self, ev: Event, node: Node, ctx: GraphContext) -> Fired | None:
        """Count one match; the Fired record when its key reaches the count."""
        now = ev.time
        key = tuple(_hashable(read(ev, node, ctx)) for read in self._by)
        state = self.keys.pop(key, None) or _Key()
        self.keys[key] = state  # most recently matched last
        state.last = now
        if now < state.quiet_until:
            self.stats.suppressed += 1
            return None
        self.stats.counted += 1
        self._slide(state, now)
        if self._distinct is None:
            slot: Any = self.stats.counted  # unique per match
        else:
            slot = _hashable(self._distinct(ev, node, ctx))
            if slot is None:
                return None
            state.entries.pop(slot, None)
        state.entries[slot] = (now, node)
        self._trim()
        if len(state.entries) < self.spec.count:
            return None
        return self._fire(key, state, now)

    def _fire(self, key: tuple[Any, ...], state: _Key, now: int) -> Fired:
        subjects = tuple({n.id: n for _, n in state.entries.values()}.values())
        values = tuple(state.entries) if self._distinct is not None else ()
        state.entries.clear()
        state.quiet_until = now + self.spec.within_ns
        self.stats.fired += 1
        return Fired(subjects, values, key)

    def _slide(self, state: _Key, now: int) -> None:
        """Forget the key's matches older than the window (entries are in time order: a
        distinct value seen again moves to the end)."""
        horizon = now - self.spec.within_ns
        entries = state.entries
        while entries:
            first = next(iter(entries))
            if entries[first][0] >= horizon:
                break
            del entries[first]

    def _trim(self) -> None:
        while len(self.keys) > self.spec.max_keys:
            self.keys.popitem(last=False)
            self.stats.dropped += 1

    def expire(self, now: int) -> None:
        """Drop keys whose last match (and quiet time) is older than the window."""
        horizon = now - self.spec.within_ns
        while self.keys:
            key, state = next(iter(self.keys.items()))
            if state.last >= horizon:  # (a quiet key's last match is within its window)
                break
            del self.keys[key]
            self.stats.expired += 1

    def counters(self) -> dict[str, int]:
        self.stats.keys = len(self.keys)
        return self.stats.as_dict()


def summary(spec: AggregateSpec, fired: Fired) -> str:
    """What the output gets appended: how many, of what, under which key."""
    key = ", ".join(f"{f}={_show(v)}" for f, v in zip(spec.by, fired.key, strict=True))
    if spec.distinct:
        values = " ".join(_show(v) for v in fired.values)
        what = f"{len(fired.values)} distinct {spec.distinct} ({values})"
    else:
        what = f"{spec.count} matches"
    return f" [{what} within {spec.within_ns / 1e9:g}s, {key}]"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return "<NA>" if value is None else str(value)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# -- reading the `aggregate:` block -------------------------------------------------------


def parse_aggregate(entry: Entry, diags: list[Diagnostic]) -> AggregateSpec | None:
    """The rule entry's `aggregate:` mapping checked; errors go to `diags` (located)."""
    item = entry.items["aggregate"]
    if not isinstance(item.node, yaml.MappingNode):
        diags.append(_err("E005", "aggregate: must be a mapping (by, count, within ...)", item))
        return None
    items = mapping_items(item.node, entry.file, diags)
    if items is None:
        return None
    bad = False
    for key, sub in items.items():
        if key not in _KEYS:
            diags.append(_err("E005", f"aggregate: unknown key {key!r}", sub, _KEYS))
            bad = True
    for key in ("by", "count", "within"):
        if key not in items:
            diags.append(_err("E004", f"aggregate: missing {key!r}", item, at=item.key_loc))
            bad = True
    if bad:
        return None
    by = _by(items["by"], diags)
    distinct = _field(items["distinct"], diags) if "distinct" in items else None
    count = _positive(items["count"], diags, MAX_COUNT, minimum=2)
    within = _within(items["within"], diags)
    max_keys = _positive(items["max_keys"], diags) if "max_keys" in items else DEFAULT_MAX_KEYS
    if by is None or count is None or within is None or max_keys is None:
        return None
    if "distinct" in items and distinct is None:
        return None
    return AggregateSpec(by, count, within, distinct, max_keys, item.loc)


def _by(item: Item, diags: list[Diagnostic]) -> tuple[str, ...] | None:
    pairs = [(item.value, item.node)] if isinstance(item.value, str) else item.elements()
    if not pairs:
        diags.append(_err("E005", "aggregate.by: a key or a list of keys", item, KEY_FIELDS))
        return None
    out = []
    for value, node in pairs:
        name = KEY_FIELDS.get(value, value) if isinstance(value, str) else None
        if name not in FIELDS:
            near = suggest(str(value), [*KEY_FIELDS, *FIELDS])
            hint = f"; did you mean {near[0]!r}?" if near else ""
            diags.append(
                _err("E301", f"aggregate.by: unknown key {value!r}{hint}", item, near, node)
            )
            return None
        out.append(name)
    return tuple(out)


def _field(item: Item, diags: list[Diagnostic]) -> str | None:
    if isinstance(item.value, str) and item.value in FIELDS:
        return item.value
    near = suggest(str(item.value))
    hint = f"; did you mean {near[0]!r}?" if near else ""
    diags.append(_err("E301", f"aggregate.distinct: unknown field {item.value!r}{hint}", item))
    return None


def _positive(item: Item, diags: list[Diagnostic], most: int = 10**7,
              minimum: int = 1) -> int | None:  # fmt: skip
    value = item.value
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= most:
        diags.append(_err("E005", f"aggregate.{item.key}: an integer from {minimum} to {most}",
                          item))  # fmt: skip
        return None
    return value


def _within(item: Item, diags: list[Diagnostic]) -> int | None:
    ns = parse_duration(item.value) if isinstance(item.value, str) else None
    if not ns:
        diags.append(_err("E005", "aggregate.within: a duration such as 10s or 5m", item))
        return None
    return ns


def _err(code: str, message: str, item: Item, expected: Any = None,
         node: yaml.Node | None = None, at: Location | None = None) -> Diagnostic:  # fmt: skip
    loc = at or (node_location(node, item.file) if node is not None else item.loc)
    return error(code, message, loc, item.file.line(loc.line),
                 expected=list(expected) if expected else None)  # fmt: skip

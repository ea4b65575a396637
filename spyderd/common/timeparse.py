"""`--since`/`--until` values as journalctl takes them (systemd.time(7)), to wall-clock ns.

Accepted, like `journalctl --since`:

- relative spans: `-1h`, `+5min`, `-1h30min`, `-2 days`, `-1 week 2d`, `2h ago`, `90s ago`
  (units us, ms, s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s),
  M/month(s) = 30.44 days, y/year(s) = 365.25 days; a bare number means seconds);
- keywords: `now`, `today`, `yesterday`, `tomorrow` (midnight, local time);
- absolute: ISO 8601 (`2026-01-31T12:00:00`, with an optional `Z` or `+01:00` offset),
  `2026-01-31 12:00[:00]`, `2026-01-31`, a time alone (`12:30`, today), optional trailing
  ` UTC`; `@1700000000[.5]` (Unix seconds).

Anything else is a ConfigError naming the value and the accepted forms.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from spyderd.errors import ConfigError

_US = 1e-6
_UNITS: dict[str, float] = {
    "us": _US, "usec": _US, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2_629_800, "month": 2_629_800, "months": 2_629_800,
    "y": 31_557_600, "year": 31_557_600, "years": 31_557_600,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_HELP = ("expected e.g. -1h, '2 days ago', yesterday, today, 2026-01-31, "
         "2026-01-31T12:00:00, 12:30 or @1700000000")


def parse_span(text: str) -> float | None:
    """Seconds in `1h30min`, `2 days`, `90` (seconds); None if `text` is not a span."""
    t = text.strip()
    if not t:
        return None
    pos, total = 0, 0.0
    while pos < len(t):
        m = _PART.match(t, pos)
        if m is None or m.end() == pos:
            return None
        unit = m.group(2)
        scale = (_UNITS.get(unit) or _UNITS.get(unit.lower())) if unit else 1
        if scale is None:
            return None
        total += float(m.group(1)) * scale
        pos = m.end()
    return total


def parse_when(text: str, now: float | None = None) -> int:
    """Wall-clock ns for a journalctl-style time; raises ConfigError if it cannot be read."""
    now = time.time() if now is None else now
    t = " ".join(text.strip().split())
    if not t:
        raise ConfigError(f"cannot parse time '{text}': {_HELP}")
    for parse in (_relative, _unix, _keyword, _absolute):
        value = parse(t, now)
        if value is not None:
            return int(value * 1e9)
    raise ConfigError(f"cannot parse time '{text}': {_HELP}")


def _relative(t: str, now: float) -> float | None:
    if t[0] in "+-":
        span = parse_span(t[1:])
        if span is not None:
            return now + span if t[0] == "+" else now - span
    if t.endswith("ago"):
        span = parse_span(t[:-3])
        if span is not None:
            return now - span
    if t.startswith("in "):
        span = parse_span(t[3:])
        if span is not None:
            return now + span
    return None


def _unix(t: str, now: float) -> float | None:
    if not t.startswith("@"):
        return None
    try:
        return float(t[1:])
    except ValueError:
        return None


def _keyword(t: str, now: float) -> float | None:
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": datetime.fromtimestamp(now), "today": midnight,
             "yesterday": midnight - timedelta(days=1), "tomorrow": midnight + timedelta(days=1)}
    day, _, rest = t.partition(" ")
    if day in named and day != "now" and rest:
        clock = _clock(rest)
        if clock is None:
            return None
        return (named[day] + clock).timestamp()
    return named[t].timestamp() if t in named else None


def _clock(t: str) -> timedelta | None:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?", t)
    if m is None:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 60:
        return None
    frac = float("0." + m.group(4)) if m.group(4) else 0.0
    return timedelta(hours=h, minutes=mi, seconds=s + frac)


def _absolute(t: str, now: float) -> float | None:
    utc = False
    if t.endswith(" UTC"):
        t, utc = t[:-4], True
    clock = _clock(t)
    if clock is not None:
        base = datetime.fromtimestamp(now, tz=UTC if utc else None)
        midnight = base.replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight + clock).timestamp()
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if utc and dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()

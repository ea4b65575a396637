"""`--since`/`--until` values as journalctl takes them."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

from spyderd.errors import ConfigError

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float | None = None) -> int:
    """Return wall-clock ns for `-1h`, `+5m`, `now`, `today`, `yesterday`, ISO 8601, `@SECS`."""
    now = time.time() if now is None else now
    t = text.strip()
    m = re.fullmatch(r"([+-])(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)", t)
    if m:
        delta = float(m.group(2)) * _UNITS[m.group(3)]
        return int((now + (delta if m.group(1) == "+" else -delta)) * 1e9)
    if t.startswith("@"):
        try:
            return int(float(t[1:]) * 1e9)
        except ValueError:
            pass
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    named = {"now": datetime.fromtimestamp(now), "today": midnight,
             "yesterday": midnight - timedelta(days=1), "tomorrow": midnight + timedelta(days=1)}
    if t in named:
        return int(named[t].timestamp() * 1e9)
    try:
        return int(datetime.fromisoformat(t).timestamp() * 1e9)
    except ValueError:
        raise ConfigError(f"cannot parse time '{text}': expected e.g. -1h, yesterday, "
                          f"2026-01-31T12:00:00 or @1700000000") from None

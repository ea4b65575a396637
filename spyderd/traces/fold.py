"""Duplicate folding: the same rule on the same program and arguments, again and again.

A cron job tripping a rule every minute, or a scanner hitting a web shell a hundred times,
should be one finding with a count, not a hundred. A finding is a duplicate when the same
rule matched a process running the same executable with the same arguments within
`window` seconds of the last occurrence; the window slides with each repeat. The first
finding stays, its `count` and `last_time` grow, and the repeats are not sent on their own.
"""

from __future__ import annotations

from collections import OrderedDict

from spyderd.model import Finding, Node

MAX_KEYS = 20_000


def fold_key(rule: str, subject: Node) -> tuple:
    a = subject.attrs
    return (rule, a.get("exe") or a.get("comm") or "", tuple(a.get("args") or ()),
            a.get("container_id") or "")


class Folder:
    """Remembers the latest finding per (rule, exe, args, container) for `window_ns`."""

    def __init__(self, window_s: float) -> None:
        self.window_ns = int(window_s * 1e9)
        self._seen: OrderedDict[tuple, Finding] = OrderedDict()
        self.folded = 0

    def fold(self, rule: str, subject: Node, t: int) -> Finding | None:
        """The earlier finding this occurrence folds into (count updated), or None."""
        if self.window_ns <= 0:
            return None
        key = fold_key(rule, subject)
        prev = self._seen.get(key)
        if prev is None or t - (prev.last_time or prev.time) > self.window_ns:
            return None
        prev.count += 1
        prev.last_time = max(t, prev.last_time or prev.time)
        self._seen.move_to_end(key)
        self.folded += 1
        return prev

    def remember(self, f: Finding, subject: Node) -> None:
        key = fold_key(f.rule, subject)
        self._seen[key] = f
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_KEYS:
            self._seen.popitem(last=False)

    def expire(self, now_ns: int) -> None:
        """Forget keys whose window has passed (oldest first, stops at the first live one)."""
        while self._seen:
            f = next(iter(self._seen.values()))
            if now_ns - (f.last_time or f.time) <= self.window_ns:
                break
            self._seen.popitem(last=False)

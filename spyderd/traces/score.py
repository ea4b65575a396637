"""Trace scores: one weight per distinct rule, by its severity; repeats add nothing.

An analyst wants one alert per attack, ranked by how much of an attack it looks like. A
trace scores the sum, over the distinct rules that fired in it, of the weight of the rule's
highest severity there. Fifty repeats of one rule score like one; a web shell that also
ran recon, downloaded a file and executed it scores like the four rules it tripped. Findings
a suppression policy matched weigh nothing, and a trace whose trigger was suppressed scores
zero whatever comes after.

With the default threshold (40) one critical rule, two high ones, or a high one and three
medium ones make a trace worth its own journald entry.
"""

from __future__ import annotations

from collections.abc import Mapping

WEIGHTS: Mapping[str, int] = {"critical": 40, "high": 20, "medium": 8, "low": 3, "info": 1}
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")
DEFAULT_THRESHOLD = 40


def worse(a: str, b: str) -> str:
    """The more severe of two severities."""
    ra = SEVERITY_ORDER.index(a) if a in SEVERITY_ORDER else len(SEVERITY_ORDER)
    rb = SEVERITY_ORDER.index(b) if b in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return a if ra <= rb else b


def score(rules: Mapping[str, str], suppressed_trace: bool = False) -> int:
    """Score of a trace whose (unsuppressed) distinct rules have these severities."""
    if suppressed_trace:
        return 0
    return sum(WEIGHTS.get(sev, 0) for sev in rules.values())


"""The attack catalogue itself, without the kernel: its spread over the ATT&CK tactics,
that it and the example recordings together give every default rule a positive and a
negative test, and that docs/detections.md is what the catalogue renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogue import REPLAY_ONLY, TECHNIQUES, render_doc

from spyderd.rules import load_rules

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "tests/rules/examples"
TACTICS = {"execution", "persistence", "privilege escalation", "defense evasion",
           "credential access", "discovery", "lateral movement", "collection",
           "command and control", "exfiltration", "impact"}  # fmt: skip


@pytest.fixture(scope="module")
def pack() -> dict:
    return {r.name: r for r in load_rules([REPO / "rules"]).rules}


def _examples() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in EXAMPLES.glob("*.jsonl"):
        with path.open(encoding="utf-8") as f:
            head = json.loads(f.readline())
        found.setdefault(head["rule"], set()).add(head["expect"])
    return found


def test_at_least_40_techniques_over_every_tactic() -> None:
    assert len(TECHNIQUES) >= 40
    assert {t.tactic for t in TECHNIQUES} == TACTICS
    assert len({t.slug for t in TECHNIQUES}) == len(TECHNIQUES), "slugs must be unique"


def test_catalogue_names_real_rules(pack: dict) -> None:
    named = {r for t in TECHNIQUES for r in (*t.rules, *t.quiet_rules)}
    assert named <= set(pack), named - set(pack)
    assert set(REPLAY_ONLY) <= set(pack)


def test_every_rule_has_a_positive_and_a_negative_test(pack: dict) -> None:
    """Live (catalogue technique + benign look-alike) or replayed (example recordings)."""
    examples = _examples()
    live_pos = {r for t in TECHNIQUES for r in t.rules}
    live_neg = {r for t in TECHNIQUES for r in t.quiet_rules}
    untested = [name for name in pack
                if not ((name in live_pos or "match" in examples.get(name, ()))
                        and (name in live_neg or "no match" in examples.get(name, ())))]
    assert not untested, untested
    for rule in REPLAY_ONLY:
        assert examples.get(rule) == {"match", "no match"}, rule


def test_default_pack_size_and_tags(pack: dict) -> None:
    assert len(pack) >= 80
    for rule in pack.values():
        assert rule.mitre, rule.name


def test_detections_doc_is_current() -> None:
    doc = (REPO / "docs/detections.md").read_text(encoding="utf-8")
    assert doc == render_doc(), "run the attack tests or write render_doc() to docs/detections.md"

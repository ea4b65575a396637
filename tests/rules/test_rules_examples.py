"""Every default rule fires on its positive example recording and not on its negative one.

Runs `spyderctl rules test rules/ --events FILE --rule NAME` (in-process for speed, once as a
real subprocess per exit code), and checks the example files are complete and up to date.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rules_support import rule_text

from spyderd.ctl.cli import main as spyderctl
from spyderd.rules import load_rules

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "rules"
EXAMPLES = REPO / "tests/rules/examples"
FILES = sorted(EXAMPLES.glob("*.jsonl"))


def header(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return json.loads(f.readline())


def test_every_example_rule_has_a_positive_and_a_negative_example() -> None:
    """Rules with recordings have both kinds. (Rules without recordings are run live by the
    attack catalogue, with a benign look-alike: tests/attacks/test_catalogue.py checks that
    every rule is covered one way or the other.)"""
    rules = {r.name for r in load_rules([PACK]).rules}
    found: dict[str, set[str]] = {}
    for path in FILES:
        head = header(path)
        found.setdefault(head["rule"], set()).add(head["expect"])
    assert set(found) <= rules
    assert all(kinds == {"match", "no match"} for kinds in found.values()), found


def test_example_files_are_what_the_builder_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_examples", EXAMPLES / "build_examples.py")
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    rendered = builder.render()
    assert sorted(rendered) == [p.name for p in FILES]
    for path in FILES:
        assert path.read_text(encoding="utf-8") == rendered[path.name], path.name


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_rule_on_its_example(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = header(path)
    code = spyderctl(["rules", "test", str(PACK), "--events", str(path), "--rule", head["rule"]])
    out = capsys.readouterr().out
    if head["expect"] == "match":
        assert code == 0, f"{head['rule']} did not fire on {path.name} ({head['about']})\n{out}"
        assert head["rule"] in out
    else:
        assert code == 1, f"{head['rule']} fired on {path.name} ({head['about']})\n{out}"
        assert out.strip() == f"0 matches in {out.split(' in ')[-1].strip()}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spyderd.ctl", "rules", "test", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_exit_codes_and_json_output() -> None:
    pos = EXAMPLES / "reverse-shell-through-dev-tcp.pos.jsonl"
    neg = EXAMPLES / "reverse-shell-through-dev-tcp.neg.jsonl"
    r = _cli(str(PACK), "--events", str(pos), "-o", "json")
    assert r.returncode == 0, r.stderr
    (match,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert match["rule"] == "Reverse shell through /dev/tcp"
    assert match["mitre"] == ["T1059.004", "T1095"]
    assert match["event"]["kind"] == "exec" and match["pid"] == match["event"]["pid"]
    assert "/dev/tcp/203.0.113.5/4444" in match["output"]
    assert r.stderr.strip() == "1 matches in 2 events"
    r = _cli(str(PACK), "--events", str(neg))
    assert (r.returncode, r.stdout.strip()) == (1, "0 matches in 2 events")


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    bad_events = tmp_path / "bad.jsonl"
    bad_events.write_text('{"kind": "exec", "time": 1, "pid": 2, "filename": "/bin/sh"}\n{oops\n')
    r = _cli(str(PACK), "--events", str(bad_events))
    assert r.returncode == 2
    assert f"{bad_events}:2: not JSON" in r.stderr
    bad_rule = tmp_path / "r.yaml"
    bad_rule.write_text(rule_text("x", "process.nme = sh"))
    r = _cli(str(bad_rule), "--events", str(bad_events))
    assert r.returncode == 2 and f"{bad_rule}:3:14: error[E301]" in r.stderr
    r = _cli(str(PACK), "--events", str(bad_events), "--rule", "No such rule")
    assert r.returncode == 2 and "no such rule: No such rule" in r.stderr

"""spyderctl reads the daemon's config for the paths it shares with it: the suppression
policies (findings.suppressions) and the rules (rules)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spyderd.ctl.cli import main as spyderctl
from spyderd.ctl.rules import _configured_paths

POLICY = "- suppress: nightly backup\n  rule: [Archive *]\n"


def test_suppressions_come_from_the_configured_paths(tmp_path: Path, capsys) -> None:
    policies = tmp_path / "suppress.d"
    policies.mkdir()
    (policies / "10-ops.yaml").write_text(POLICY)
    config = tmp_path / "spyderd.yaml"
    config.write_text(f"findings:\n  suppressions: [{policies}]\n")
    code = spyderctl(["--config", str(config), "--runtime-dir", str(tmp_path / "run"),
                      "suppressions", "-o", "json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["nightly backup"]


def test_rule_paths_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "spyderd.yaml"
    config.write_text("rules: /srv/rules.yaml\n")  # one scalar: a list of one
    assert _configured_paths(argparse.Namespace(config=str(config))) == ["/srv/rules.yaml"]


def test_a_broken_config_falls_back_to_the_default_rule_paths(tmp_path: Path) -> None:
    config = tmp_path / "spyderd.yaml"
    config.write_text("rulez: []\n")
    assert _configured_paths(argparse.Namespace(config=str(config))) == [
        "/usr/share/spyderd/rules", "/etc/spyderd/rules.d"]

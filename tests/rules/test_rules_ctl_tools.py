"""spyderctl rules validate (with the installed rules, or --standalone), rules list --lists
--macros, and rules import-sigma's output, report and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rules_support import write

from spyderd.ctl.cli import main as spyderctl

REPO = Path(__file__).resolve().parents[2]
SIGMA = REPO / "tests/sigma/corpus"
SITE = """\
- rule: Site shell below a web server
  event: exec
  condition: process.name in shell_binaries and ancestor(web_server)
  severity: high
  output: "{process.name}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose installed rules are the default pack of this tree."""
    return write(tmp_path, "spyderd.yaml", f"rules: [{REPO / 'rules'}]\n")


def test_validate_resolves_the_installed_lists_and_macros(tmp_path, config, capsys) -> None:
    site = write(tmp_path, "site.yaml", SITE)
    assert spyderctl(["--config", str(config), "rules", "validate", str(site)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 rules ok (with the ") and "installed rules)" in out


def test_validate_standalone_checks_the_file_alone(tmp_path, config, capsys) -> None:
    site = write(tmp_path, "site.yaml", SITE)
    code = spyderctl(["--config", str(config), "rules", "validate", str(site), "--standalone"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{site}:3:30: error[E302]: unknown list 'shell_binaries'" in err
    assert f"{site}:3:58: error[E303]: unknown macro 'web_server'" in err


def test_validate_a_file_of_the_installed_pack_is_not_loaded_twice(config, capsys) -> None:
    pack_file = REPO / "rules/web_shell.yaml"
    assert spyderctl(["--config", str(config), "rules", "validate", str(pack_file)]) == 0
    assert " rules ok (with the " in capsys.readouterr().out


def test_list_lists_and_macros(capsys) -> None:
    pack = str(REPO / "rules")
    assert spyderctl(["rules", "list", pack, "--lists", "-o", "json"]) == 0
    lists = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shells = next(e for e in lists if e["name"] == "shell_binaries")
    assert shells["kind"] == "list" and "bash" in shells["items"]
    assert shells["file"].startswith(f"{pack}/00-base.yaml:")
    assert spyderctl(["rules", "list", pack, "--macros"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows and all(r.startswith("macro\t") for r in rows)
    assert any(r.startswith("macro\tweb_server\t") for r in rows)


def test_import_sigma_writes_rules_and_reports_what_it_left_out(tmp_path, capsys) -> None:
    out = tmp_path / "sigma.yaml"
    assert spyderctl(["rules", "import-sigma", str(SIGMA), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "unsupported_hashes.yml: Known bad hash (no hash field) " in err
    assert "not converted: Sigma field 'Hashes' has no spyderd equivalent" in err
    assert err.strip().endswith("30 rules converted to " + str(out) + ", 6 not converted")
    rules = yaml.safe_load(out.read_text())
    assert len(rules) == 30 and all(r["sigma_id"] for r in rules)
    assert spyderctl(["rules", "validate", "--standalone", str(out)]) == 0


def test_import_sigma_exit_status(tmp_path, capsys) -> None:
    clean = SIGMA / "proc_nc_exec.yml"
    assert spyderctl(["rules", "import-sigma", str(clean), "-o", "-"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)[0]["rule"] == "Netcat with exec option"
    assert "1 rules converted to -, 0 not converted" in err
    assert spyderctl(["rules", "import-sigma", str(tmp_path / "nope.yml"), "-o", "-"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert spyderctl(["rules", "import-sigma", str(clean)]) == 2

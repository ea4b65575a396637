"""Suppression policy files: loading with located errors, matching, expiry."""

from __future__ import annotations

import pytest

from spyderd.errors import ConfigError
from spyderd.model import Node
from spyderd.traces.suppress import load_suppressions

GOOD = """\
- suppress: ansible over ssh
  reason: config management
  rule: ["Shell *", Recon]
  ancestor: [ansible-playbook, /usr/bin/salt-*]
- suppress: ci containers
  container_image: ["registry.example.com/ci/*"]
  user: [deploy, 1001]
  expires: 2001-01-01
"""


def proc(name: str, uid: int = 0, **attrs) -> Node:
    return Node(id=f"proc:{name}", kind="process", uid=uid,
                attrs={"exe": f"/usr/bin/{name}", **attrs})


def test_policies_match_on_rule_ancestry_image_and_user(tmp_path):
    d = tmp_path / "suppress.d"
    d.mkdir()
    (d / "10-ops.yaml").write_text(GOOD)
    (d / "notes.txt").write_text("ignored")
    s = load_suppressions([d, tmp_path / "missing.d"])
    assert [p.name for p in s.policies] == ["ansible over ssh", "ci containers"]
    assert s.policies[0].where == f"{d / '10-ops.yaml'}:1:3"
    line = [proc("sh"), proc("ansible-playbook")]
    assert s.match("Shell below web server", proc("bash"), line).name == "ansible over ssh"
    assert s.match("Recon", proc("id"), [proc("salt-minion")]).name == "ansible over ssh"
    assert s.match("Download", proc("curl"), line) is None  # rule not listed
    assert s.match("Shell x", proc("bash"), [proc("sshd")]) is None  # ancestry differs
    ci = proc("make", uid=1001, container_image="registry.example.com/ci/build:3")
    assert s.match("Anything", ci, [], now=900_000_000.0).name == "ci containers"
    assert s.match("Anything", ci, []) is None  # expired since 2001
    assert s.hits == {"ansible over ssh": 2, "ci containers": 1}


@pytest.mark.parametrize(("text", "where", "what"), [
    ("- suppress: x\n  rulez: [a]\n", ":2:3:", "unknown key 'rulez' (did you mean 'rule'?)"),
    ("- suppress: x\n  reason: nothing to match\n", ":1:3:", "matches everything"),
    ("- rule: [a]\n", ":1:3:", "needs 'suppress: NAME'"),
    ("- suppress: x\n  user: {a: 1}\n", ":2:9:", "must be a string or a list of strings"),
    ("- suppress: x\n  rule: a\n  expires: soon\n", ":3:12:", "'expires' must be a date"),
    ("suppress: x\n", ":1:1:", "expected a list"),
    ("- suppress: x\n  rule: [a\n", ":3:1:", "expected ',' or ']'"),
])
def test_errors_are_located(tmp_path, text, where, what):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_suppressions([f])
    assert f"{f}{where}" in str(exc.value) and what in str(exc.value), str(exc.value)


def test_duplicate_names_are_an_error(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("- suppress: x\n  rule: a\n- suppress: x\n  rule: b\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3:3: suppression 'x' already defined"):
        load_suppressions([f])

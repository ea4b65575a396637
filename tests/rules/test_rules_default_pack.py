"""The shipped rules/web_shell.yaml on realistic process chains built with DictContext."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_support import proc

from spyderd.model.events import ExecEvent
from spyderd.model.nodes import Node
from spyderd.rules import DictContext, RuleSet, load_rules

PACK = Path(__file__).resolve().parents[2] / "rules"
RULE = "Shell spawned below a web server"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules([PACK])


def spawn_shell(parent: Node, pid: int) -> tuple[Node, Node]:
    """fork (a copy of the parent image) then exec of /bin/sh, as the graph records it."""
    copy = proc(
        f"fork{pid}", parent.attrs["exe"], parent, via="spawned", pid=pid, args=parent.attrs["args"]
    )
    sh = proc(f"sh{pid}", "/bin/sh", copy, via="exec", pid=pid, args=["sh", "-c", "id; uname"])
    return copy, sh


def exec_event(node: Node) -> ExecEvent:
    return ExecEvent(time=1, pid=node.pid, filename=node.attrs["exe"], args=node.attrs["args"])


def test_pack_loads_cleanly(ruleset: RuleSet) -> None:
    assert len(ruleset.rules) >= 25
    assert ruleset.warnings == []
    rule = ruleset.get(RULE)
    assert rule is not None
    assert (rule.severity, rule.priority, rule.events) == ("high", 3, ("exec",))
    assert rule.mitre == ["T1505.003", "T1059.004"]


def test_every_rule_is_attack_tagged_and_described(ruleset: RuleSet) -> None:
    for rule in ruleset.rules:
        assert rule.mitre, f"{rule.name}: no ATT&CK technique id in tags"
        assert rule.description, rule.name
        assert rule.enabled, rule.name


def test_package_and_config_managers_are_exceptions(ruleset: RuleSet) -> None:
    """The management macros are defined once and excuse the rules they should."""
    macros = ruleset.definitions.macros
    assert {"package_manager_activity", "config_manager_activity", "system_management"} <= set(
        macros
    )
    lists = ruleset.definitions.lists
    managers = {str(v) for v, _, _ in lists["package_managers"].items}
    assert {"apt", "dpkg", "yum", "dnf", "rpm", "pip"} <= managers
    configs = {str(v) for v, _, _ in lists["config_manager_binaries"].items}
    assert {"ansible", "puppet", "chef-client", "salt-minion"} <= configs


def test_listening_python_spawning_sh_matches(ruleset: RuleSet) -> None:
    app = proc("app", "/usr/bin/python3", pid=120, args=["python3", "app.py"], listen_ports=[8000])
    copy, sh = spawn_shell(app, 133)
    (match,) = ruleset.match(exec_event(sh), sh, DictContext.of(app, copy, sh))
    assert match.rule.name == RULE
    assert match.refs == [app]
    assert match.output == (
        'Shell sh (pid 133, cmdline "sh -c id; uname") started below web server python3 (pid 120)'
    )


def test_nginx_worker_two_levels_up_matches(ruleset: RuleSet) -> None:
    master = proc("m", "/usr/sbin/nginx", pid=10, args=["nginx"])
    worker = proc("w", "/usr/sbin/nginx", master, pid=11, args=["nginx"])
    php = proc("p", "/usr/sbin/php-fpm", worker, pid=12, args=["php-fpm"])
    copy, sh = spawn_shell(php, 13)
    (match,) = ruleset.match(exec_event(sh), sh, DictContext.of(master, worker, php, copy, sh))
    assert match.refs == [copy], "the nearest web server image: php-fpm's fork copy"
    assert "below web server php-fpm (pid 13)" in match.output


def test_bash_spawning_sh_does_not_match(ruleset: RuleSet) -> None:
    login = proc("b", "/bin/bash", pid=50, args=["-bash"])
    copy, sh = spawn_shell(login, 51)
    assert ruleset.match(exec_event(sh), sh, DictContext.of(login, copy, sh)) == []


def test_python_that_does_not_listen_does_not_match(ruleset: RuleSet) -> None:
    script = proc("py", "/usr/bin/python3", pid=60, args=["python3", "build.py"])
    copy, sh = spawn_shell(script, 61)
    assert ruleset.match(exec_event(sh), sh, DictContext.of(script, copy, sh)) == []


def test_non_shell_below_web_server_does_not_match(ruleset: RuleSet) -> None:
    web = proc("w", "/usr/sbin/nginx", pid=70, args=["nginx"])
    logrotate = proc("l", "/usr/sbin/logrotate", web, pid=71)
    ctx = DictContext.of(web, logrotate)
    assert ruleset.match(exec_event(logrotate), logrotate, ctx) == []

"""spyderctl query: the rule condition language over stored events, with causal operators."""

from __future__ import annotations

import pytest
from traces_support import World

from spyderd.ctl.query import compile_query, run_query
from spyderd.errors import RuleError


def stored_world(tmp_path):
    w = World(tmp_path)
    w.web_server()
    w.run(200, 100, "/bin/sh", "-c", "curl")
    w.run(201, 200, "/usr/bin/curl", "http://evil")
    w.connect(201, 443)
    w.run(300, 1, "/usr/bin/curl", "http://ok", container_id="c" * 64)
    w.graph.flush()
    return w


def names(rows) -> list[str]:
    return [(raw["kind"], node.name, node.pid) for raw, node in rows]


def test_conditions_with_causal_operators_over_history(tmp_path):
    w = stored_world(tmp_path)
    q = compile_query('process.name = "curl" and ancestor(process.name = "nginx")', [])
    assert names(run_query(w.store, q, 0, None, None, None)) == [
        ("exec", "curl", 201), ("connect", "curl", 201)]
    q = compile_query('process.name = "curl"', [])
    assert names(run_query(w.store, q, 0, None, "exec", None)) == [
        ("exec", "curl", 201), ("exec", "curl", 300)]
    assert len(list(run_query(w.store, q, 0, None, None, 1))) == 1
    q = compile_query("connection.remote_port = 443", [])
    assert names(run_query(w.store, q, 0, None, None, None)) == [("connect", "curl", 201)]


def test_time_window(tmp_path):
    w = stored_world(tmp_path)
    q = compile_query('process.name = "curl"', [])
    late = w.t - 2 * 10**9
    assert [n.pid for _, n in run_query(w.store, q, late, None, "exec", None)] == [300]
    assert [n.pid for _, n in run_query(w.store, q, 0, late, "exec", None)] == [201]


def test_rule_macros_are_available(tmp_path):
    w = stored_world(tmp_path / "w")
    rules = tmp_path / "site.yaml"
    rules.write_text("- list: servers\n  items: [nginx, httpd]\n"
                     "- macro: web_server\n  condition: process.name in (servers)\n")
    q = compile_query("ancestor(web_server) and process.name = curl", [str(rules)])
    assert [n.pid for _, n in run_query(w.store, q, 0, None, "exec", None)] == [201]


def test_bad_condition_is_a_located_error():
    with pytest.raises(RuleError, match=r"<query>:1:\d+"):
        compile_query('process.name = = "x"', [])

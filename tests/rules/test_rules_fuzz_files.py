"""Whatever shape a rule file's exceptions, appends and overrides take, loading answers with
located diagnostics or rules, never a traceback."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spyderd.rules.collector import collect
from spyderd.rules.reader import read_text
from spyderd.rules.ruleset import build_rules

ATOMS = st.sampled_from([None, 1, True, "x", "=", "in", "pmatch", "process.name", "file.flags",
                         "proc.name", "and", '"q"', "-1", "O_TRUNC", "/etc", "a b"])  # fmt: skip
VALUES = st.recursive(ATOMS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["name", "fields", "comps", "values"]),
                                        inner, max_size=4), max_leaves=12)  # fmt: skip
EXCEPTION = st.dictionaries(st.sampled_from(["name", "fields", "comps", "values"]), VALUES,
                            max_size=4)  # fmt: skip
LATER = st.one_of(
    st.fixed_dictionaries({"rule": st.just("r"), "append": st.sampled_from([True, 1, "x"])},
                          optional={"exceptions": st.lists(EXCEPTION, max_size=2),
                                    "condition": st.sampled_from(["and x", "or process.pid = 1",
                                                                  "not", 3]),
                                    "tags": VALUES}),
    st.fixed_dictionaries({"rule": st.just("r"), "override": VALUES},
                          optional={"output": VALUES, "condition": VALUES,
                                    "severity": VALUES}),
    st.fixed_dictionaries({"macro": st.just("m"), "append": st.just(True),
                           "condition": st.sampled_from(["or x", "and y", "", "or"])}),
)  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(st.lists(EXCEPTION, min_size=1, max_size=2), st.lists(LATER, max_size=3),
       st.sampled_from(["event", "severity", "output", None]))  # fmt: skip
def test_exceptions_appends_overrides_never_raise(exceptions, later, drop) -> None:
    rule = {"rule": "r", "event": "file", "condition": "file.path pmatch (/etc)",
            "severity": "high", "output": "o", "exceptions": exceptions}  # fmt: skip
    if drop:
        del rule[drop]
    text = yaml.safe_dump([{"macro": "m", "condition": "process.name = x"}, rule, *later])
    entries, diags = read_text(text, "f.yaml")
    defs, found = collect(entries)
    diags += found
    build_rules(defs, diags)
    for d in diags:
        assert d.line >= 1 and d.col >= 1 and d.code[0] in "EW", str(d)

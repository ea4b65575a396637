"""The rule engine: YAML rule files to compiled predicates over events and the causal graph.

Four stages, one module each: `reader` (YAML to located entries), `collector` (lists,
macros, rules with appends and overrides), `compiler` (conditions to closures, with the
grammar in `condition.lark` and the field catalogue in `fields`), `ruleset` (rules indexed by
event kind and guards, see `guards`; sequences in `sequences`). The graph is read through
`context.GraphContext`. Everything a caller needs is re-exported here; the modules behind it
are implementation. docs/rules.md is the language reference.
"""

from spyderd.rules.compiler import Predicate
from spyderd.rules.context import MAX_DEPTH, DictContext, GraphContext, walk_ancestors
from spyderd.rules.diagnostics import Diagnostic, Location
from spyderd.rules.fields import FIELDS, Field
from spyderd.rules.ruleset import (
    Match,
    Rule,
    RuleSet,
    compile_condition,
    load_rules,
    message_id,
)

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "Diagnostic",
    "DictContext",
    "Field",
    "GraphContext",
    "Location",
    "Match",
    "Predicate",
    "Rule",
    "RuleSet",
    "compile_condition",
    "load_rules",
    "message_id",
    "walk_ancestors",
]

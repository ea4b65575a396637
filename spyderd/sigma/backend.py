"""The spyderd backend for pySigma: a Sigma rule's detection as a spyderd condition.

Sigma matches strings case-insensitively unless `|cased` says otherwise, so plain values
become `i=`, `icontains`, `istartswith`, `iendswith` and, for wildcards inside a value,
an anchored `imatches` built from pySigma's own wildcard-to-regex conversion (`|cased` gives
the case-sensitive operators). `|re` becomes `matches` (its i, m, s flags as `(?i)` ... in front),
`|cidr` `in (network)`, `|gt` and friends the ordered comparisons, `|exists` `exists`,
`null` `not F exists`. base64, base64offset, windash, all, contains/startswith/endswith are
applied by pySigma to the values before they reach the backend. Non-string fields (ports,
addresses, pids) compare with `=`: case does not apply to them.

Each rule becomes one spyderd rule mapping (`finalize_query_default`); the `default` output
is the YAML list of them, as `sigma convert -t spyderd` prints it. A field the pipeline
could not map, or a construct spyderd has no form for, raises an error naming it, so the
rule is reported as not converted with the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule
from sigma.types import CompareOperators, SigmaString

from spyderd.rules.fields import FIELDS
from spyderd.sigma.pipeline import spyderd_pipeline
from spyderd.sigma.rules import rule_entry


class SpyderdBackend(TextQueryBackend):
    """Sigma rules to spyderd rules (conditions over spyderd's fields)."""

    name: ClassVar[str] = "spyderd rules"
    identifier: ClassVar[str] = "spyderd"
    formats: ClassVar[dict[str, str]] = {
        "default": "spyderd rule file (YAML)",
        "condition": "the bare spyderd conditions, one per line",
    }
    requires_pipeline: ClassVar[bool] = False
    # rules a correlation refers to are finalized too: spyderd rebuilds them as steps
    finalize_correlation_subqueries = True
    backend_processing_pipeline: ClassVar[ProcessingPipeline] = spyderd_pipeline()

    group_expression: ClassVar[str] = "({expr})"
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    eq_token: ClassVar[str] = " = "
    eq_expression: ClassVar[str] = "{field} i= {value}"
    not_eq_expression: ClassVar[str] = "{field} i!= {value}"

    field_quote: ClassVar[str | None] = None
    str_quote: ClassVar[str] = '"'
    escape_char: ClassVar[str] = "\\"
    wildcard_multi: ClassVar[str] = "*"
    wildcard_single: ClassVar[str] = "?"
    add_escaped: ClassVar[str] = "\\"
    filter_chars: ClassVar[str] = ""
    bool_values: ClassVar[dict[bool, str | None]] = {True: "true", False: "false"}

    startswith_expression: ClassVar[str] = "{field} istartswith {value}"
    endswith_expression: ClassVar[str] = "{field} iendswith {value}"
    contains_expression: ClassVar[str] = "{field} icontains {value}"
    wildcard_match_expression: ClassVar[str] = '{field} imatches "^{regex}$"'
    case_sensitive_match_expression: ClassVar[str] = '{field} matches "^{regex}$"'
    case_sensitive_startswith_expression: ClassVar[str] = "{field} startswith {value}"
    case_sensitive_endswith_expression: ClassVar[str] = "{field} endswith {value}"
    case_sensitive_contains_expression: ClassVar[str] = "{field} contains {value}"

    re_expression: ClassVar[str] = '{field} matches "{flag_i}{flag_m}{flag_s}{regex}"'
    re_escape_char: ClassVar[str] = "\\"
    re_escape: ClassVar[tuple[str, ...]] = ('"',)
    re_escape_escape_char: bool = True
    re_flag_prefix: bool = False
    re_flags: ClassVar[dict[Any, str]] = {
        flag: "(?" + c + ")" for flag, c in TextQueryBackend.re_flags.items()
    }

    cidr_expression: ClassVar[str] = "{field} in ({value})"
    compare_op_expression: ClassVar[str] = "{field} {operator} {value}"
    compare_operators: ClassVar[dict[CompareOperators, str]] = {
        CompareOperators.LT: "<",
        CompareOperators.LTE: "<=",
        CompareOperators.GT: ">",
        CompareOperators.GTE: ">=",
    }
    field_null_expression: ClassVar[str] = "not {field} exists"
    field_exists_expression: ClassVar[str] = "{field} exists"
    field_not_exists_expression: ClassVar[str] = "not {field} exists"

    convert_or_as_in: ClassVar[bool] = False
    convert_and_as_in: ClassVar[bool] = False

    unbound_value_str_expression: ClassVar[str] = '{field} imatches "{regex}"'
    unbound_value_num_expression: ClassVar[str] = "{field} icontains {value}"
    unbound_value_re_expression: ClassVar[str] = '{field} matches "{value}"'

    def escape_and_quote_field(self, field_name: str) -> str:
        """The field as spyderd names it; a Sigma field left unmapped cannot be converted."""
        if field_name not in FIELDS:
            raise SigmaFeatureNotSupportedByBackendError(
                f"Sigma field {field_name!r} has no spyderd equivalent for this log source"
            )
        return field_name

    def convert_condition_field_eq_val_str(self, cond: Any, state: ConversionState) -> Any:
        """Strings on str fields per Sigma's matching; on other types (ports, addresses, ids)
        a plain `=`, and wildcards there cannot be expressed."""
        fld = FIELDS.get(self.escape_and_quote_field(cond.field))
        if fld is not None and fld.type != "str":
            if cond.value.contains_special():
                raise SigmaFeatureNotSupportedByBackendError(
                    f"wildcards on {fld.name} ({fld.type}) cannot be expressed"
                )
            return f"{fld.name} = {self.convert_value_str(cond.value, state)}"
        return super().convert_condition_field_eq_val_str(cond, state)

    def convert_condition_val_str(self, cond: Any, state: ConversionState) -> Any:
        """A keyword (a value without a field) searches the log source's main text field."""
        value: SigmaString = cond.value
        regex = self.convert_value_re(value.to_regex(self.add_escaped_re), state)
        return f'{_keyword_field(state)} imatches "{regex}"'

    def convert_condition_val_num(self, cond: Any, state: ConversionState) -> Any:
        return f'{_keyword_field(state)} icontains "{cond.value}"'

    def convert_condition_val_re(self, cond: Any, state: ConversionState) -> Any:
        return f'{_keyword_field(state)} matches "{self.convert_value_re(cond.value, state)}"'

    def finalize_query_default(
        self, rule: SigmaRule, query: Any, index: int, state: ConversionState
    ) -> Any:
        return rule_entry(rule, query, _events(state), index)

    def finalize_output_default(self, queries: list[Any]) -> Any:
        return yaml.safe_dump(queries, sort_keys=False, allow_unicode=True, width=100)

    def finalize_query_condition(
        self, rule: SigmaRule, query: Any, index: int, state: ConversionState
    ) -> Any:
        return query

    def finalize_output_condition(self, queries: list[Any]) -> Any:
        return "\n".join(queries)


def _keyword_field(state: ConversionState) -> str:
    return state.processing_state.get("spyderd_keywords", "process.cmdline")


def _events(state: ConversionState) -> list[str]:
    return list(state.processing_state.get("spyderd_events", ["exec"]))

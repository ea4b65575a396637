"""Compiler: condition trees to Python closures (stage 3).

Every node of the tree becomes one closure `pred(ev, node, ctx, refs) -> bool`; nothing is
generated as source and run with exec. Work that can be done once is done here: macros and
lists are expanded, literals are converted to the field's type, regexes and globs compiled,
CIDRs parsed. Mistakes become located diagnostics, and compiling goes on after one, so a file
reports every error at once.

Literal conversion lives in `values`, the closures that join predicates and follow the graph
in `combinators`, field tests in `leaves`; this module walks the tree and reports mistakes.
With `optimize` (the default) it also fuses `f op a or f op b` on one field into one leaf,
flattens and/or chains into one closure and memoises macros per event; the unoptimised
compiler is the reference the property tests hold those against.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from lark import Token, Tree

from spyderd.errors import RuleError
from spyderd.rules import leaves
from spyderd.rules.collector import ListDef, MacroDef
from spyderd.rules.combinators import (
    AncestorCache,
    Predicate,
    all_of,
    any_of,
    both,
    either,
    either_pure,
    memoized,
    negate,
    negate_pure,
    never,
    on_ancestor,
    on_descendant,
    on_each,
    on_one,
    on_parent,
    on_sibling,
)
from spyderd.rules.context import MAX_DEPTH
from spyderd.rules.diagnostics import Diagnostic, Location, error, warning
from spyderd.rules.fields import FIELDS, Field, suggest
from spyderd.rules.fields.falco import choice_hint, falco_hint
from spyderd.rules.parser import parse_condition
from spyderd.rules.source import SourceText
from spyderd.rules.values import (
    ORDERED,
    convert,
    folded_member_test,
    member_test,
    order_test,
    parse_duration,
    path_prefix_test,
    string_test,
    to_int,
    unquote,
)

CAUSAL = ("parent", "ancestor", "descendant", "sibling", "peer", "session", "wrote_by",
          "pipe_writer", "pipe_reader")
# option each operator takes: name -> option -> what a value must be
OPTIONS: dict[str, dict[str, str]] = {
    "ancestor": {"depth": "int"},
    "descendant": {"within": "duration"},
}
# operators whose answer grows as the graph does (new children, new peers): never cached
GROWING = ("descendant", "sibling", "peer", "pipe_writer", "pipe_reader")
# operators whose link appears with a later event of this kind
LINKED_BY = {"wrote_by": frozenset({"wrote_exec"}), "pipe_writer": frozenset({"exec"}),
             "pipe_reader": frozenset({"exec"})}

_STRING_OPS = ("contains", "startswith", "endswith", "glob", "matches")
OPERATORS: dict[str, tuple[str, ...]] = {
    "str": ("=", "!=", "i=", "i!=", *_STRING_OPS, *("i" + op for op in _STRING_OPS)),
    "int": ("=", "!=", "<", "<=", ">", ">="),
    "duration": ("=", "!=", "<", "<=", ">", ">="),
    "bool": ("=", "!="),
    "ip": ("=", "!="),
    "list[str]": ("has", "ihas", "contains", "icontains"),
}
# set operators besides `in`, and the field types they apply to
SET_OPERATORS: dict[str, tuple[str, ...]] = {
    "iin": ("str", "list[str]"),
    "pmatch": ("str",),
    "ipmatch": ("str",),
}
_EQUALITY = ("=", "!=", "i=", "i!=")
_BAD = object()  # a literal that failed to convert; the error is already recorded


@dataclass(slots=True)
class _Scope:
    """Where a tree comes from, and what it read: event-only fields (for W302/W303), the event
    kinds that may change a value it read (`mutable`), and whether it asks a question whose
    answer grows with the graph (`growing`: descendants, siblings, peers)."""

    src: SourceText
    chain: tuple[str, ...] = ()
    event_fields: set[str] = field(default_factory=set)
    mutable: set[str] = field(default_factory=set)
    growing: bool = False

    def absorb(self, other: _Use) -> None:
        self.event_fields.update(other.event_fields)
        self.mutable.update(other.mutable)
        self.growing = self.growing or other.growing


@dataclass(frozen=True, slots=True)
class _Use:
    """What a compiled macro read, so each use of it can add that to its own scope."""

    event_fields: frozenset[str] = frozenset()
    mutable: frozenset[str] = frozenset()
    growing: bool = False


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a literal was written: in the condition, or as an item of a YAML list."""

    loc: Location
    source_line: str


class Compiler:
    """Compiles conditions against one set of lists and macros, collecting diagnostics."""

    def __init__(
        self,
        lists: Mapping[str, ListDef],
        macros: Mapping[str, MacroDef],
        diags: list[Diagnostic],
        optimize: bool = True,
    ) -> None:
        """`optimize=False` compiles every node as written (no fused leaves, no flattened
        chains, no macro memo): the reference the optimised closures are tested against."""
        self.optimize = optimize
        self.lists = lists
        self.macros = macros
        self.diags = diags
        self._macro_cache: dict[str, tuple[Predicate, _Use]] = {}
        self._expanding: list[str] = []
        self.caches: list[AncestorCache] = []  # every ancestor() cache, for invalidation
        # predicates that may add refs (causal operators and what contains them); the others
        # join with cheaper combinators that need not undo refs
        self._impure: set[int] = set()
        self._leaves: dict[int, leaves.Leaf] = {}  # leaf predicate id -> what it tests
        self._chains: dict[tuple[str, int], tuple[Predicate, ...]] = {}  # flattened and/or
        # the registries above key on id(); every predicate they name is kept alive here for
        # the compiler's lifetime, so no id is reused by a later object while compiling
        self._keep: list[Predicate] = []
        # bumped by RuleSet.match for every event: macro results are remembered per event
        self.epoch = [0]

    # -- entry points -------------------------------------------------------------------

    def compile(self, src: SourceText, chain: tuple[str, ...] = ()) -> Predicate | None:
        """The condition in `src` as a predicate, or None when it has errors (recorded)."""
        pred, _ = self._compile_text(src, chain)
        return pred

    def compile_for(
        self, src: SourceText, kinds: Iterable[str], chain: tuple[str, ...] = ()
    ) -> Predicate | None:
        """As `compile`, for a rule on events of `kinds`: an event field none of those kinds
        carries is always missing, which is a mistake worth a warning (W303)."""
        pred, use = self._compile_text(src, chain)
        kinds = tuple(kinds)
        for name in sorted(use.event_fields):
            fld = FIELDS[name]
            if not fld.kinds.intersection(kinds):
                self._warn(
                    "W303",
                    f"{name} is never present on {'/'.join(kinds)} events "
                    f"(it comes with {', '.join(sorted(fld.kinds))})",
                    _Scope(src, chain),
                    0,
                )
        return pred

    def compile_macros(self) -> None:
        """Compile every macro once, so errors in unused macros are reported too."""
        for name, macro in self.macros.items():
            if name not in self._macro_cache:
                self._macro(name, None, _Scope(macro.parts[0]))

    def _compile_text(
        self, src: SourceText, chain: tuple[str, ...]
    ) -> tuple[Predicate | None, _Use]:
        errors = self._error_count()
        scope = _Scope(src, chain)
        pred: Predicate | None = None
        try:
            tree = parse_condition(src)
            pred = self._node(tree, scope)
        except RuleError as exc:
            self.diags.extend(_with_chain(d, chain) for d in exc.diagnostics)
        except RecursionError:
            self._error("E308", "condition nested too deeply", scope, 0)
        use = _Use(frozenset(scope.event_fields), frozenset(scope.mutable), scope.growing)
        return (pred if pred is not None and self._error_count() == errors else None), use

    def _error_count(self) -> int:
        return sum(d.is_error for d in self.diags)

    # -- diagnostics --------------------------------------------------------------------

    def _place(self, scope: _Scope, offset: int) -> _Place:
        loc = scope.src.locate(offset)
        return _Place(loc, scope.src.source_line(loc))

    def _error(
        self, code: str, message: str, scope: _Scope, offset: int, expected: list[str] | None = None
    ) -> Predicate:
        self._error_at(code, message, self._place(scope, offset), scope.chain, expected)
        return never

    def _error_at(
        self,
        code: str,
        message: str,
        place: _Place,
        chain: tuple[str, ...] = (),
        expected: list[str] | None = None,
    ) -> None:
        self.diags.append(error(code, message, place.loc, place.source_line, expected, chain))

    def _warn(self, code: str, message: str, scope: _Scope, offset: int) -> None:
        place = self._place(scope, offset)
        self.diags.append(warning(code, message, place.loc, place.source_line, scope.chain))

    # -- tree walk ----------------------------------------------------------------------

    def _node(self, tree: Tree, scope: _Scope) -> Predicate:
        handler = getattr(self, "_t_" + str(tree.data))
        return handler(tree.children, scope)

    def _t_or_(self, children: list, scope: _Scope) -> Predicate:
        left, right = (self._node(c, scope) for c in children)
        a, b = self._leaves.get(id(left)), self._leaves.get(id(right))
        if self.optimize and a is not None and b is not None and a.field is b.field:
            return self._leaf(a.fuse(b))
        if self._pure(left, right) and self.optimize:
            return self._flat("or", left, right)
        return self._impure_pred(either(left, right))

    def _t_and_(self, children: list, scope: _Scope) -> Predicate:
        left, right = (self._node(c, scope) for c in children)
        if self._pure(left, right) and self.optimize:
            return self._flat("and", left, right)
        return self._impure_pred(both(left, right))

    def _t_not_(self, children: list, scope: _Scope) -> Predicate:
        inner = self._node(children[0], scope)
        return negate_pure(inner) if self._pure(inner) else negate(inner)

    def _flat(self, op: str, left: Predicate, right: Predicate) -> Predicate:
        """A pure `and`/`or` with the operands of nested ones of the same kind pulled up, so
        `a and b and c` is one call, not two."""
        operands = (*self._chains.get((op, id(left)), (left,)),
                    *self._chains.get((op, id(right)), (right,)))  # fmt: skip
        pred = all_of(operands) if op == "and" else any_of(operands)
        self._chains[(op, id(pred))] = operands
        self._keep.append(pred)
        return pred

    def _leaf(self, leaf: leaves.Leaf) -> Predicate:
        pred = leaf.predicate()
        self._leaves[id(pred)] = leaf
        self._keep.append(pred)
        return pred

    def _pure(self, *preds: Predicate) -> bool:
        return not any(id(p) in self._impure for p in preds)

    def _impure_pred(self, pred: Predicate) -> Predicate:
        self._impure.add(id(pred))
        self._keep.append(pred)
        return pred

    def _t_ref(self, children: list, scope: _Scope) -> Predicate:
        """A bare name: a macro, or a bool field standing alone."""
        tok = children[0]
        name = str(tok)
        if name in self.macros:
            return self._macro(name, tok, scope)
        fld = FIELDS.get(name)
        if fld is not None and fld.type == "bool":
            self._note(fld, scope)
            return leaves.true(fld)
        if fld is not None:
            return self._error(
                "E305",
                f"{name} is a {fld.type} field; only bool fields stand "
                f"alone as a condition (did you mean '{name} exists'?)",
                scope,
                _pos(tok),
            )
        return self._unknown_name(tok, scope)

    def _unknown_name(self, tok: Token, scope: _Scope) -> Predicate:
        name = str(tok)
        if "." in name:
            return self._unknown_field(tok, scope)
        if name in self.lists:
            return self._error(
                "E303",
                f"{name!r} is a list, not a macro; use it as 'field in ({name})'",
                scope,
                _pos(tok),
            )
        near = suggest(name, [*self.macros, *(f for f in FIELDS if FIELDS[f].type == "bool")])
        return self._error(
            "E303", f"unknown macro {name!r}" + _did_you_mean(near), scope, _pos(tok)
        )

    def _unknown_field(self, tok: Token, scope: _Scope) -> Predicate:
        name = str(tok)
        falco = falco_hint(name)
        hint = f"; {falco}" if falco else _did_you_mean(suggest(name))
        return self._error("E301", f"unknown field {name!r}{hint}", scope, _pos(tok))

    def _t_exists(self, children: list, scope: _Scope) -> Predicate:
        fld = self._field(children[0], scope)
        if fld is None:
            return never
        self._note(fld, scope)
        return leaves.present(fld)

    def _t_compare(self, children: list, scope: _Scope) -> Predicate:
        tok, op_tree, value = children
        op_tok = op_tree.children[0]
        fld = self._field(tok, scope)
        if fld is None:
            return never
        op = str(op_tok)
        if op not in OPERATORS[fld.type]:
            return self._error(
                "E305",
                f"operator {op!r} does not apply to {fld.name} ({fld.type})",
                scope,
                _pos(op_tok),
                expected=[*OPERATORS[fld.type], "in", "exists"],
            )
        test = self._test(op, fld, value, scope)
        if test is None:
            return never
        if op in _EQUALITY:
            self._check_choice(fld, value, scope, fold=op[0] == "i")
        if fld.type == "list[str]" and op in ("contains", "icontains"):
            self._check_element(fld, op, value, scope)
        self._note(fld, scope)
        if not self.optimize:
            return leaves.tested(fld, test)
        if fld.type in _SCALAR and op == "=":
            return self._leaf(leaves.Leaf(fld, "in", frozenset({self._literal(fld, value)})))
        if fld.type == "str" and op in ("startswith", "endswith", "contains"):
            return self._leaf(leaves.Leaf(fld, op, (self._literal(fld, value),)))
        return self._leaf(leaves.Leaf(fld, "test", test))

    def _t_in_values(self, children: list, scope: _Scope) -> Predicate:
        tok, values = children
        fld = self._field(tok, scope)
        if fld is None:
            return never
        literals: list[tuple[Any, bool, _Place]] = []
        for value in values.children if values is not None else []:
            literals.extend(self._in_item(value, fld, scope))
        return self._membership(fld, literals, scope)

    def _t_in_list(self, children: list, scope: _Scope) -> Predicate:
        tok, name_tok = children
        fld = self._field(tok, scope)
        name = str(name_tok)
        if name not in self.lists:
            return self._error(
                "E302",
                f"unknown list {name!r}" + _did_you_mean(suggest(name, list(self.lists))),
                scope,
                _pos(name_tok),
            )
        if fld is None:
            return never
        items = self._list_items(name, [], self._place(scope, _pos(name_tok)), scope)
        return self._membership(fld, items, scope)

    def _t_not_in_values(self, children: list, scope: _Scope) -> Predicate:
        return negate(self._t_in_values(children, scope))

    def _t_not_in_list(self, children: list, scope: _Scope) -> Predicate:
        return negate(self._t_in_list(children, scope))

    def _t_set_values(self, children: list, scope: _Scope) -> Predicate:
        """`F iin (...)`, `F pmatch (...)`, `F ipmatch (...)`: sets like `in`."""
        tok, op_tree, values = children
        op_tok = op_tree.children[0]
        fld = self._set_field(tok, op_tok, scope)
        if fld is None:
            return never
        items: list[tuple[Any, bool, _Place]] = []
        for value in values.children if values is not None else []:
            items.extend(self._in_item(value, fld, scope))
        return self._set_test(fld, str(op_tok), items, scope)

    def _t_set_list(self, children: list, scope: _Scope) -> Predicate:
        tok, op_tree, name_tok = children
        op_tok = op_tree.children[0]
        name = str(name_tok)
        if name not in self.lists:
            return self._error(
                "E302",
                f"unknown list {name!r}" + _did_you_mean(suggest(name, list(self.lists))),
                scope,
                _pos(name_tok),
            )
        fld = self._set_field(tok, op_tok, scope)
        if fld is None:
            return never
        items = self._list_items(name, [], self._place(scope, _pos(name_tok)), scope)
        return self._set_test(fld, str(op_tok), items, scope)

    def _set_field(self, tok: Token, op_tok: Token, scope: _Scope) -> Field | None:
        fld = self._field(tok, scope)
        op = str(op_tok)
        if fld is not None and fld.type not in SET_OPERATORS[op]:
            self._error(
                "E305",
                f"operator {op!r} does not apply to {fld.name} ({fld.type})",
                scope,
                _pos(op_tok),
                expected=[*OPERATORS[fld.type], "in", "exists"],
            )
            return None
        return fld

    def _set_test(
        self, fld: Field, op: str, items: list[tuple[Any, bool, _Place]], scope: _Scope
    ) -> Predicate:
        values = [str(raw) for raw, _, _ in items]
        if op == "iin":
            for raw, quoted, place in items:
                self._check_choice_at(fld, str(raw), place, scope, fold=True)
            test = folded_member_test(fld.type, values)
        else:
            test = path_prefix_test(values, fold=op == "ipmatch")
        self._note(fld, scope)
        return (
            self._leaf(leaves.Leaf(fld, "test", test))
            if self.optimize
            else leaves.tested(fld, test)
        )

    def _t_bits(self, children: list, scope: _Scope) -> Predicate:
        """`F & MASK`: true when any bit of MASK is set in the int field F."""
        tok, mask_tok = children
        fld, mask = self._mask(tok, mask_tok, scope)
        if fld is None or mask is None:
            return never
        self._note(fld, scope)
        return self._leaf(leaves.Leaf(fld, "test", lambda got: bool(got & mask)))

    def _t_masked(self, children: list, scope: _Scope) -> Predicate:
        """`F & MASK op V`: the masked value compared (`file.mode & S_ISUID|S_ISGID != 0`)."""
        tok, mask_tok, op_tree, value = children
        fld, mask = self._mask(tok, mask_tok, scope)
        if fld is None or mask is None:
            return never
        op_tok = op_tree.children[0]
        op = str(op_tok)
        if op not in ORDERED:
            return self._error(
                "E305", f"operator {op!r} does not compare numbers", scope, _pos(op_tok),
                expected=list(ORDERED),
            )  # fmt: skip
        lit = self._convert(
            str(value), False, fld, self._place(scope, _pos(value)), scope, allow_net=False
        )
        if lit is _BAD:
            return never
        compare = ORDERED[op]
        self._note(fld, scope)
        return self._leaf(leaves.Leaf(fld, "test", lambda got: compare(got & mask, lit)))

    def _mask(self, tok: Token, mask_tok: Token, scope: _Scope) -> tuple[Field | None, Any]:
        fld = self._field(tok, scope)
        if fld is None:
            return None, None
        if fld.type != "int":
            self._error(
                "E305", f"'&' tests bits of int fields; {fld.name} is {_article(fld.type)} field",
                scope, _pos(tok),
            )  # fmt: skip
            return None, None
        raw = unquote(str(mask_tok)) if mask_tok.type == "STRING" else str(mask_tok)
        mask = self._convert(raw, False, fld, self._place(scope, _pos(mask_tok)), scope, False)
        return (fld, None) if mask is _BAD else (fld, mask)

    def _check_choice(self, fld: Field, value: Token, scope: _Scope, fold: bool) -> None:
        raw = unquote(str(value)) if value.type == "STRING" else str(value)
        self._check_choice_at(fld, raw, self._place(scope, _pos(value)), scope, fold)

    def _check_choice_at(
        self, fld: Field, raw: str, place: _Place, scope: _Scope, fold: bool = False
    ) -> None:
        """W304: a value an enumerated field never takes can never match; name the nearest."""
        if not fld.choices or raw in fld.choices:
            return
        if fold and raw.lower() in {c.lower() for c in fld.choices}:
            return
        hint = choice_hint(fld, raw)
        self.diags.append(
            warning(
                "W304",
                f"{fld.name} is never {raw!r}, so this never matches{hint}",
                place.loc,
                place.source_line,
                scope.chain,
            )
        )

    def _check_element(self, fld: Field, op: str, value: Token, scope: _Scope) -> None:
        """W305: `process.args contains 'a b'` tests one whole argument, never a substring."""
        raw = unquote(str(value)) if value.type == "STRING" else str(value)
        if not any(ch.isspace() for ch in raw):
            return
        joined = fld.name.replace(".args", ".cmdline")
        self._warn(
            "W305",
            f"{fld.name} {op} tests whole elements (one argument each), and {raw!r} holds a "
            f"space: write '{joined} {op} ...' for a substring of the command line, or "
            f"'{fld.name} has ...' for one argument",
            scope,
            _pos(value),
        )

    def _t_call(self, children: list, scope: _Scope) -> Predicate:
        """A causal operator: its condition is tested on other nodes of the graph."""
        name_tok, inner_tree, *options = children
        name = str(name_tok)
        if name not in CAUSAL:
            unknown = f"unknown causal operator {name!r}" + _did_you_mean(suggest(name, [*CAUSAL]))
            return self._error("E307", unknown, scope, _pos(name_tok), expected=list(CAUSAL))
        inner_scope = _Scope(scope.src, scope.chain)
        inner = self._node(inner_tree, inner_scope)
        opts = self._options(name, options, scope)
        if inner_scope.event_fields:
            self._warn(
                "W302",
                f"inside {name}() there is no event: "
                + ", ".join(sorted(inner_scope.event_fields))
                + " is always missing",
                scope,
                _pos(name_tok),
            )
        inner_scope.event_fields.clear()  # reported here; they say nothing about the rule
        scope.absorb(_Use(frozenset(), frozenset(inner_scope.mutable), inner_scope.growing))
        scope.mutable.update(LINKED_BY.get(name, ()))
        scope.growing = scope.growing or name in GROWING
        return self._impure_pred(self._operator(name, inner, opts, inner_scope))

    def _operator(
        self, name: str, inner: Predicate, opts: dict[str, int], inner_scope: _Scope
    ) -> Predicate:
        if name == "parent":
            return on_parent(inner)
        if name == "ancestor":
            cache = None
            if not inner_scope.growing:
                cache = AncestorCache(frozenset(inner_scope.mutable))
                self.caches.append(cache)
            return on_ancestor(inner, opts.get("depth"), cache)
        if name == "descendant":
            return on_descendant(inner, opts.get("within"))
        if name == "sibling":
            return on_sibling(inner)
        if name == "peer":
            return on_each(lambda node, ctx: ctx.peers(node), inner)
        if name == "session":
            return on_one(lambda node, ctx: ctx.session(node), inner)
        if name == "pipe_writer":
            return on_each(lambda node, ctx: ctx.pipe_peers(node, "writers"), inner)
        if name == "pipe_reader":
            return on_each(lambda node, ctx: ctx.pipe_peers(node, "readers"), inner)
        return on_one(lambda node, ctx: ctx.writer(node), inner)  # wrote_by

    # -- pieces -------------------------------------------------------------------------

    def _field(self, tok: Token, scope: _Scope) -> Field | None:
        fld = FIELDS.get(str(tok))
        if fld is None:
            self._unknown_field(tok, scope)
        elif fld.deprecated:
            self._warn(
                "W306",
                f"{fld.name} is a deprecated name: write {fld.deprecated} "
                f"({FIELDS[fld.deprecated].doc})",
                scope,
                _pos(tok),
            )
        return fld

    def _note(self, fld: Field, scope: _Scope) -> None:
        """Record that `fld` is read: event-only fields and what may change the value."""
        if fld.from_event:
            scope.event_fields.add(fld.name)
        scope.mutable.update(fld.mutable_on)

    def _literal(self, fld: Field, value: Token) -> Any:
        """A literal already checked by `_test`, converted again for a specialised leaf."""
        quoted = value.type == "STRING"
        raw = unquote(str(value)) if quoted else str(value)
        return convert(raw, quoted, fld.type, False)

    def _options(self, name: str, options: list[Tree], scope: _Scope) -> dict[str, int]:
        """The `, key=value` options of a causal operator, checked and converted."""
        allowed = OPTIONS.get(name, {})
        out: dict[str, int] = {}
        for option in options:
            key, _, value = cast(list[Token], option.children)
            kind = allowed.get(str(key))
            if kind is None:
                takes = ", ".join(f"{k}=" for k in allowed)
                hint = f"; {name}() takes {takes}" if takes else ""
                self._error(
                    "E307", f"{name}() takes no option {str(key)!r}{hint}", scope, _pos(key)
                )
                continue
            text = unquote(str(value)) if value.type == "STRING" else str(value)
            number = self._option_value(kind, text)
            if number is None:
                self._error("E307", _OPTION_HELP[kind], scope, _pos(value))
                continue
            out[str(key)] = number
        return out

    @staticmethod
    def _option_value(kind: str, text: str) -> int | None:
        if kind == "int":
            number = to_int(text)
            return number if number is not None and 1 <= number <= MAX_DEPTH else None
        number = parse_duration(text)
        return number if number else None

    def _macro(self, name: str, tok: Token | None, scope: _Scope) -> Predicate:
        """A macro's predicate, compiled once; a macro reaching itself is an error."""
        if name in self._expanding:
            cycle = " -> ".join([*self._expanding[self._expanding.index(name) :], name])
            offset = _pos(tok) if tok is not None else 0
            return self._error("E304", f"recursive macro: {cycle}", scope, offset)
        if name not in self._macro_cache:
            self._expanding.append(name)
            try:
                self._macro_cache[name] = self._compile_macro(name, tok, scope)
            finally:
                self._expanding.pop()
        pred, use = self._macro_cache[name]
        scope.absorb(use)
        return pred

    def _compile_macro(self, name: str, tok: Token | None, scope: _Scope) -> tuple[Predicate, _Use]:
        macro = self.macros[name]
        link = f"in macro {name!r} defined at {macro.loc}"
        if tok is not None:
            link += f", used at {scope.src.locate(_pos(tok))}"
        preds = []
        total = _Scope(macro.parts[0])
        for part in macro.parts:
            pred, used = self._compile_text(part, (link, *scope.chain))
            preds.append(pred or never)
            total.absorb(used)
        combined = preds[0]
        for pred in preds[1:]:
            combined = (
                either(combined, pred)
                if not self._pure(combined, pred)
                else either_pure(combined, pred)
            )
            if not self._pure(preds[0], pred):
                self._impure_pred(combined)
        use = _Use(frozenset(total.event_fields), frozenset(total.mutable), total.growing)
        if not self.optimize:
            return combined, use
        memo = memoized(combined, self.epoch, pure=self._pure(combined))
        if not self._pure(combined):
            self._impure_pred(memo)
        return memo, use

    def _list_items(
        self, name: str, stack: list[str], place: _Place, scope: _Scope
    ) -> list[tuple[Any, bool, _Place]]:
        """A list's items as (raw, quoted, place); items naming another list expand it."""
        if name in stack:
            self._error_at(
                "E304", "recursive list: " + " -> ".join([*stack, name]), place, scope.chain
            )
            return []
        out: list[tuple[Any, bool, _Place]] = []
        for raw, loc, line in self.lists[name].items:
            item_place = _Place(loc, line)
            if isinstance(raw, str) and raw in self.lists:
                out.extend(self._list_items(raw, [*stack, name], item_place, scope))
            else:
                out.append((raw, True, item_place))
        return out

    def _in_item(self, value: Token, fld: Field, scope: _Scope) -> list[tuple[Any, bool, _Place]]:
        """One element of `in (...)`: a list name expands, anything else is a literal."""
        place = self._place(scope, _pos(value))
        if value.type == "STRING":
            return [(unquote(str(value)), True, place)]
        word = str(value)
        if word in self.lists:
            return self._list_items(word, [], place, scope)
        # a near miss of a list name, closer than suggest()'s cutoff: 'login' is no 'log_dirs'
        near = difflib.get_close_matches(word, list(self.lists), n=3, cutoff=0.75)
        known = word in fld.choices or "/" in word  # a known value or a path: not a list name
        if fld.type in ("str", "list[str]") and not known and (near or _LIST_LIKE.fullmatch(word)):
            self._warn(
                "W301",
                f"{word!r} is not a defined list; it is taken as the string "
                f"{word!r}" + _did_you_mean(near),
                scope,
                _pos(value),
            )
        return [(word, False, place)]

    def _membership(
        self, fld: Field, items: Iterable[tuple[Any, bool, _Place]], scope: _Scope
    ) -> Predicate:
        items = list(items)
        values = [
            self._convert(raw, quoted, fld, place, scope, allow_net=True)
            for raw, quoted, place in items
        ]
        for raw, _, place in items:
            self._check_choice_at(fld, str(raw), place, scope)
        if any(v is _BAD for v in values):
            return never
        self._note(fld, scope)
        if not self.optimize:
            return leaves.tested(fld, member_test(fld.type, values))
        if fld.type in _SCALAR:
            return self._leaf(leaves.Leaf(fld, "in", frozenset(values)))
        return self._leaf(leaves.Leaf(fld, "test", member_test(fld.type, values)))

    def _test(
        self, op: str, fld: Field, value: Token, scope: _Scope
    ) -> Callable[[Any], bool] | None:
        """The test `op value` applied to a field value, built once."""
        quoted = value.type == "STRING"
        raw = unquote(str(value)) if quoted else str(value)
        lit = self._convert(
            raw, quoted, fld, self._place(scope, _pos(value)), scope, allow_net=False
        )
        if lit is _BAD:
            return None
        if op in ORDERED:
            return order_test(op, fld.type, lit)
        if op in ("matches", "imatches"):
            try:
                rx = re.compile(lit, re.IGNORECASE if op == "imatches" else 0)
            except re.error as exc:
                self._error(
                    "E306",
                    f"bad regular expression: {exc.msg}",
                    scope,
                    _pos(value) + int(quoted) + (exc.pos or 0),
                )
                return None
            return lambda got: rx.search(got) is not None
        return string_test(op, fld.type, lit)

    def _convert(
        self, raw: Any, quoted: bool, fld: Field, place: _Place, scope: _Scope, allow_net: bool
    ) -> Any:
        """A literal as the field's type; on failure the error is recorded and _BAD returned."""
        try:
            return convert(raw, quoted, fld.type, allow_net)
        except ValueError as exc:
            self._error_at(
                "E305", f"{fld.name} is {_article(fld.type)} field: {exc}", place, scope.chain
            )
            return _BAD


# a bare word shaped like a list name (snake_case), not like a file name or a path
_LIST_LIKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")

_SCALAR = ("str", "int", "bool", "duration")  # types whose leaves test with == and in

_OPTION_HELP = {
    "int": f"depth must be an integer from 1 to {MAX_DEPTH}",
    "duration": "within must be a duration such as 30s, 10m or 1h",
}


def _pos(tok: Token) -> int:
    """A token's offset in the condition text (Lark types it Optional; parsed tokens have it)."""
    return tok.start_pos or 0


def _article(type_: str) -> str:
    return ("an " if type_[0] in "aeiou" else "a ") + type_


def _did_you_mean(names: list[str]) -> str:
    return "; did you mean " + " or ".join(repr(n) for n in names) + "?" if names else ""


def _with_chain(diag: Diagnostic, chain: tuple[str, ...]) -> Diagnostic:
    """`diag` explained by the outer locations it was reached through."""
    return dataclasses.replace(diag, chain=(*diag.chain, *chain)) if chain else diag

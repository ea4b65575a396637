"""spyderctl query: the rule condition language over stored history.

    spyderctl query 'process.name = "curl" and ancestor(process.name = "sh")' --since -7d

Every stored event in the time window is tested the way the daemon tests a rule: the event,
the process image it belongs to (from the store) and a store-backed context for the causal
operators (`parent`, `ancestor`, `descendant`, `peer`, `session`, ...; see
`spyderd.graph.query.History`). The condition is compiled with the lists and macros of the
rule files (`--rules`, default those of the config), so `ancestor(web_server)` works here
as it does in a rule; if the rule files do not load, only the bare language is available
(and a warning says so).

One line per matching event; `-o json` gives `{"event": ..., "process": ...}` per line.
`--kind` narrows the events first (faster than `evt.kind = exec` in the condition).
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from typing import Any

from spyderd.ctl.common import event_filters
from spyderd.ctl.history import window
from spyderd.ctl.output import EXIT_FAILURE, paged
from spyderd.errors import RuleError, SpyderError
from spyderd.graph.query import History
from spyderd.model import Node, event_from_dict
from spyderd.rules import compile_condition, load_rules
from spyderd.traces.render import command, ts

NODE_CACHE = 4096


class StoreContext(History):
    """History plus the lookups the rule context adds (machine nodes)."""

    def machine(self, node: Node) -> Node | None:
        mid = node.attrs.get("machine_id")
        return self.store.node(f"machine:{mid}") if mid else None


class _Nodes:
    """A small LRU of process nodes: consecutive events mostly share their process."""

    def __init__(self, store) -> None:
        self.store = store
        self.cache: OrderedDict[str, Node | None] = OrderedDict()

    def get(self, nid: str) -> Node | None:
        if nid in self.cache:
            self.cache.move_to_end(nid)
            return self.cache[nid]
        node = self.store.node(nid) if nid else None
        self.cache[nid] = node
        if len(self.cache) > NODE_CACHE:
            self.cache.popitem(last=False)
        return node


def compile_query(text: str, rule_paths: list[str]):
    """The predicate for `text`, with the rule files' lists and macros when they load."""
    try:
        rs = load_rules(rule_paths) if rule_paths else None
    except SpyderError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"spyderctl: warning: rule files did not load, lists and macros unavailable: "
              f"{first}", file=sys.stderr)
        rs = None
    if rs is not None:
        return rs.compile_condition(text, "<query>")
    return compile_condition(text, name="<query>")


def run_query(store, pred, since: int, until: int | None, kind: str | None,
              limit: int | None, filters: dict | None = None):
    """(event dict, process node) for every stored event the predicate accepts; `filters`
    (pid, path, remote_ip, uid, container_id) narrow the events through the indexes."""
    ctx = StoreContext(store)
    nodes = _Nodes(store)
    found = 0
    for raw in store.events(since, until, **(filters or {})):
        if kind and raw.get("kind") != kind:
            continue
        node = nodes.get(raw.get("process_id", ""))
        if node is None:
            continue
        try:
            ev = event_from_dict(raw)
        except ValueError:
            continue
        if pred(ev, node, ctx, []):
            yield raw, node
            found += 1
            if limit and found >= limit:
                return


def cmd_query(args, store, rule_paths: list[str]) -> int:
    since, until = window(args)
    try:
        pred = compile_query(args.expr, rule_paths)
    except RuleError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILURE
    rows = run_query(store, pred, since, until, args.kind, args.limit, event_filters(args))
    if args.output == "json":
        for raw, node in rows:
            print(json.dumps({"event": raw, "process": _proc(node)}))
        return 0
    with paged(args.no_pager) as out:
        for raw, node in rows:
            out.write(f"{ts(raw['time'], True)} {raw['kind']:8} {node.name}[{node.pid}] "
                      f"{node.id}  {command(node)[:160]}{_extra(raw)}\n")
    return 0


def _proc(n: Node) -> dict[str, Any]:
    a = n.attrs
    return {"id": n.id, "pid": n.pid, "ppid": n.ppid, "uid": n.uid, "name": n.name,
            "exe": a.get("exe", ""), "args": a.get("args", []),
            "container_id": a.get("container_id", ""), "start": n.start}


def _extra(raw: dict[str, Any]) -> str:
    if raw["kind"] in ("connect", "accept"):
        return f"  {raw.get('remote_ip')}:{raw.get('remote_port')}"
    if raw["kind"] in ("file", "wrote_exec"):
        return f"  {raw.get('op', 'exec')} {raw.get('path')}"
    if raw["kind"] == "alert":
        return f"  {raw.get('identifier')}: {raw.get('message')}"
    return ""

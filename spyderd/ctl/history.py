"""spyderctl findings, traces, events and suppressions: stored history, and `-f` to follow.

History comes from the store (read-only; LMDB serves readers while the daemon writes).
Following (`-f`) subscribes to the daemon's control socket first, then prints history,
then what the daemon publishes, skipping what was already printed; without a daemon it
polls the store once a second instead, like `journalctl -f` on a journal nobody writes to.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from spyderd.common.timeparse import parse_when
from spyderd.ctl.output import paged, use_color
from spyderd.daemon import control
from spyderd.errors import NotRunningError
from spyderd.traces.render import ts
from spyderd.traces.score import SEVERITY_ORDER

_ANSI_SEV = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m",
             "low": "\033[36m", "info": "\033[2m"}


def window(args) -> tuple[int, int | None]:
    since = parse_when(args.since) if getattr(args, "since", None) else 0
    until = parse_when(args.until) if getattr(args, "until", None) else None
    return since, until


def severity_at_least(sev: str, minimum: str | None) -> bool:
    if not minimum:
        return True
    order = list(SEVERITY_ORDER)
    return sev in order and order.index(sev) <= order.index(minimum)


def _container_match(want: str | None, ids: Iterable[str], names: Iterable[str] = ()) -> bool:
    if not want:
        return True
    if want in ("host", "-"):
        return not any(ids)
    return any(i and i.startswith(want) for i in ids) or want in names


# -- findings --------------------------------------------------------------------------------

def finding_filter(args) -> Callable[[dict[str, Any]], bool]:
    since, until = window(args)
    rules = set(args.rule or [])

    def keep(f: dict[str, Any]) -> bool:
        subject = next((c for c in f.get("chain", []) if c.get("id") == f["process_id"]), {})
        ctr_ids = [subject.get("container_id", "")] if subject else []
        ctr_names = [subject.get("container_name", "")] if subject else []
        if not ctr_ids:
            ctr_ids = [f.get("event", {}).get("container_id", "")]
        return (f["time"] >= since and (until is None or f["time"] <= until)
                and (not rules or f["rule"] in rules)
                and severity_at_least(f["severity"], args.severity)
                and (not args.trace or f["trace_id"] == args.trace)
                and (args.all or not f.get("suppressed"))
                and _container_match(args.container, ctr_ids, ctr_names))

    return keep


def finding_text(f: dict[str, Any], color: bool) -> str:
    sev = f["severity"]
    sev_s = f"{sev:8}"
    if color:
        sev_s = f"{_ANSI_SEV.get(sev, '')}{sev_s}\033[0m"
    count = f" (x{f['count']})" if f.get("count", 1) > 1 else ""
    sup = f" [suppressed: {f['suppressed']}]" if f.get("suppressed") else ""
    return (f"{ts(f['time'], True)} {sev_s} {f['id']} {f['trace_id']} {f['rule']}: "
            f"{f['message']}{count}{sup}")


def cmd_findings(args, open_store, runtime_dir: Path) -> int:
    keep = finding_filter(args)
    color = use_color()

    def history() -> Iterator[dict[str, Any]]:
        since, _ = window(args)
        store = open_store()
        try:
            for f in store.findings(since):
                yield f.to_dict()
        finally:
            store.close()

    def show(f: dict[str, Any], out: TextIO) -> None:
        out.write((json.dumps(f) if args.output == "json" else finding_text(f, color)) + "\n")

    if args.follow:
        return _follow("findings", history, keep, show, args, open_store, runtime_dir)
    with paged(args.no_pager) as out:
        for f in history():
            if keep(f):
                show(f, out)
    return 0


# -- traces ----------------------------------------------------------------------------------

def trace_filter(args) -> Callable[[dict[str, Any]], bool]:
    since, until = window(args)
    rules = set(args.rule or [])

    def keep(tr: dict[str, Any]) -> bool:
        if "rules" not in tr:
            return False
        sev = tr.get("rules", {}).values()
        return (tr.get("last", 0) >= since and (until is None or tr.get("first", 0) <= until)
                and (not rules or rules & set(tr["rules"]))
                and (not args.severity or any(severity_at_least(s, args.severity) for s in sev))
                and tr.get("score", 0) >= (args.min_score or 0)
                and _container_match(args.container, tr.get("containers") or [""]))

    return keep


def trace_text(tr: dict[str, Any], color: bool) -> str:
    score = f"{tr.get('score', 0):4}"
    if color and tr.get("score", 0) >= tr.get("threshold", 1 << 30):
        score = f"\033[1;31m{score}\033[0m"
    c = tr.get("counts") or {}
    root = f"{tr.get('root_name') or '?'}[{tr.get('root_pid', '?')}]"
    if tr.get("root_label"):
        root = f"{tr['root_label']} [{tr.get('root_pid', '?')}]"
    sup = f" [suppressed: {tr['suppressed']}]" if tr.get("suppressed") else ""
    merged = f" (merged into {tr['merged_into']})" if tr.get("merged_into") else ""
    return (f"{ts(tr.get('first', 0), True)} {tr['id']} score {score} "
            f"{tr.get('root_kind', '?'):9} {root}  findings={len(tr.get('findings', []))} "
            f"procs={c.get('processes', '-')} rules: {', '.join(tr.get('rules', {}))}{sup}"
            f"{merged}")


def cmd_traces(args, open_store, runtime_dir: Path) -> int:
    keep = trace_filter(args)
    color = use_color()

    def history() -> Iterator[dict[str, Any]]:
        store = open_store()
        try:
            rows = sorted(store.traces(), key=lambda t: t.get("first", 0))
        finally:
            store.close()
        yield from rows

    def show(tr: dict[str, Any], out: TextIO) -> None:
        rec = {k: v for k, v in tr.items() if k != "emitted"}
        out.write((json.dumps(rec) if args.output == "json" else trace_text(tr, color)) + "\n")

    if args.follow:
        return _follow("traces", history, keep, show, args, open_store, runtime_dir,
                       key=lambda t: (t["id"], t.get("score")))
    with paged(args.no_pager) as out:
        for tr in history():
            if keep(tr):
                show(tr, out)
    return 0


# -- following -------------------------------------------------------------------------------

def _follow(topic: str, history: Callable[[], Iterator[dict[str, Any]]],
            keep: Callable[[dict[str, Any]], bool], show, args, open_store,
            runtime_dir: Path, key: Callable[[dict[str, Any]], Any] = lambda x: x["id"]) -> int:
    """History, then live items; over the control socket, else by polling the store."""
    out = sys.stdout
    seen: set = set()

    def emit(item: dict[str, Any]) -> None:
        k = key(item)
        if k in seen or not keep(item):
            return
        seen.add(k)
        show(item, out)
        out.flush()

    try:  # subscribed before history is read: nothing falls between the two
        live = control.follow(runtime_dir, [topic])
    except NotRunningError:
        live = None
    for item in history():
        emit(item)
    out.flush()
    if live is not None:
        for msg in live:
            emit(msg["item"])
        return 0
    while True:  # no daemon: poll the store
        time.sleep(1.0)
        for item in history():
            emit(item)

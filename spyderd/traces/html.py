"""`spyderctl trace ID -o html`: one self-contained page to mail or attach to a ticket.

The page holds the picture (graphviz's SVG, inline), its styles, its script and the trace's
data (as JSON), and loads nothing else: a Content-Security-Policy forbids every fetch, so a
page opened from a ticket cannot call out. It offers pan and zoom, search by name, pid, path
or address, a click on a box to see the node's attributes (pid, exe, argv, user, container,
times, namespaces), a findings panel that highlights each finding's chain, and the trace's
score and rules in the header.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from typing import Any

from spyderd.traces.build import TraceView, node_json
from spyderd.traces.dot import Picture


def chain_ids(view: TraceView, pic: Picture, f: dict[str, Any]) -> list[str]:
    """Boxes of a finding's chain: the trace root down to its subject, then what it referred to."""
    line, cur, seen = [], view.nodes.get(f["process_id"]), set()
    while cur is not None and cur.id not in seen:
        seen.add(cur.id)
        line.append(cur.id)
        if cur.id == view.root:
            break
        cur = view.nodes.get(cur.parent) if cur.parent else None
    ids = list(reversed(line)) + [r for r in f.get("refs") or [] if r in view.nodes]
    out: list[str] = []
    for nid in ids:
        box = pic.drawn_as(nid)
        if box not in out:
            out.append(box)
    return out


def page_data(view: TraceView, pic: Picture) -> dict[str, Any]:
    """Everything the page's script shows, keyed by node id."""
    nodes = {}
    for n in view.nodes.values():
        d = node_json(n)
        d["role"] = view.roles.get(n.id, "")
        d["box"] = pic.drawn_as(n.id)
        d["folded"] = n.id in pic.copies  # a fork copy drawn as the image that replaced it
        nodes[n.id] = d
    findings = [{**{k: f.get(k) for k in ("id", "rule", "severity", "message", "time", "count",
                                          "process_id", "suppressed")},
                 "chain": chain_ids(view, pic, f)} for f in view.findings]
    return {"id": view.id, "kind": view.kind, "root": view.root, "summary": view.summary,
            "truncated": view.truncated, "nodes": nodes,
            "groups": {gid: [m.id for m in ms] for gid, ms in pic.groups.items()},
            "findings": findings}


def render_html(view: TraceView, pic: Picture, svg: str) -> str:
    """The page, from the view, its picture model and graphviz's SVG of it."""
    data = json.dumps(page_data(view, pic), separators=(",", ":"))
    data = data.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    assets = resources.files("spyderd.traces") / "assets"
    title = f"spyderd {view.kind} {view.id}"
    return (_TEMPLATE
            .replace("@TITLE@", html.escape(title))
            .replace("@CSS@", (assets / "trace.css").read_text())
            .replace("@JS@", (assets / "trace.js").read_text())
            .replace("@SVG@", inline_svg(svg))
            .replace("@DATA@", data))


def inline_svg(svg: str) -> str:
    """graphviz's SVG document as an element for an HTML page (no prolog, doctype, size)."""
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", "", svg, flags=re.DOTALL)
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg id="graph"', svg, count=1).strip()


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
@CSS@
</style>
</head>
<body>
<header id="head"></header>
<aside id="side">
  <input id="search" type="search" placeholder="search: name, pid, path, address" \
autocomplete="off">
  <div id="hits"></div>
  <h2>Findings</h2>
  <div id="findings"></div>
  <h2>Details</h2>
  <div id="details"><p class="hint">Click a box in the picture.</p></div>
</aside>
<main id="view">
  <div id="zoom"><button id="zin" title="zoom in">+</button><button id="zout" \
title="zoom out">&minus;</button><button id="fit" title="whole trace">fit</button></div>
@SVG@
</main>
<script type="application/json" id="trace-data">@DATA@</script>
<script>
@JS@
</script>
</body>
</html>
"""

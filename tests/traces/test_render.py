"""Trace pictures: valid SVG, host and each container in its own color, legend, findings."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from trace_browser import svg_width_px
from traces_support import (
    FakeMatch,
    FakeRule,
    FakeSink,
    World,
    ev_of,
    pipeline,
    web_shell_attack,
)

from spyderd.traces import build_trace
from spyderd.traces.dot import HOST_COLOR, IN_COLOR, OUT_COLOR, PALETTE, picture, render_dot
from spyderd.traces.render import render_tree

SVG = "{http://www.w3.org/2000/svg}"


def mixed_trace(tmp_path):
    """A web shell on the host that starts two containers."""
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    w.web_server()
    sh = w.run(200, 100, "/bin/sh", "-c", "runc run a; runc run b")
    a = w.run(210, 200, "/bin/wget", "http://x", container_id="a" * 64, container_name="web-a")
    b = w.run(220, 200, "/bin/id", container_id="b" * 64, container_name="db-b")
    w.connect(210, 80)
    fs = [p.new(ev_of(n), n, FakeMatch(FakeRule(r)), now=0)
          for n, r in ((sh, "Shell"), (a, "Download \"quoted\""), (b, "Recon"))]
    p.send_due(10)
    return w, build_trace(w.store, fs[0].trace_id), (sh, a, b)


def fills_by_title(svg: str) -> dict[str, str]:
    """node title (its id) -> fill color of its shape."""
    out = {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        title = g.find(f"{SVG}title").text
        shape = next((c for c in g if c.tag in (f"{SVG}polygon", f"{SVG}path",
                                                 f"{SVG}ellipse")), None)
        if shape is not None:
            out[title] = shape.get("fill")
    return out


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz missing")
def test_svg_is_valid_and_colors_host_and_each_container(tmp_path):
    _w, view, (sh, a, b) = mixed_trace(tmp_path)
    dot = render_dot(view)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                         check=True).stdout.decode()
    fills = fills_by_title(svg)
    host, ca, cb = fills[sh.id], fills[a.id], fills[b.id]
    assert host.lower() == HOST_COLOR and len({host, ca, cb}) == 3
    assert {ca, cb} <= set(PALETTE)
    legend = " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))
    assert "container web-a" in legend and "container db-b" in legend and "host" in legend
    assert "inbound connection" in legend and 'Download "quoted"' in legend


def test_tree_marks_findings_and_containers(tmp_path):
    _w, view, _procs = mixed_trace(tmp_path)
    tree = render_tree(view)
    assert "[web-a]" in tree and "[db-b]" in tree
    assert "!! Recon (high)" in tree and "<- trace root" in tree
    assert "\033[" not in tree
    assert "\033[31m" in render_tree(view, color=True)
    assert "listen 127.0.0.1:8080" in tree


def svg_of(dot: str) -> str:
    return subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                          check=True).stdout.decode()


def web_shell_view(tmp_path):
    w, fs, a = web_shell_world(tmp_path)
    return build_trace(w.store, fs[0].trace_id), a


def web_shell_world(tmp_path):
    """The replayed web-shell attack with its findings sent: (world, findings, nodes)."""
    w, sink = World(tmp_path), FakeSink()
    p = pipeline(w, sink)
    a = web_shell_attack(w)
    fs = [p.new(ev_of(a[k]), a[k], FakeMatch(FakeRule(rule, sev)), now=0) for k, rule, sev in
          (("shell", "Shell spawned below a web server", "high"),
           ("id", "Test: recon below a web server", "medium"),
           ("curl", "Test: download tool below a web server", "high"),
           ("chmod", "Test: chmod +x in /tmp", "medium"),
           ("payload", "Test: program run from /tmp", "high"),
           ("callback", "Test: outbound connection below a web server", "high"),
           ("nc", "Test: outbound connection below a web server", "high"))]
    p.send_due(10)
    return w, fs, a


def test_web_shell_picture_fits_a_screen_top_down(tmp_path):
    view, a = web_shell_view(tmp_path)
    assert sum(1 for n in view.nodes.values() if n.kind == "process") >= 30
    dot = render_dot(view)
    assert "rankdir=TB" in dot
    svg = svg_of(dot)
    assert svg_width_px(svg) <= 1600
    titles = {g.find(f"{SVG}title").text for g in ET.fromstring(svg).iter(f"{SVG}g")
              if g.get("class") == "node"}
    pic = picture(view)
    for copy in pic.copies:  # fork copies are folded into the image that replaced them
        assert copy not in titles
    assert a["payload"].id in titles and a["nc"].id in titles  # findings: boxes of their own
    (group,) = pic.groups.values()  # the one-off commands of the shell share one box
    assert {n.name for n in group} >= {"uname", "whoami", "true"}
    text = " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))
    assert "container victim-1a2b3c4d" in text and "outbound connection" in text
    assert "! Test: program run from /tmp" in text and f"{len(group)} commands" in text
    inbound = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "edge"
               and g.find(f"{SVG}path").get("stroke") == IN_COLOR]
    outbound = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "edge"
                and g.find(f"{SVG}path").get("stroke") == OUT_COLOR]
    assert len(inbound) >= 1 and len(outbound) == 3  # download, payload, container


def test_tree_fits_the_terminal_width(tmp_path):
    view, _a = web_shell_view(tmp_path)
    full = render_tree(view)
    assert max(len(line) for line in full.splitlines()) > 100
    narrow = render_tree(view, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "…" in narrow and len(narrow.splitlines()) == len(full.splitlines())
    colored = render_tree(view, color=True, width=80)
    assert "\033[" in colored

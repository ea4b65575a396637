"""`spyderctl trace -o html` in a real browser: Debian's chromium, headless, driven over the
DevTools protocol. The page must show every box, explain a clicked process, highlight a
finding's chain, find nodes by pid and path, and never touch the network."""

from __future__ import annotations

import json
import subprocess

import pytest
from test_render import web_shell_view, web_shell_world
from trace_browser import Browser, artifacts_dir

from spyderd.traces.dot import picture, render_dot
from spyderd.traces.html import render_html


def page_of(view) -> str:
    pic = picture(view)
    svg = subprocess.run(["dot", "-Tsvg"], input=render_dot(view, pic).encode(),
                         capture_output=True, check=True).stdout.decode()
    return render_html(view, pic, svg)


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def test_page_is_self_contained():
    from spyderd.traces.html import inline_svg

    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<!-- x -->\n<svg width="10pt" height="5pt" ' \
          'viewBox="0 0 10 5"></svg>'
    assert inline_svg(svg) == '<svg id="graph" viewBox="0 0 10 5"></svg>'


def test_html_view_in_chromium(tmp_path, browser):
    view, a = web_shell_view(tmp_path / "w")
    page = page_of(view)
    assert "default-src 'none'" in page  # the page may fetch nothing, whatever it holds
    path = tmp_path / "trace.html"
    path.write_text(page)
    url = browser.open(path)
    assert browser.js("document.body.dataset.ready") == "1"
    boxes = browser.js("[...document.querySelectorAll('g.node')].map(g => g.dataset.id)")
    pic = picture(view)
    assert set(boxes) == set(pic.shown)
    assert a["payload"].id in boxes and a["curl"].id in boxes

    # click the downloaded program's box: its pid and argv show up
    curl = a["curl"]
    browser.click(f'g.node[data-id="{curl.id}"]')
    text = browser.js("document.getElementById('details').innerText")
    assert f"pid\t{curl.pid}" in text, text
    argv = browser.js("[...document.querySelectorAll('#details .argv code')].map(c => "
                      "c.textContent)")
    assert argv == curl.attrs["args"]
    assert browser.js("document.querySelector('g.node.selected').dataset.id") == curl.id

    # a finding highlights its chain, root to subject
    payload = next(f for f in view.findings if f["process_id"] == a["payload"].id)
    browser.click(f'div.finding[data-finding="{payload["id"]}"]')
    chain = browser.js("[...document.querySelectorAll('g.node.chain')].map(g => g.dataset.id)")
    assert set(chain) == {a["server"].id, a["shell"].id, a["payload"].id}
    assert browser.js("document.getElementById('graph').classList.contains('focus')")

    # search by pid and by path
    browser.js("const s = document.getElementById('search'); s.value = '182'; "
               "s.dispatchEvent(new Event('input'))")
    hits = browser.js("[...document.querySelectorAll('g.node.hit')].map(g => g.dataset.id)")
    assert a["nc"].id in hits and all(view.nodes[h].pid == 182 for h in hits)
    browser.js("const s2 = document.getElementById('search'); "
               "s2.value = '/tmp/spyder-payload'; s2.dispatchEvent(new Event('input'))")
    hits = browser.js("[...document.querySelectorAll('g.node.hit')].map(g => g.dataset.id)")
    assert a["payload"].id in hits and a["curl"].id in hits  # argv and the file's path

    # a group box lists its commands; the header has the score and the rules
    group = next(iter(pic.groups))
    browser.click(f'g.node[data-id="{group}"]')
    assert "commands run by the same parent" in browser.js(
        "document.getElementById('details').innerText")
    head = browser.js("document.getElementById('head').innerText")
    assert f"score {view.summary['score']}" in head and "Test: chmod +x in /tmp" in head

    # zoom, then pan by dragging, change the viewBox
    def view_box() -> list[float]:
        return [float(x) for x in browser.js(
            "document.getElementById('graph').getAttribute('viewBox')").split()]

    before = view_box()
    browser.click("#zin")
    zoomed = view_box()
    assert zoomed[2] < before[2]
    browser.drag("#graph", 120, 80)
    panned = view_box()
    assert panned[0] < zoomed[0] and panned[1] < zoomed[1] and panned[2] == zoomed[2]

    shot = browser.screenshot(artifacts_dir() / "trace-html-unit.png")
    assert shot.stat().st_size > 10_000
    assert browser.requests == [url], json.dumps(browser.requests)  # the page itself, only


def test_html_of_a_process_view(tmp_path, browser):
    """`spyderctl trace proc:... -o html`: no trace record, no findings; the page works."""
    from spyderd.traces import build_trace

    w, _fs, a = web_shell_world(tmp_path / "w")
    whoami = a["whoami"]
    path = tmp_path / "proc.html"
    path.write_text(page_of(build_trace(w.store, whoami.id)))
    url = browser.open(path)
    assert browser.js("document.body.dataset.ready") == "1"
    assert browser.js("document.getElementById('head').innerText").startswith("Process proc:")
    assert browser.js("document.getElementById('findings').innerText").strip() == "none"
    browser.click(f'g.node[data-id="{whoami.id}"]')
    assert f"pid\t{whoami.pid}" in browser.js("document.getElementById('details').innerText")
    assert browser.requests == [url]

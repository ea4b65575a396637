"""Drive Debian's headless chromium over the DevTools protocol on a pipe (stdlib only).

`--remote-debugging-pipe` makes chromium read commands from fd 3 and write replies and
events to fd 4, as NUL-terminated JSON. Used by the tests of `spyderctl trace -o html`:
load the page, click like a user, read the page, take a screenshot, and list every network
request the page made.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from conftest import REPO

SVG = "{http://www.w3.org/2000/svg}"


def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (screenshots)."""
    d = Path(os.environ.get("SPYDER_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def svg_width_px(svg: str) -> float:
    """Width at 96 dpi of a graphviz SVG drawn at 100 % (graphviz sizes it in points)."""
    root = ET.fromstring(svg)
    width = root.get("width")
    assert width.endswith("pt"), width
    scale = root.find(f"{SVG}g").get("transform").split("scale(")[1].split()[0]
    assert float(scale) == 1.0, "graphviz shrank the drawing: text would be unreadable"
    return float(width[:-2]) * 96 / 72


def _above_4(fd: int) -> int:
    """The same pipe end at fd 10 or above."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One headless chromium with one page; `requests` lists every URL the page asked for."""

    def __init__(self, profile: Path, width: int = 1600, height: int = 1000) -> None:
        exe = shutil.which("chromium")
        assert exe, "chromium is not installed (packaging/install.sh installs it)"
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        cmd_r, res_w = _above_4(cmd_r), _above_4(res_w)  # so `3<&` cannot clobber the other

        # bash puts the pipe ends at fd 3 and 4 before it becomes chromium (dash cannot
        # redirect fds above 9)
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w}', exe, "--headless=new",
             "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(cmd_r, res_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.page(f"{domain}.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # -- protocol --------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            assert time.monotonic() < deadline, "chromium did not answer"
            chunk = os.read(self._res_r, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg = json.loads(raw)
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests.append(msg["params"]["request"]["url"])
        return msg

    def call(self, method: str, session: str | None = None, timeout: float = 30,
             **params: Any) -> dict[str, Any]:
        mid = self._send(method, params, session)
        while True:
            msg = self._read(timeout)
            if msg.get("id") == mid:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg.get("result", {})
            self.events.append(msg)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self.session, **params)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            msg = self._read(timeout)
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    # -- what a test does ------------------------------------------------------------------

    def open(self, path: Path) -> str:
        url = path.resolve().as_uri()
        self.page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        return url

    def js(self, expr: str) -> Any:
        res = self.page("Runtime.evaluate", expression=expr, returnByValue=True,
                        awaitPromise=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)

    def drag(self, selector: str, dx: float, dy: float) -> None:
        """Press the mouse in the middle of the element, move by (dx, dy), release."""
        x, y = self.js(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                       ".getBoundingClientRect(); return [r.x + r.width / 2, "
                       "r.y + r.height / 2]; })()")
        steps = [("mousePressed", x, y), ("mouseMoved", x + dx / 2, y + dy / 2),
                 ("mouseMoved", x + dx, y + dy), ("mouseReleased", x + dx, y + dy)]
        for kind, px, py in steps:
            self.page("Input.dispatchMouseEvent", type=kind, x=px, y=py, button="left",
                      buttons=0 if kind == "mouseReleased" else 1, clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.page("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)

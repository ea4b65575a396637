"""spyderctl's output conventions, as systemctl and journalctl have them.

- a pager (`$SYSTEMD_PAGER`, else `$PAGER`, else `less` with `LESS=FRSXMK`) only when stdout
  is a terminal and `--no-pager` was not given; never while following (`-f`);
- colors only on a terminal, never with `NO_COLOR` set or `TERM=dumb`
  (`SYSTEMD_COLORS=0/1` forces them off/on, as for systemd's tools);
- exit codes, stable and documented in `EXIT_CODES`;
- nothing a watched process wrote reaches the terminal raw (`SafeStream`): its argv, exe,
  comm or a journal message may hold ESC sequences that would clear the screen, move the
  cursor, set the window title or hide text; they are shown as `\x1b`. Only spyderctl's
  own colors (bold, dim, red, yellow, cyan, green and reset) pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILURE = 1  # an error: bad input, a daemon that refused, a tool missing
EXIT_USAGE = 2  # wrong command line (argparse)
EXIT_NOT_RUNNING = 3  # the daemon is not running (status, reload, follow)
EXIT_PERMISSION = 4  # not root and not in group 'spyder'
EXIT_NOT_FOUND = 5  # no such finding, trace or process

EXIT_CODES = f"""exit status:
  {EXIT_OK}  success (status: the daemon runs with its probes attached)
  {EXIT_FAILURE}  failure (bad input, reload refused, a tool missing, ...)
  {EXIT_USAGE}  usage error
  {EXIT_NOT_RUNNING}  spyderd is not running
  {EXIT_PERMISSION}  permission denied: only root and the 'spyder' group may read spyderd's data
  {EXIT_NOT_FOUND}  no such finding, trace or process"""


# spyderctl's own SGR sequences (traces.render, ctl.cli, ctl.history); every other control
# character is escaped.
_OWN_SGR = r"\x1b\[(?:0|1|2|31|33|36|1;31|1;32)m"
_UNSAFE = re.compile(f"({_OWN_SGR})|[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]")


def terminal_safe(text: str) -> str:
    """Control characters as `\\xNN` (newline, tab and our own colors kept)."""
    return _UNSAFE.sub(lambda m: m.group(1) or f"\\x{ord(m.group()):02x}", text)


class SafeStream:
    """A text stream that passes everything written through `terminal_safe`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(terminal_safe(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def use_color(stream: TextIO = sys.stdout) -> bool:
    forced = os.environ.get("SYSTEMD_COLORS")
    if forced is not None:
        return forced.lower() not in ("0", "false", "no", "")
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def _pager_command() -> list[str] | None:
    for var in ("SYSTEMD_PAGER", "PAGER"):
        value = os.environ.get(var)
        if value is not None:
            if value in ("", "cat"):
                return None
            return ["sh", "-c", value]
    return ["less"] if shutil.which("less") else None


@contextmanager
def paged(no_pager: bool) -> Iterator[TextIO]:
    """stdout, through a pager when stdout is a terminal and paging was not refused."""
    cmd = None if no_pager or not sys.stdout.isatty() else _pager_command()
    if cmd is None:
        yield sys.stdout
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRSXMK")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, text=True, env=env)
    try:
        yield SafeStream(proc.stdin)  # type: ignore[misc, arg-type]
    except BrokenPipeError:
        pass
    finally:
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        proc.wait()

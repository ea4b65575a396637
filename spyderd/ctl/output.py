"""spyderctl's output conventions, as systemctl and journalctl have them.

- a pager (`$SYSTEMD_PAGER`, else `$PAGER`, else `less` with `LESS=FRSXMK`) only when stdout
  is a terminal and `--no-pager` was not given; never while following (`-f`);
- colors only on a terminal, never with `NO_COLOR` set or `TERM=dumb`
  (`SYSTEMD_COLORS=0/1` forces them off/on, as for systemd's tools);
- exit codes, stable and documented in `EXIT_CODES`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

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
        yield proc.stdin  # type: ignore[misc]
    except BrokenPipeError:
        pass
    finally:
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        proc.wait()

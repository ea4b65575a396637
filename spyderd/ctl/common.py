"""What every spyderctl command group shares: where the daemon's directories are, the store
opened read-only with a clear permission error, and the daemon's live status."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

from spyderd.common import access
from spyderd.daemon import control
from spyderd.errors import AccessError, NotRunningError, SpyderError
from spyderd.graph import Store


def dirs(args) -> tuple[Path, Path]:
    state = args.state_dir or os.environ.get("SPYDERD_STATE_DIR") or "/var/lib/spyderd"
    run = args.runtime_dir or os.environ.get("SPYDERD_RUNTIME_DIR") or "/run/spyderd"
    return Path(state), Path(run)


def check_readable(state: Path) -> None:
    """A clear "permission denied" instead of "no store" for users outside root/spyder."""
    store = state / "store"
    for p, need in ((state, os.X_OK), (store, os.X_OK), (store / "data.mdb", os.R_OK),
                    (store / "lock.mdb", os.R_OK | os.W_OK)):
        try:
            os.stat(p)
        except PermissionError:
            raise AccessError(access.denied(p)) from None
        except FileNotFoundError:
            return
        if not os.access(p, need):
            raise AccessError(access.denied(p))


def open_store(args):
    state = dirs(args)[0]
    check_readable(state)
    return Store(state, readonly=True)


def read_status(run: Path) -> dict | None:
    try:
        st = json.loads((run / "status.json").read_text())
    except PermissionError:
        raise AccessError(access.denied(run / "status.json")) from None
    except (OSError, ValueError):
        return None
    try:
        os.kill(st["pid"], 0)
    except ProcessLookupError:
        st["ready"] = False
        st["stale"] = True
    except PermissionError:
        pass
    return st


def live_status(run: Path) -> dict | None:
    """The daemon's status over the control socket, else from its status file."""
    try:
        return control.request(run, "status", timeout=5)["status"]
    except NotRunningError:
        return read_status(run)
    except AccessError:
        raise
    except (SpyderError, OSError, ValueError, KeyError):
        return read_status(run)


def event_filters(args) -> dict:
    """`Store.events` keyword arguments for --pid/--path/--remote/--user/--container: each
    is answered from an index, so only blocks holding such events are read."""
    uid = None
    if getattr(args, "user", None):
        uid = int(args.user) if args.user.isdigit() else _uid_of(args.user)
    return {"pid": args.pid, "path": getattr(args, "path", None),
            "remote_ip": getattr(args, "remote", None), "uid": uid,
            "container_id": getattr(args, "container", None)}


def _uid_of(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise SpyderError(f"no such user: {name}") from None

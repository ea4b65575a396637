"""Who may read spyderd's history and talk to the daemon: root and the `spyder` group.

The audit trail is sensitive (every command line on the host), so the state directory, the
runtime directory and everything in them are owned by root with group `spyder`:
directories 2750 (setgid, so whatever the daemon creates inside belongs to group `spyder`),
files 0640, the control socket 0660. One exception: LMDB readers record
themselves in `lock.mdb`, so a read-only reader needs write access to it; `lock.mdb` is
0660 (a `spyder` member can hold a reader slot, never write data). The daemon sets its
umask to 027 so nothing it creates is world-readable, whatever its parent's umask was.

When the group does not exist (a bare `pip install`), ownership is left alone and only the
modes apply: root alone can read.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import struct
from pathlib import Path

log = logging.getLogger("spyderd")

GROUP = "spyder"
DIR_MODE = 0o2750  # setgid: files created inside (status.json, LMDB files) get group spyder
FILE_MODE = 0o640
SOCKET_MODE = 0o660
LOCK_MODE = 0o660
UMASK = 0o027
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("iII")


def group_id(name: str = GROUP) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def restrict(path: Path, mode: int, gid: int | None) -> None:
    """chmod, and chown to root:gid when running as root and the group exists."""
    try:
        if gid is not None and os.geteuid() == 0:
            os.chown(path, 0, gid)
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("cannot restrict access to %s: %s", path, exc)


def prepare_dirs(dirs: list[Path], gid: int | None) -> None:
    """umask 027; create the directories 0750 root:spyder (existing ones are fixed too)."""
    os.umask(UMASK)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        restrict(d, DIR_MODE, gid)


def secure_store(store_dir: Path, gid: int | None) -> None:
    """The LMDB directory and files: data 0640, lock 0660 (see the module docstring)."""
    restrict(store_dir, DIR_MODE, gid)
    for name, mode in (("data.mdb", FILE_MODE), ("lock.mdb", LOCK_MODE)):
        p = store_dir / name
        if p.exists():
            restrict(p, mode, gid)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return _UCRED.unpack(raw)


def peer_groups(sock: socket.socket, pid: int) -> list[int]:
    """The peer's supplementary groups: SO_PEERGROUPS, else /proc/<pid>/status."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        return list(struct.unpack(f"{len(raw) // 4}I", raw))
    except OSError:
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def peer_allowed(uid: int, gid: int, groups: list[int], spyder_gid: int | None) -> bool:
    """Root, or a member (primary or supplementary) of the spyder group."""
    if uid == 0:
        return True
    return spyder_gid is not None and (gid == spyder_gid or spyder_gid in groups)


def denied(path: Path | str, what: str = "") -> str:
    """The message spyderctl prints for a user outside root and the spyder group."""
    return (f"permission denied: {path}{': ' + what if what else ''} "
            f"(spyderd's data is readable by root and the '{GROUP}' group only; "
            f"run as root or add the user to '{GROUP}')")
